"""How every command talks: help with defaults, ``--json`` for machines, ``--quiet``, progress on stderr.

- Every option has help text, and its default is shown (:class:`HelpFormatter`); ``tests/test_cli_options.py``
  walks the parser tree and fails for an option without help.
- ``--json`` (commands whose output is for machines): the result as one JSON document on stdout, nothing
  else there (``--json PATH`` writes it to PATH instead); human lines go to stderr meanwhile.
- Progress of long work is one line per step (cell, task, epoch) on stderr with the elapsed time;
  ``--quiet`` turns it off. Results and errors are still printed.
- Third-party libraries' start-up chatter (TensorFlow/absl, ultralytics, gRPC) is quieted before they are
  imported; set the variables yourself (e.g. ``TF_CPP_MIN_LOG_LEVEL=0``) to see it again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Environment variables read by third-party libraries at import: only set when the user has not set them.
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow's C++ logs (CPU feature guard, CUDA probing)
    "GRPC_VERBOSITY": "ERROR",  # absl/gRPC "All log messages before absl::InitializeLog()"
    "YOLO_VERBOSE": "False",  # ultralytics' settings banner and per-batch training output
}
QUIET_LOGGERS = ("absl", "tensorflow", "ultralytics", "googleapiclient.discovery_cache", "urllib3", "PIL")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default (unless the text already says it, or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or _no_default(default)
            or action.option_strings == []
            or isinstance(action, argparse._HelpAction)
        ):
            return text
        return f"{text} (default: %(default)s)"


def _no_default(value: Any) -> bool:
    """Nothing worth showing: None, a flag's False, an empty list or text (0 and 0.0 are defaults to show)."""
    return (
        value is None or value is False or value is argparse.SUPPRESS or (isinstance(value, list | str) and not value)
    )


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows defaults; its subcommands' parsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_json_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--json [PATH]``: ``what`` as one JSON document on stdout (or in PATH)."""
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help=f"print {what} as one JSON document on stdout instead of text (or write it to PATH); "
                   "other lines go to stderr")  # fmt: skip


def add_quiet_option(p: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress lines (results and errors are still printed)."""
    if not any("--quiet" in a.option_strings for a in p._actions):
        p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr (results still print)")


def leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command's parser (``"detect train"``...), walking subcommands; the root itself if it has none."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser.prog, parser
        return
    for action in subs:
        seen: set[int] = set()
        for child in action.choices.values():
            if id(child) not in seen:  # aliases share a parser
                seen.add(id(child))
                yield from leaf_parsers(child)


def quiet_third_party() -> None:
    """Quiet the libraries' start-up and training chatter (before they are imported; user settings win)."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def plain_warnings() -> None:
    """Python warnings as one ``warning: ...`` line on stderr, without the file and source line of the code."""
    warnings.formatwarning = lambda message, category, filename, lineno, line=None: f"warning: {message}\n"


def progress(args: argparse.Namespace) -> Callable[[str], None]:
    """A progress callback: ``[  12 s] message`` on stderr, or nothing with ``--quiet``."""
    if getattr(args, "quiet", False):
        return lambda message: None
    start = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {message}", file=sys.stderr, flush=True)

    return say


def wants_json(args: argparse.Namespace) -> bool:
    return getattr(args, "json", None) is not None


def emit(args: argparse.Namespace, result: Any, human: Callable[[], None]) -> None:
    """The command's result: JSON (``--json``: stdout or the file) or, without ``--json``, ``human()``'s lines."""
    target = getattr(args, "json", None)
    if target is None:
        human()
        return
    text = json.dumps(_plain(result), indent=1, default=str, allow_nan=False) + "\n"
    if target == "-":
        stream = getattr(args, "_stdout", None) or sys.stdout
        stream.write(text)
        stream.flush()
    else:
        Path(target).write_text(text)
        human()


def _plain(value: Any) -> Any:
    """JSON's values only: NaN and infinities (undefined figures) become null, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextlib.contextmanager
def json_stdout(args: argparse.Namespace) -> Iterator[None]:
    """While a ``--json`` command runs, every other line goes to stderr: stdout holds only the JSON."""
    if getattr(args, "json", None) != "-":
        yield
        return
    args._stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if 0 < abs(value) < 0.01:
        return f"{value:.2g}"  # two significant digits: 0.0007, not 0.001 (or 0.000)
    return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"


def print_figures(title: str, figures: dict[str, Any], written: str | Path | None = None, indent: str = "  ") -> None:
    """A result's figures as indented ``name: value`` lines (numbers with 3 decimals, or 2 significant digits below
    0.01), for people."""
    if title:
        print(f"{title}:")
    for name, value in figures.items():
        if isinstance(value, dict):
            print(f"{indent}{name}:")
            print_figures("", value, None, indent + "  ")
        elif isinstance(value, list | tuple) and len(value) > 8:
            print(f"{indent}{name}: {len(value)} values")
        elif isinstance(value, list | tuple):
            print(f"{indent}{name}: {', '.join(_number(v) for v in value)}")
        else:
            print(f"{indent}{name}: {_number(value)}")
    if written:
        print(f"written: {written}")
