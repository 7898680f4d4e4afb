"""Notebooks as documentation pages, with their outputs: executed once at ``make docs`` time, rendered to Markdown.

``make docs`` runs ``python -m gee_mining.tools.notebook_doc docs/notebooks/tour.ipynb runs/notebooks/tour.ipynb``:
the notebook is executed offline in a Jupyter kernel (nbclient) and the executed copy is kept, stamped with the
SHA-256 of the source it ran. (nbformat and nbclient come with the ``docs`` extra; nothing else imports
this module.) The mkdocs hook (``docs/hooks.py``) renders that copy into a page
(:func:`notebook_markdown`): Markdown cells as they are, code in fenced blocks, and the outputs: text, HTML
(eerepr's trees of ``ee`` objects), PNG/JPEG images embedded as data URIs, and a note for interactive widgets (the
geemap map needs a running kernel). Without an executed copy that matches the source (a fresh clone, or the
notebook edited since), the page shows the code and says how to add the outputs. No network either way.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

SOURCE_HASH = "gee_mining_source_sha256"  # metadata key: the source notebook an executed copy ran
WIDGET = "application/vnd.jupyter.widget-view+json"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def source_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a notebook's cells (sources only: outputs and metadata do not change it)."""
    nb = nbformat.read(path, as_version=4)
    text = "\n\x00".join(f"{c.cell_type}\x01{c.source}" for c in nb.cells)
    return hashlib.sha256(text.encode()).hexdigest()


def execute_notebook(source: str | os.PathLike, executed: str | os.PathLike, timeout: int = 900) -> Path:
    """Run ``source`` in a fresh kernel (from its own folder) and write the executed copy to ``executed``."""
    source, executed = Path(source), Path(executed)
    nb = nbformat.read(source, as_version=4)
    t = time.perf_counter()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}
    ).execute()
    nb.metadata[SOURCE_HASH] = source_hash(source)
    nb.metadata["gee_mining_executed_s"] = round(time.perf_counter() - t, 1)
    executed.parent.mkdir(parents=True, exist_ok=True)
    tmp = executed.with_suffix(".partial")
    nbformat.write(nb, tmp)
    os.replace(tmp, executed)  # no half-written copy
    return executed


def executed_copy(source: str | os.PathLike, executed: str | os.PathLike) -> Path | None:
    """The executed copy if it ran exactly this source, else None."""
    executed = Path(executed)
    if not executed.is_file():
        return None
    nb = nbformat.read(executed, as_version=4)
    return executed if nb.metadata.get(SOURCE_HASH) == source_hash(source) else None


def notebook_markdown(path: str | os.PathLike, raw_link: str, executed: bool) -> str:
    """A notebook as a Markdown page: cells in order, outputs included; ``raw_link`` points at the .ipynb file."""
    nb = nbformat.read(path, as_version=4)
    if executed:
        seconds = nb.metadata.get("gee_mining_executed_s")
        took = f" in {seconds:g} s" if seconds is not None else ""
        head = (f'!!! note "Executed offline when the documentation was built{took}"\n    The outputs below come from '
                f"running [the notebook]({raw_link}) on the local engine, on a SIMULATED world.\n")  # fmt: skip
    else:
        head = (f'!!! note "Outputs not included"\n    This page shows the code of [the notebook]({raw_link}). '
                "`make docs` executes it offline and adds its outputs here.\n")  # fmt: skip
    parts: list[str] = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            if i == 0:
                parts.append(head)
        elif cell.cell_type == "code":
            parts.append(f"```python\n{cell.source}\n```")
            parts.extend(_output_markdown(o) for o in cell.get("outputs", []))
    return "\n\n".join(p for p in parts if p) + "\n"


def _output_markdown(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return _text_block(output.get("text", ""))
    if kind == "error":
        return _text_block("\n".join(output.get("traceback", [])))
    data = output.get("data", {})
    if WIDGET in data:
        return ('<p class="nb-widget"><em>An interactive map (an ipyleaflet widget) is shown here when the '
                "notebook runs: its layers' tiles come from the local engine's HTTP server.</em></p>")  # fmt: skip
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            b64 = "".join(data[mime].split())
            return f'<p><img alt="output" src="data:{mime};base64,{b64}"></p>'
    if "text/html" in data:
        one_line = " ".join(data["text/html"].split())  # one line: Markdown leaves the block alone
        return f'<div class="nb-output">{one_line}</div>'
    if "text/plain" in data:
        return _text_block(data["text/plain"])
    return ""


def _text_block(text: str) -> str:
    text = _ANSI.sub("", text).rstrip("\n")
    return f'<pre class="nb-output" style="white-space: pre-wrap">{html.escape(text)}</pre>' if text else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="execute a notebook offline and keep the executed copy for the docs")
    p.add_argument("source", help="the notebook, e.g. docs/notebooks/tour.ipynb")
    p.add_argument("executed", help="where the executed copy goes, e.g. runs/notebooks/tour.ipynb")
    p.add_argument("--timeout", type=int, default=900, help="seconds a cell may run (default 900)")
    args = p.parse_args(argv)
    if executed_copy(args.source, args.executed):
        print(f"{args.executed}: already executed from this source")
        return 0
    out = execute_notebook(args.source, args.executed, args.timeout)
    print(f"{out}: executed in {nbformat.read(out, as_version=4).metadata['gee_mining_executed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
