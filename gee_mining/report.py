"""A self-contained HTML report of a run: sections of text, tables and figures.

Figures are matplotlib figures embedded as PNG data URIs, so the report is one
file that opens anywhere, offline. Each pipeline step adds its section.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #b33; padding-bottom: .2em; }
h2 { margin-top: 2em; color: #822; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f4eeee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .88em; color: #555; }
.note { background: #fff8e5; border-left: 4px solid #e0a800; padding: .5em .8em; }
.warn { background: #fdecea; border-left: 4px solid #c62828; padding: .5em .8em; }
.meta { color: #666; font-size: .9em; }
"""


@dataclass
class Section:
    title: str
    parts: list[str] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        s = Section(title)
        self.sections.append(s)
        return s

    @staticmethod
    def text(section: Section, text: str, css_class: str | None = None) -> None:
        cls = f' class="{css_class}"' if css_class else ""
        section.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    @staticmethod
    def table(section: Section, header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> None:
        out = ["<table>"]
        if caption:
            out.append(f"<caption>{html.escape(caption)}</caption>")
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
        for row in rows:
            cells = []
            for v in row:
                if isinstance(v, int | float) and not isinstance(v, bool):
                    cells.append(f'<td class="num">{_fmt(v)}</td>')
                else:
                    cells.append(f"<td>{html.escape(str(v))}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
        section.parts.append("".join(out))

    @staticmethod
    def figure(section: Section, fig: Any, caption: str, alt: str | None = None) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode()
        section.parts.append(
            f'<figure><img alt="{html.escape(alt or caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def render(self) -> str:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = [f"<h1>{html.escape(self.title)}</h1>", f'<p class="meta">{html.escape(self.subtitle)} — {now}</p>']
        for s in self.sections:
            body.append(f"<h2>{html.escape(s.title)}</h2>")
            body.extend(s.parts)
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body)
            + "</body></html>"
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically: a reader never sees half a report."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".html")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.render())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def _fmt(v: float) -> str:
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:,.2f}"
    return f"{v:.4g}"
