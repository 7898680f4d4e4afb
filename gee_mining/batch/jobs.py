"""Batch export jobs: one Earth Engine export task per grid cell, launched, tracked and resumed.

A job (``export_jobs/*.toml``, read into a :class:`JobSpec`) names a product, the cells (a grid
table written by ``gee-mining grid``), the parameters and the Cloud Storage destination. The
launcher (:func:`run_job`) keeps a SQLite ledger with one row per cell and writes it BEFORE and
after every submission. Each cell's ``requestId`` is deterministic (a UUID5 of the job, product,
cell and parameters), so a resume after a crash resubmits an interrupted cell with the same id
and Earth Engine (and the local engine) returns the operation it already started instead of
starting a second one: no cell is exported twice, none is lost.

Transient errors (HTTP 429 and 5xx, "Too many tasks", internal errors) are retried with
exponential backoff and jitter; deterministic ones ("User memory limit exceeded", "Computation
timed out", invalid arguments) mark the cell FAILED with the message and are not retried. With
``split_failed = true``, a cell that failed for its size (memory limit, time out, too many pixels)
is re-planned instead: it becomes SPLIT and its 4 children of the next finer level
(``contracts.cells.child_rows``) join the job, down to ``max_split_depth`` splits.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gee_mining.batch.batches import (
    DEFAULT_FILES_PER_SIDE,
    Batch,
    batch_files,
    cells_of_file,
    is_batch_row,
    plan_batches,
    split_batch,
)
from gee_mining.batch.exports import cell_files
from gee_mining.batch.products import BATCHED_PRODUCTS, PRODUCTS, SCENE_CHECKED, one_file_suffix, uncovered
from gee_mining.batch.spec import JobSpec
from gee_mining.batch.tasks import DEFAULT_POLL_S, find_operations, operation_state, start_with_request_id
from gee_mining.connection import open_bucket
from gee_mining.contracts.cells import child_rows
from gee_mining.errors import GeeMiningError, InputError
from gee_mining.io.grid_table import duplicate_names, iter_grid_table
from gee_mining.steps.sentinel2 import SCENE_BATCH

STATES = ("PENDING", "SUBMITTING", "SUBMITTED", "RUNNING", "SUCCEEDED", "FAILED", "SPLIT")
ACTIVE = ("SUBMITTED", "RUNNING")

TRANSIENT_PATTERNS = (
    r"\b429\b",
    r"\b5\d\d\b",
    r"too many tasks",
    r"too many concurrent",
    r"quota exceeded",
    r"rate limit",
    r"internal error",
    r"service unavailable",
    r"backend error",
    r"deadline exceeded",
    r"temporarily unavailable",
    r"connection (reset|aborted|refused)",
    r"timed? ?out while (connecting|reading)",
)
DETERMINISTIC_PATTERNS = (
    r"user memory limit exceeded",
    r"computation timed out",
    r"invalid argument",
    r"\b400\b",
    r"not found",
    r"permission denied",
    r"too many pixels",
    r"export too large",
)
# Errors a smaller region fixes: with ``split_failed`` the cell is re-planned as its 4 children.
SPLITTABLE_PATTERNS = (
    r"user memory limit exceeded",
    r"computation timed out",
    r"too many pixels",
    r"export too large",
)


class JobError(GeeMiningError):
    """A job could not run (its ledger belongs to another job, the engine refused every attempt, ...)."""


def corrupt_ledger(path: Path, exc: Exception, job: str | Path | None = None) -> InputError:
    """The error for a ledger SQLite cannot read, with the command that recovers the job."""
    spec = job or "JOB.toml"
    return InputError(
        f"{path}: the job's ledger is damaged ({exc}). Recover: mv {path} {path}.damaged && gee-mining export run "
        f"{spec} --ledger {path} --adopt-existing (a new ledger; cells whose files are already at the destination are "
        "recognised as done, the others exported)."
    )


def is_transient(message: str) -> bool:
    """Whether an error message is worth retrying; deterministic messages win over transient ones.

    "User memory limit exceeded" or "Computation timed out" fail the same way every time, so
    retrying them wastes quota; 429/5xx and "Too many tasks" pass once the load drops.
    """
    text = message.lower()
    if any(re.search(p, text) for p in DETERMINISTIC_PATTERNS):
        return False
    return any(re.search(p, text) for p in TRANSIENT_PATTERNS)


def is_splittable(message: str) -> bool:
    """Whether an error is about the size of the work (memory, time, pixels), which a smaller cell avoids."""
    text = message.lower()
    return any(re.search(p, text) for p in SPLITTABLE_PATTERNS)


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): full jitter on ``base * 2**(attempt-1)``, capped."""
    rng = rng or random
    return rng.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))


# --------------------------------------------------------------------------- the spec


# --------------------------------------------------------------------------- products


# --------------------------------------------------------------------------- the ledger


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Ledger:
    """The SQLite ledger of a job: one row per cell, committed before and after each submission."""

    def __init__(self, path: str | Path, job: str | Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:  # not a database, truncated, bit-flipped, locked
            raise corrupt_ledger(self.path, exc, job) from None

    @classmethod
    def existing(cls, path: str | Path, job: str | Path | None = None) -> Ledger | None:
        """The ledger at ``path`` if there is one, else None: read-only commands (``status``) create nothing."""
        return cls(path, job) if Path(path).is_file() else None

    def _open(self) -> None:
        self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each write is durable at once
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS job (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS cells (
                cell TEXT PRIMARY KEY, request_id TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 0,
                state TEXT NOT NULL, operation TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                error TEXT, uris TEXT, checksum TEXT, updated REAL, parent TEXT, row TEXT,
                listed INTEGER NOT NULL DEFAULT 1
            );
            DROP INDEX IF EXISTS cells_state;
            CREATE INDEX IF NOT EXISTS cells_state_cell ON cells (state, cell);
            CREATE TABLE IF NOT EXISTS members (
                cell TEXT PRIMARY KEY, unit TEXT NOT NULL, file TEXT, window TEXT
            );
            CREATE INDEX IF NOT EXISTS members_unit ON members (unit);
            """
        )  # (state, cell): the queue is read in cell order from the index, counts come from it (no table scan)
        have = {r[1] for r in self.db.execute("PRAGMA table_info(cells)")}
        for column, kind in (("parent", "TEXT"), ("row", "TEXT"), ("listed", "INTEGER NOT NULL DEFAULT 1")):
            if column not in have:  # a ledger written by an earlier version
                self.db.execute(f"ALTER TABLE cells ADD COLUMN {column} {kind}")

    def close(self) -> None:
        self.db.close()

    def check_states(self) -> None:
        """Every row in a known state, else InputError naming the rows: a row the launcher does not recognise
        would otherwise be neither exported nor reported, and the job would end "SUCCEEDED"."""
        marks = ",".join("?" * len(STATES))
        bad = self.db.execute(f"SELECT cell, state FROM cells WHERE state NOT IN ({marks}) ORDER BY cell", STATES)
        bad = bad.fetchall()
        if bad:
            shown = ", ".join(f"{cell} ({state!r})" for cell, state in bad[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            raise InputError(
                f"{self.path}: {len(bad)} ledger row(s) in an unknown state: {shown}{more}. Known states: "
                f"{', '.join(STATES)}. To export them again: sqlite3 {self.path} \"UPDATE cells SET state='PENDING', "
                f'operation=NULL WHERE state NOT IN ({", ".join(repr(s) for s in STATES)})"'
            )

    def bind(self, spec: JobSpec, new_params: bool = False) -> bool:
        """Tie the ledger to a job: a ledger of another job (or other params) is an error, not a silent mix.

        ``new_params`` (``retry-failed`` after the spec was fixed): the same job (name and product) with other
        parameters or destination takes the ledger over when no task is in flight; True when it did. Its PENDING
        cells get request ids of the new parameters; SUCCEEDED cells stay as they are.
        """
        key = f"{spec.name}|{spec.product}|{spec.params_hash}"
        row = self.db.execute("SELECT value FROM job WHERE key='job'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO job VALUES ('job', ?)", (key,))
            return False
        if row[0] == key:
            return False
        same_job = row[0].rsplit("|", 1)[0] == key.rsplit("|", 1)[0]
        if not (new_params and same_job):
            hint = (" (the spec's [params] or [destination] changed: `gee-mining export retry-failed JOB` re-exports the "
                    "failed cells with the new ones)" if same_job else "")  # fmt: skip
            raise InputError(
                f"{self.path}: this ledger belongs to job {row[0]!r}, not {key!r}{hint}: give the job its own ledger "
                "path (--ledger)"
            )
        if self.rows(("SUBMITTING", *ACTIVE)):
            raise InputError(f"{self.path}: tasks of the previous parameters are still in flight: let "
                             "`gee-mining export run` finish them (or `export cancel`) before changing the spec")  # fmt: skip
        self.db.execute("UPDATE job SET value = ? WHERE key = 'job'", (key,))
        for cell, generation in self.db.execute("SELECT cell, generation FROM cells WHERE state='PENDING'").fetchall():
            self.update(cell, request_id=spec.request_id(cell, generation))
        return True

    def add_cells(self, spec: JobSpec, rows: Iterable[dict[str, Any]], source: Path | None = None) -> int:
        """Plan the cells of the cells file: new ones as PENDING rows (with their grid row), every listed one
        marked ``listed``; returns how many were new. Streams: memory does not grow with the file."""
        before = self.count()
        now = time.time()
        self.db.execute("BEGIN")
        try:
            self.db.execute("UPDATE cells SET listed = 0 WHERE parent IS NULL")
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (cell TEXT PRIMARY KEY)")
            self.db.execute("DELETE FROM seen")
            for chunk in _chunks(rows, 2048):
                try:
                    self.db.executemany("INSERT INTO seen VALUES (?)", [(r["name"],) for r in chunk])
                except sqlite3.IntegrityError:
                    raise duplicate_names(source or Path("cells")) from None
                self.db.executemany(
                    "INSERT INTO cells (cell, request_id, state, updated, row, listed) VALUES (?, ?, 'PENDING', ?, ?, 1)"
                    " ON CONFLICT(cell) DO UPDATE SET listed = 1, row = COALESCE(cells.row, excluded.row)",
                    [(r["name"], spec.request_id(r["name"]), now, json.dumps(r, default=str)) for r in chunk],
                )
                self._add_members(chunk)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return self.count() - before

    def _add_members(self, units: list[dict[str, Any]]) -> None:
        """Each cell of a batch row joins the ``members`` table once (its primary key): a cell already there,
        in this batch or in the quadrant a split moved it to, stays where it is; a cell in two batches fails."""
        pairs = [(c["name"], u["name"]) for u in units if is_batch_row(u) for c in u["cells"]]
        if not pairs:
            return
        self.db.executemany("INSERT INTO members (cell, unit) VALUES (?, ?) ON CONFLICT(cell) DO NOTHING", pairs)

    def members(self) -> list[dict[str, Any]]:
        """Every cell of a batched job: its batch, its file (None before, '' when Earth Engine skipped it as
        fully masked) and its pixel window in that file."""
        cur = self.db.execute("SELECT cell, unit, file, window FROM members ORDER BY cell")
        return [dict(zip(("cell", "unit", "file", "window"), r, strict=True)) for r in cur]

    def place_members(self, places: dict[str, tuple[str, Any]]) -> None:
        """Record each verified cell's file and window (one transaction)."""
        self.db.execute("BEGIN")
        self.db.executemany("UPDATE members SET file = ?, window = ? WHERE cell = ?",
                            [(f, json.dumps(w), c) for c, (f, w) in places.items()])  # fmt: skip
        self.db.execute("COMMIT")

    def cell_row(self, cell: str) -> dict[str, Any]:
        """The grid row of a planned cell."""
        return json.loads(self.db.execute("SELECT row FROM cells WHERE cell = ?", (cell,)).fetchone()[0])

    def next_cells(self, limit: int, skip: Iterable[str] = ()) -> list[str]:
        """Up to ``limit`` cells to submit, leftovers of a crash (SUBMITTING) first, then PENDING ones;
        cells no longer in the cells file stay as they are."""
        skip = set(skip)
        out: list[str] = []
        for state in ("SUBMITTING", "PENDING"):  # one index range each, in cell order: no sort of the queue
            if len(out) >= limit:
                break
            cur = self.db.execute(
                "SELECT cell FROM cells WHERE state = ? AND (listed = 1 OR parent IS NOT NULL) ORDER BY cell LIMIT ?",
                (state, limit - len(out) + len(skip)),
            )
            out += [c for (c,) in cur if c not in skip]
        return out[:limit]

    def pending_rows(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The grid rows of the PENDING cells of the cells file (and splits), ``size`` at a time."""
        cells = [
            c
            for (c,) in self.db.execute(
                "SELECT cell FROM cells WHERE state = 'PENDING' AND (listed = 1 OR parent IS NOT NULL) ORDER BY cell"
            )
        ]
        for i in range(0, len(cells), size):  # the names read first: the caller may update the rows
            yield [self.cell_row(c) for c in cells[i : i + size]]

    def split(self, spec: JobSpec, cell: str, message: str, children: list[dict[str, Any]]) -> None:
        """Mark ``cell`` SPLIT and add its children as PENDING rows, in one transaction (a kill keeps both or none)."""
        now = time.time()
        self.db.execute("BEGIN")
        self.db.execute("UPDATE cells SET state='SPLIT', error=?, updated=? WHERE cell=?", (message, now, cell))
        self.db.executemany(
            "INSERT OR IGNORE INTO cells (cell, request_id, state, updated, parent, row) VALUES (?, ?, 'PENDING', ?, ?, ?)",
            [(c["name"], spec.request_id(c["name"]), now, cell, json.dumps(c, default=str)) for c in children],
        )
        moves = [(c["name"], m["name"]) for c in children if is_batch_row(c) for m in c["cells"]]
        self.db.executemany("UPDATE members SET unit = ? WHERE cell = ?", moves)
        self.db.execute("COMMIT")

    def split_cells(self) -> list[dict[str, Any]]:
        """The grid rows of the cells added by splits."""
        cur = self.db.execute("SELECT row FROM cells WHERE parent IS NOT NULL ORDER BY cell")
        return [json.loads(r[0]) for r in cur]

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM cells").fetchone()[0]

    def update(self, cell: str, **values: Any) -> None:
        values["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE cells SET {cols} WHERE cell = ?", (*values.values(), cell))

    def rows(self, state: str | tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        if state is None:
            cur = self.db.execute("SELECT * FROM cells ORDER BY cell")
        else:
            states = (state,) if isinstance(state, str) else tuple(state)
            marks = ",".join("?" * len(states))
            cur = self.db.execute(f"SELECT * FROM cells WHERE state IN ({marks}) ORDER BY cell", states)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def counts(self) -> dict[str, int]:
        got = dict(self.db.execute("SELECT state, COUNT(*) FROM cells GROUP BY state").fetchall())
        return {s: got.get(s, 0) for s in STATES}


# --------------------------------------------------------------------------- the launcher


@dataclass
class JobResult:
    """What a run ended with: counts per state, submissions made by this run, seconds."""

    counts: dict[str, int]
    submitted: int
    seconds: float
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every cell exported, itself or through the children it was split into."""
        done = self.counts.get("SUCCEEDED", 0) + self.counts.get("SPLIT", 0)
        return self.counts.get("FAILED", 0) == 0 and done == sum(self.counts.values())


def run_job(
    ee,
    spec: JobSpec,
    ledger_path: str | Path | None = None,
    progress: Callable[[str], None] | None = print,
    *,
    poll_interval: float = DEFAULT_POLL_S,
    max_attempts: int = 6,
    backoff_base: float = 1.0,
    timeout: float | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    storage_root: str | Path | None = None,
    adopt_existing: bool = False,
) -> JobResult:
    """Export ``spec.product`` for every cell, never more than ``spec.max_running`` at once, exactly once.

    The ledger (``ledger_path`` or beside the spec) is read first: SUCCEEDED and FAILED cells are
    left alone, SUBMITTING cells (a crash between the ledger write and the engine's answer) are
    resubmitted with the same ``requestId`` (the engine returns the operation it already has),
    SUBMITTED/RUNNING cells are polled. A SUCCEEDED task's files are verified at the destination
    (``storage_root``: a local engine's storage folder when it serves from another process).
    A cell whose operation the engine no longer knows (an engine restarted while it ran) and a SUBMITTING
    cell are looked up at the destination before they are submitted again: finished files make them
    SUCCEEDED. ``adopt_existing`` (a new ledger after a damaged one) does that for every planned cell,
    with one listing of the job's prefix.
    Every ``poll_interval`` seconds (15-60 s against Earth Engine, where a task runs minutes) the active
    cells are polled (:func:`_poll_round`) by the first page(s) of the project's operation listing (500
    operations a request, newest first, :func:`~gee_mining.batch.tasks.find_operations`), the few not on
    them by a ``getOperation`` each. Returns a
    :class:`JobResult`; the ledger keeps everything.
    """
    say = progress or (lambda _msg: None)
    rng = rng or random.Random()
    product = PRODUCTS[spec.product]
    ledger = Ledger(ledger_path or spec.default_ledger(), spec.path)
    start = time.time()
    submitted = 0
    try:
        ledger.bind(spec)
        ledger.check_states()
        new = ledger.add_cells(spec, job_units(spec), spec.cells)
        if adopt_existing:
            _adopt_existing(ledger, spec, storage_root, say)
        if spec.product in SCENE_CHECKED:
            _refuse_uncovered(ee, ledger, spec, say)
        counts = ledger.counts()
        unit = "batches" if spec.product in BATCHED_PRODUCTS else "cells"
        say(f"job {spec.name}: {sum(counts.values())} {unit} ({new} new), {counts['SUCCEEDED']} already done")
        wait_until: dict[str, float] = {}  # cells in backoff after a transient error
        last_report = 0.0
        while True:
            _poll_round(ee, ledger, spec, max_attempts, say, storage_root)
            now = time.time()
            wait_until = {c: t for c, t in wait_until.items() if t > now}
            for cell, outcome in _fill_slots(ee, ledger, spec, product, wait_until, max_attempts, say, storage_root):
                if outcome == "submitted":
                    submitted += 1
                elif outcome == "retry":
                    attempts = ledger.db.execute("SELECT attempts FROM cells WHERE cell=?", (cell,)).fetchone()[0]
                    wait_until[cell] = time.time() + backoff_delay(attempts, backoff_base, rng=rng)
            if not ledger.rows(ACTIVE) and not ledger.next_cells(1) and not wait_until:
                break
            if time.time() - last_report >= 5.0:  # counts read from the index, and only to report
                last_report = time.time()
                say(_progress_line(ledger.counts(), start, submitted))
            if timeout is not None and time.time() - start > timeout:
                raise JobError(f"job {spec.name}: not finished after {timeout:g} s; run it again to resume")
            sleep(poll_interval)
        return _finished(ledger, spec, submitted, start, say)
    finally:
        ledger.close()


def _refuse_uncovered(ee, ledger: Ledger, spec: JobSpec, say) -> None:
    """The PENDING cells of a per-cell imagery product that no scene covers in the period made FAILED with the
    error ``export-cells`` gives them, before any task; :data:`~gee_mining.steps.sentinel2.SCENE_BATCH` cells a
    request. A bad ``[params]`` is left to the submission, which fails each cell with its error."""
    for cells in ledger.pending_rows(SCENE_BATCH):
        try:
            errors = uncovered(ee, cells, spec)
        except InputError:
            return
        for cell, error in errors.items():
            ledger.update(cell, state="FAILED", error=error)
            say(f"  FAILED {error}")


def _fill_slots(ee, ledger: Ledger, spec: JobSpec, product, wait_until: dict[str, float], max_attempts: int, say,
                storage_root) -> Iterator[tuple[str, str]]:  # fmt: skip
    """Submit cells into the free slots (``spec.max_running`` less the active cells), yielding each cell's
    outcome; SUBMITTING cells come first: they may already run on the engine."""
    slots = spec.max_running - len(ledger.rows(ACTIVE))
    for cell in ledger.next_cells(max(slots, 0), skip=wait_until):
        yield cell, _submit(ee, ledger, spec, product, cell, max_attempts, say, storage_root)


def _finished(ledger: Ledger, spec: JobSpec, submitted: int, start: float, say) -> JobResult:
    """The job's result from its ledger, said in one line (and the first failures)."""
    counts = ledger.counts()
    failed = [(r["cell"], r["error"] or "") for r in ledger.rows("FAILED")]
    result = JobResult(counts, submitted, time.time() - start, failed)
    split = f", split {counts['SPLIT']}" if counts["SPLIT"] else ""
    say(f"job {spec.name}: done {counts['SUCCEEDED']}, failed {counts['FAILED']}{split}, "
        f"{submitted} submitted by this run, {result.seconds:.1f} s")  # fmt: skip
    for cell, error in failed[:10]:
        say(f"  FAILED {cell}: {error}")
    return result


def job_units(spec: JobSpec) -> Iterable[dict[str, Any]]:
    """What the job submits, one task each: its cells, or for a batched product its batches (as rows)."""
    rows = iter_grid_table(spec.cells)
    if spec.product not in BATCHED_PRODUCTS:
        return rows
    per_side = spec.params.get("files_per_side", DEFAULT_FILES_PER_SIDE)
    return [b.to_row() for b in plan_batches(rows, per_side)]


def verify_outputs(spec: JobSpec, cell: str, storage_root: str | Path | None = None) -> dict[str, str]:
    """The files a finished task wrote for ``cell`` ({gs:// URI: crc32c}), or JobError when none or an empty one.

    Checked at the destination itself (Cloud Storage, the emulator or the local engine's folder),
    so a task that reports success without its files is caught. A product that writes one file of a known
    name (:func:`~gee_mining.batch.products.one_file_suffix`) has that file checked by name: listing a
    prefix costs a scan of the whole folder on a local engine's folder storage (the job's 10,000 files);
    when it is missing or empty, the listing below says so.
    """

    bucket = open_bucket(spec.bucket, storage_root)
    prefix = f"{spec.prefix}/{cell}" if spec.prefix else cell
    suffix = one_file_suffix(spec)
    if suffix is not None and bucket.size(prefix + suffix) > 0:
        return {f"gs://{spec.bucket}/{prefix}{suffix}": bucket.crc32c(prefix + suffix)}
    names = [n for n in bucket.list(prefix) if n.startswith(prefix)]
    names = cell_files(names, prefix) or [n for n in names if n.rsplit("/", 1)[-1].startswith(cell + ".")]
    if not names:
        raise JobError(f"verification: the task succeeded but gs://{spec.bucket}/{prefix}* holds no file")
    out = {}
    for name in names:
        if bucket.size(name) <= 0:
            raise JobError(f"verification: gs://{spec.bucket}/{name} is empty")
        out[f"gs://{spec.bucket}/{name}"] = bucket.crc32c(name)
    return out


def verify_batch(spec: JobSpec, row: dict[str, Any], storage_root: str | Path | None = None):
    """A finished batch's files ({gs:// URI: crc32c}) and its cells' places in them.

    Every file must be one of the batch's blocks that hold a cell (a stray or empty file is a JobError); a
    cell whose block has no file was skipped by ``skipEmptyTiles`` (all its pixels masked) and gets file ''.
    """
    batch = Batch.from_row(row)
    bucket = open_bucket(spec.bucket, storage_root)
    prefix = f"{spec.prefix}/{batch.name}" if spec.prefix else batch.name
    if BATCHED_PRODUCTS.get(spec.product, "image") != "image":
        return _verify_batch_files(spec, batch, bucket, prefix)
    files, places = {}, {c["name"]: ("", None) for c in batch.cells}
    for name in batch_files(bucket.list(prefix), prefix):
        windows = cells_of_file(batch, name, prefix)
        if not windows:
            raise JobError(f"verification: gs://{spec.bucket}/{name} holds none of batch {batch.name}'s cells")
        if bucket.size(name) <= 0:
            raise JobError(f"verification: gs://{spec.bucket}/{name} is empty")
        uri = f"gs://{spec.bucket}/{name}"
        files[uri] = bucket.crc32c(name)
        for w in windows:
            places[w.cell] = (uri, [w.col_off, w.row_off, w.width, w.height])
    return files, places


def _verify_batch_files(spec: JobSpec, batch: Batch, bucket, prefix: str):
    """A table or TFRecord batch: its files (the CSV, which must exist; the TFRecord files, none when every patch
    was dropped by ``maxMaskedRatio``), none empty. Each cell's place is the batch's file (a table: its rows
    carry the cell in ``cell``) or file pattern (TFRecord: patches carry ``x``/``y``), with no window."""
    names = [n for n in bucket.list(prefix) if n.startswith(prefix)]
    if BATCHED_PRODUCTS[spec.product] == "table":
        names = [n for n in names if n == f"{prefix}.csv"]
        if not names:
            raise JobError(f"verification: the task succeeded but gs://{spec.bucket}/{prefix}.csv is missing")
        place = f"gs://{spec.bucket}/{names[0]}"
    else:
        names = cell_files(names, prefix)
        place = f"gs://{spec.bucket}/{prefix}-*.tfrecord.gz" if names else ""
    files = {}
    for name in names:
        if bucket.size(name) <= 0:
            raise JobError(f"verification: gs://{spec.bucket}/{name} is empty")
        files[f"gs://{spec.bucket}/{name}"] = bucket.crc32c(name)
    return files, {c["name"]: (place, None) for c in batch.cells}


def retry_failed(spec: JobSpec, ledger_path: str | Path | None = None, say=None) -> int:
    """Put every FAILED cell back to PENDING with a new request id (a new generation); how many.

    The spec may have been fixed since (other ``[params]`` or destination): the ledger follows it (see
    :meth:`Ledger.bind`), so the failed cells are exported with the new parameters.
    """
    path = Path(ledger_path or spec.default_ledger())
    ledger = Ledger.existing(path, spec.path)
    if ledger is None:
        raise InputError(f"{path}: no ledger: job {spec.name} has not run yet; run it: gee-mining export run "
                         f"{spec.path or 'JOB.toml'}")  # fmt: skip
    try:
        if ledger.bind(spec, new_params=True) and say:
            done = ledger.counts()["SUCCEEDED"]
            say(f"{spec.name}: the spec changed: failed cells are exported with the new parameters "
                f"({done} cell(s) done earlier keep their files)")  # fmt: skip
        rows = ledger.rows("FAILED")
        for row in rows:
            generation = row["generation"] + 1
            ledger.update(row["cell"], state="PENDING", generation=generation, attempts=0,
                          request_id=spec.request_id(row["cell"], generation))  # fmt: skip
        return len(rows)
    finally:
        ledger.close()


def cancel_job(ee, spec: JobSpec, ledger_path: str | Path | None = None) -> int:
    """Cancel the job's submitted and running tasks on the engine; their cells become FAILED ("cancelled")."""
    ledger = Ledger.existing(ledger_path or spec.default_ledger(), spec.path)
    if ledger is None:
        return 0
    try:
        ledger.bind(spec)
        cancelled = 0
        for row in ledger.rows(ACTIVE):
            try:
                ee.data.cancelOperation(row["operation"])
                state = operation_state(ee.data.getOperation(row["operation"]))[0]
            except ee.EEException:
                continue  # unknown to the engine now: the next run's poll resubmits it
            if state == "SUCCEEDED":
                continue  # finished before the cancel: the next run verifies its files
            ledger.update(row["cell"], state="FAILED", error="cancelled by gee-mining export cancel")
            cancelled += 1
        return cancelled
    finally:
        ledger.close()


def _progress_line(counts: dict[str, int], start: float, submitted: int) -> str:
    total = sum(counts.values())
    done = counts["SUCCEEDED"] + counts["FAILED"] + counts["SPLIT"]
    elapsed = time.time() - start
    eta = f", ETA {elapsed / done * (total - done):.0f} s" if done and submitted else ""
    running = counts["SUBMITTED"] + counts["RUNNING"]
    return f"  {done}/{total} done ({counts['FAILED']} failed), {running} running{eta}"


def _fail(ledger: Ledger, spec: JobSpec, cell: str, message: str, say) -> None:
    """A deterministic failure: re-plan the cell as its 4 children when the spec allows and size was the cause."""
    if spec.split_failed and is_splittable(message):
        row = ledger.cell_row(cell)
        if is_batch_row(row):
            quadrants = [b.to_row() for b in split_batch(Batch.from_row(row))]
            if quadrants:
                ledger.split(spec, cell, message, quadrants)
                say(f"  SPLIT batch {cell} into {len(quadrants)} batches: {message}")
                return
            message += " (a batch of one file block cannot be split)"
            ledger.update(cell, state="FAILED", error=message)
            say(f"  FAILED {cell}: {message}")
            return
        if int(row.get("split_depth") or 0) < spec.max_split_depth:
            children = child_rows(row)
            ledger.split(spec, cell, message, children)
            say(f"  SPLIT {cell} into {len(children)} cells of {children[0]['cell_size']:g} m: {message}")
            return
        message += f" (not split again: max_split_depth = {spec.max_split_depth} reached)"
    ledger.update(cell, state="FAILED", error=message)
    say(f"  FAILED {cell}: {message}")


def _found_at_destination(ledger: Ledger, spec: JobSpec, cell: str, storage_root, say, why: str) -> bool:
    """Whether the cell's files are already at the destination (then it is SUCCEEDED, with their checksums; a
    batch's cells are placed in its files, as when its task is seen to succeed)."""
    unit = ledger.cell_row(cell)
    try:
        if is_batch_row(unit):
            files, places = verify_batch(spec, unit, storage_root)
            if not files:
                return False  # nothing written yet: the task may still run, or never started
            ledger.place_members(places)
        else:
            files = verify_outputs(spec, cell, storage_root)
    except JobError:
        return False
    ledger.update(cell, state="SUCCEEDED", uris=json.dumps(sorted(files)), error=None,
                  checksum=json.dumps(files, sort_keys=True))  # fmt: skip
    say(f"  {cell}: {why}; its files are at the destination: done, not exported again")
    return True


def _adopt_existing(ledger: Ledger, spec: JobSpec, storage_root, say) -> None:
    """Cells not yet SUCCEEDED whose files are at the destination become SUCCEEDED: one listing of the prefix."""
    bucket = open_bucket(spec.bucket, storage_root)
    listed = set(bucket.list(f"{spec.prefix}/" if spec.prefix else ""))
    adopted = 0
    for row in ledger.rows(("PENDING", "SUBMITTING", "FAILED")):
        prefix = f"{spec.prefix}/{row['cell']}" if spec.prefix else row["cell"]
        if cell_files(sorted(n for n in listed if n.startswith(prefix)), prefix):
            adopted += _found_at_destination(ledger, spec, row["cell"], storage_root, lambda _m: None, "")
    say(f"job {spec.name}: {adopted} cell(s) already at gs://{spec.bucket}/{spec.prefix} adopted as done")


def _submit(ee, ledger: Ledger, spec: JobSpec, product, cell: str, max_attempts: int, say, storage_root=None) -> str:
    """Submit one cell: 'submitted', 'retry' (transient error, backoff) or 'failed'; a SUBMITTING cell (a crash
    between the ledger and the engine) is first looked up at the destination."""
    row = ledger.cell_row(cell)
    current = ledger.db.execute("SELECT request_id, attempts, state FROM cells WHERE cell=?", (cell,)).fetchone()
    # A batch's files may be half written by a task still running: its request id (Earth Engine keeps one
    # operation per id) finds that task again instead of the files.
    if (
        current[2] == "SUBMITTING"
        and not is_batch_row(row)
        and _found_at_destination(ledger, spec, cell, storage_root, say, "submitted before an interruption")
    ):
        return "done"
    request_id, attempts = current[0], current[1] + 1
    ledger.update(cell, state="SUBMITTING", attempts=attempts)  # BEFORE the engine hears of it
    try:
        name = start_with_request_id(ee, product(ee, row, spec), request_id)
    except InputError as exc:
        ledger.update(cell, state="FAILED", error=str(exc))
        say(f"  FAILED {cell}: {exc}")
        return "failed"
    except ee.EEException as exc:
        message = str(exc)
        if is_transient(message) and attempts < max_attempts:
            ledger.update(cell, state="PENDING", error=message)
            say(f"  {cell}: transient error, will retry ({attempts}/{max_attempts}): {message}")
            return "retry"
        _fail(ledger, spec, cell, message, say)
        return "failed"
    ledger.update(cell, state="SUBMITTED", operation=name, error=None)  # AFTER
    return "submitted"


def _poll_round(ee, ledger: Ledger, spec: JobSpec, max_attempts: int, say, storage_root) -> None:
    """One poll of every active cell, in few requests: the project's operation listing read page by page only
    as far as the active cells' operations (:func:`~gee_mining.batch.tasks.find_operations`: the newest, one
    page of 500 however many operations the project has; a transient error skips the round), and the few it
    did not reach read each on its own."""
    active = ledger.rows(ACTIVE)
    if not active:
        return
    try:
        listed = find_operations(ee, [row["operation"] for row in active])
    except ee.EEException as exc:
        if is_transient(str(exc)):
            return
        raise
    for row in active:
        _poll(ee, ledger, spec, row, max_attempts, say, storage_root, listed.get(row["operation"]))


def _poll(ee, ledger: Ledger, spec: JobSpec, row: dict, max_attempts: int, say,
          storage_root: str | Path | None = None, op: dict | None = None) -> None:  # fmt: skip
    """One cell's operation (``op`` as listed, else read on its own) into the ledger."""
    cell = row["cell"]
    try:
        op = op or ee.data.getOperation(row["operation"])
    except ee.EEException as exc:
        if is_transient(str(exc)):
            return
        # The engine no longer knows the operation (a local engine restarted): done if its files are there,
        # else submitted again.
        if not _found_at_destination(ledger, spec, cell, storage_root, say, "the engine no longer knows its task"):
            ledger.update(cell, state="PENDING", operation=None, error=str(exc))
        return
    state, error, uris = operation_state(op)
    if state == "SUCCEEDED":
        unit = ledger.cell_row(cell)
        try:
            if is_batch_row(unit):
                files, places = verify_batch(spec, unit, storage_root)
                ledger.place_members(places)
            else:
                files = verify_outputs(spec, cell, storage_root)
        except JobError as exc:
            ledger.update(cell, state="FAILED", error=str(exc), uris=json.dumps(uris))
            say(f"  FAILED {cell}: {exc}")
            return
        ledger.update(cell, state="SUCCEEDED", uris=json.dumps(sorted(files)), error=None,
                      checksum=json.dumps(files, sort_keys=True))  # fmt: skip
    elif state in ("FAILED", "CANCELLED"):
        message = error or state.lower()
        if state == "FAILED" and is_transient(message) and row["attempts"] < max_attempts:
            generation = row["generation"] + 1  # the old request id names the failed operation: a new one
            ledger.update(cell, state="PENDING", generation=generation, error=message,
                          request_id=spec.request_id(cell, generation))  # fmt: skip
            say(f"  {cell}: task failed transiently, will resubmit: {message}")
        elif state == "FAILED":
            _fail(ledger, spec, cell, message, say)
        else:
            ledger.update(cell, state="FAILED", error=message)
            say(f"  FAILED {cell}: {message}")
    elif state == "RUNNING" and row["state"] != "RUNNING":
        ledger.update(cell, state="RUNNING")
