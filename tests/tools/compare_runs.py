"""Compare the tables two demo runs wrote: the grids and the pixel tables, value by value.

usage: python tests/tools/compare_runs.py RUN_A RUN_B

Checks that a refactor changed no output: every Parquet and CSV table under ``grid/`` and
``imagery/pixels/`` of RUN_A exists in RUN_B with the same columns, dtypes and values (pyarrow
``Table.equals``; CSVs byte for byte), the GeoPackages with the same features. Prints one line per
table and exits 1 on any difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pyogrio

FOLDERS = ("grid", "imagery/pixels")


def compare(a: Path, b: Path) -> list[str]:
    """The differences between the tables of runs ``a`` and ``b``, one line each (empty: identical)."""
    problems, seen = [], 0
    for folder in FOLDERS:
        for path in sorted((a / folder).glob("*")):
            other = b / folder / path.name
            if path.suffix not in (".parquet", ".csv", ".gpkg"):
                continue
            seen += 1
            if not other.exists():
                problems.append(f"{folder}/{path.name}: missing in {b}")
            elif path.suffix == ".parquet":
                ta, tb = pq.read_table(path), pq.read_table(other)
                if not ta.equals(tb):
                    problems.append(f"{folder}/{path.name}: Parquet tables differ ({ta.schema} vs {tb.schema})")
            elif path.suffix == ".csv" and path.read_bytes() != other.read_bytes():
                problems.append(f"{folder}/{path.name}: CSV bytes differ")
            elif path.suffix == ".gpkg":
                (_, fa), (_, fb) = pyogrio.read_arrow(path), pyogrio.read_arrow(other)
                if not fa.equals(fb):
                    problems.append(f"{folder}/{path.name}: GeoPackage features differ")
            print(
                f"{'DIFFERS' if problems and problems[-1].startswith(f'{folder}/{path.name}') else 'same   '}"
                f" {folder}/{path.name}"
            )
    if seen == 0:
        problems.append(f"no tables under {', '.join(FOLDERS)} of {a}")
    return problems


if __name__ == "__main__":
    problems = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print("\n".join(problems) if problems else "all tables identical")
    sys.exit(1 if problems else 0)
