"""Earth Engine batch tasks: the one place that starts them and polls them.

Two ways of following a task, both here:

- a handful of ``ee.batch.Task`` objects started together and waited for (:func:`start_tasks`,
  :func:`wait_for`, :func:`run_tasks`): exports of a few cells, probability maps, pixel tables,
  the pyramid's composite;
- operations by name, as the export-job launcher does (:func:`start_with_request_id`,
  :func:`find_operations`, :func:`operation_state`): its ledger keeps the operation names and request ids
  across runs, and each poll round reads the project's operation listing only as far as its running
  operations, newest first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from gee_mining.errors import GeeMiningError

DONE_STATES = ("COMPLETED", "SUCCEEDED", "FAILED", "CANCELLED")
"""A task in one of these states has ended (Earth Engine's task list says COMPLETED, operations SUCCEEDED)."""


def succeeded(status: dict) -> bool:
    """Whether a task status (``Task.status()``) says the task finished its work."""
    return status.get("state") in ("COMPLETED", "SUCCEEDED")


def start_tasks(
    tasks: Iterable[Any], progress: Callable[[str], None] | None = None, labels: Sequence[str] | None = None
) -> list[Any]:
    """Start each task in turn; the started tasks. ``progress`` hears one line per task when ``labels``
    (one per task) name them."""
    tasks = list(tasks)
    for i, task in enumerate(tasks):
        task.start()
        if progress and labels is not None:
            progress(f"[exports] started {i + 1}/{len(tasks)}: {labels[i]}")
    return tasks


def wait_for(tasks: Sequence[Any], poll_s: float = 1.0, timeout_s: float | None = None, progress=None) -> list[dict]:
    """Poll started tasks until each ends (COMPLETED, FAILED or CANCELLED); their final statuses."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    done: dict[int, dict] = {}
    last = None
    while len(done) < len(tasks):
        for i, task in enumerate(tasks):
            if i not in done:
                status = task.status()
                if status.get("state") in DONE_STATES:
                    done[i] = status
        line = f"[exports] {len(done)}/{len(tasks)} tasks finished"
        if progress and line != last:
            progress(line)
            last = line
        if len(done) < len(tasks):
            if deadline is not None and time.monotonic() > deadline:
                raise GeeMiningError(f"{len(tasks) - len(done)} export task(s) still running after {timeout_s:g} s.")
            time.sleep(poll_s)
    return [done[i] for i in range(len(tasks))]


def run_tasks(tasks: Iterable[Any], progress: Callable[[str], None] | None = None) -> list[dict]:
    """Start the tasks, wait for all of them: their final statuses, in order."""
    return wait_for(start_tasks(tasks), progress=progress)


DUPLICATE_PATTERN = re.compile(r"already (used|exists)|duplicate request", re.IGNORECASE)


def start_with_request_id(ee: Any, task: Any, request_id: str) -> str:
    """Start ``task`` under ``request_id``; the operation's name.

    Earth Engine starts at most one operation per request id. A repeated id is answered either with the
    operation it started or with an error ("already used / exists"); on the error the operation is
    looked up by the task's description (:func:`find_operation`), so a resubmission never starts a
    second export and never fails the cell.
    """
    task._request_id = request_id  # Task.start sends it as the requestId; id stays None so it keeps the name
    try:
        task.start()
    except ee.EEException as exc:
        if not DUPLICATE_PATTERN.search(str(exc)):
            raise
        name = find_operation(ee, task.config.get("description"))
        if name is None:
            raise
        return name
    return task.name


DEFAULT_POLL_S = 30.0
"""How often the launcher polls (seconds): Earth Engine tasks run minutes, so 15-60 s loses little, and a round
reads the first page(s) of the operation listing (:func:`find_operations`), whatever the number of cells."""


LOCAL_POLL_S = 1.0
"""The local engine's tasks take seconds: the command line polls it every second."""


OPERATIONS_PAGE = 500
"""Operations per ``operations.list`` request: the ``ee`` client's page (``ee.data._TASKLIST_PAGE_SIZE``)."""


def operation_pages(ee: Any, page_size: int | None = None) -> Iterator[list[dict]]:
    """The project's operations one page (one request) at a time, as ``operations.list`` answers them
    (``pageSize``, ``nextPageToken``): newest first on Earth Engine and the local engine.

    ``ee.data.listOperations`` reads every page before it returns, and no public call of the client stops
    after one; this makes the same requests through the client's own request builder and executor (its
    retries and credentials included), one page when asked. A client without them gets one page of all.
    """
    data = ee.data
    try:
        operations = data._get_cloud_projects().operations()
        request = operations.list(name=data._get_projects_path(), pageSize=page_size or OPERATIONS_PAGE)
        execute = data._execute_cloud_call
    except AttributeError:  # another client version: the whole listing as one page
        yield list(data.listOperations())
        return
    while request is not None:
        response = execute(request)
        yield response.get("operations", [])
        request = operations.list_next(request, response)


def find_operations(ee: Any, names: Iterable[str], page_size: int | None = None) -> dict[str, dict]:
    """The operations named in ``names`` found in the project's listing, read page by page (newest first) and
    only as far as needed: it stops when every one is found, or when no more of them are missing than pages
    were read (reading those one by one with ``getOperation`` then costs no more requests than the pages so
    far). A launcher's running tasks are its newest: a project of 10,000 finished operations is one page a
    round, not 20. Those not returned are for ``getOperation``."""
    wanted = set(names)
    found: dict[str, dict] = {}
    for pages, page in enumerate(operation_pages(ee, page_size), start=1):
        found.update((op["name"], op) for op in page if op.get("name") in wanted)
        if len(wanted) - len(found) <= pages:
            break
    return found


def find_operation(ee: Any, description: str | None) -> str | None:
    """The name of the newest operation with this description (one ``listOperations`` call), or None."""
    if not description:
        return None
    ops = [op for op in ee.data.listOperations() if op.get("metadata", {}).get("description") == description]
    if not ops:
        return None
    return max(ops, key=lambda op: op.get("metadata", {}).get("createTime", ""))["name"]


def operation_state(op: dict) -> tuple[str, str | None, list[str]]:
    """An operation's (``ee.data.getOperation``) state, error message and destination URIs."""
    meta = op.get("metadata", {})
    state = meta.get("state", "PENDING")
    error = (op.get("error") or {}).get("message")
    return state, error, list(meta.get("destinationUris", []))
