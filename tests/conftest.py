"""Shared fixtures: the real ``ee`` client connected to a local engine.

Tests talk to the engine only through ``ee``, as users do. The ``ee`` module is
process-global, so one session-wide connection serves every test; the engine
is in-process, and ``ee_http`` gives the same engine over loopback HTTP.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Under pytest-xdist (`make test` runs two workers on CI's two cores) each worker is one process of the two:
# numerical libraries keep to one thread each, else OpenMP's spinning threads of one worker starve the other
# (scikit-learn's HistGradientBoosting took 33 s instead of 0.3 s for 600 rows, measured on a loaded machine).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

# torch and torchvision (for YOLO) must load before TensorFlow (for TFRecords) in one process: the other order
# segfaults in triton's import, which torchvision makes (`import torch; import tensorflow; import torchvision`
# segfaults; an xdist worker that ran a TFRecord test before the pyramid's YOLO test died of it). Tests import
# them late, in whatever order they run, so both are loaded first here.
try:
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:  # the `yolo` extra is not installed: the YOLO tests skip
    pass

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TEST_DATA = Path(__file__).parent / "data"

os.environ.setdefault("MPLCONFIGDIR", str(ROOT / ".cache" / "matplotlib"))


L1C_ORIGIN = (330000.0, 5822040.0)  # the real L1C crop's 10 m lattice origin in EPSG:32633


def l1c_grid(col0: int, row0: int, width: int, height: int, scale: float = 10.0) -> dict:
    """A computePixels ``grid`` on a window of the real L1C crop's lattice (EPSG:32633)."""
    x0, y0 = L1C_ORIGIN
    return {
        "dimensions": {"width": width, "height": height},
        "affineTransform": {
            "scaleX": scale,
            "shearX": 0,
            "translateX": x0 + 10 * col0,
            "shearY": 0,
            "scaleY": -scale,
            "translateY": y0 - 10 * row0,
        },
        "crsCode": "EPSG:32633",
    }


def finished_task(task, timeout: float = 60.0) -> dict:
    """``task``'s status once it has finished (COMPLETED, FAILED or CANCELLED); an AssertionError after
    ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = task.status()
        if status["state"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"task did not finish: {task.status()}")


def shared_file(relative: str) -> Path:
    """A file of ../shared/data, or a skip that says why."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs the project's shared real data beside the checkout")
    return path


# Fixtures that take more than a few seconds to make (a simulated world, the demo, grids of the real polygons):
# every test that needs one, directly or through another fixture, is marked ``slow``. ``make test`` runs
# everything; ``pytest -m "not slow"`` is the quick loop.
SLOW_FIXTURES = frozenset({
    "sim_world",  # the shared simulated world (conftest)
    "demo_run",  # make demo, end to end (conftest)
    "sim",  # test_pyramid's and test_study's own simulated worlds
    "grid_case",  # test_grid: the grid of the 100 real polygons at three cell sizes
})  # fmt: skip


# `make test` runs two pytest-xdist workers with `--dist loadfile`: a test file runs on one worker, so its module
# fixtures are built once. A session fixture that takes long to build and serves several files is built once per
# worker that uses it: those files go to one worker together (one unit of work, named after the fixture).
SHARED_FIXTURE_FILES = {
    "demo_run": ("test_demo.py", "test_report.py"),
    "executed_notebook": ("test_docs.py", "test_notebook_page.py"),
}
_UNIT_OF_FILE = {name: fixture for fixture, names in SHARED_FIXTURE_FILES.items() for name in names}


def _work_unit(path: str) -> str:
    """The xdist unit of work of a test file: its shared fixture's name, else the file."""
    return _UNIT_OF_FILE.get(Path(path).name, path)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, when it is installed
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` with the files of :data:`SHARED_FIXTURE_FILES` grouped, the units in collection order
    (:func:`pytest_collection_modifyitems` puts the heavy ones first)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid.split("::", 1)[0])

    config.option.loadscopereorder = False  # xdist would order the units by their count of tests
    return SharedFixtureScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = getattr(item, "fixturenames", ())
        if SLOW_FIXTURES.intersection(names):
            item.add_marker(pytest.mark.slow)
        for fixture in SHARED_FIXTURE_FILES:
            if fixture in names and item.path.name not in SHARED_FIXTURE_FILES[fixture]:
                raise pytest.UsageError(
                    f"{item.nodeid} uses the session fixture {fixture}: add {item.path.name} to its files in "
                    "tests/conftest.py SHARED_FIXTURE_FILES, so that xdist builds it once"
                )
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the units with the most slow tests first: the last ones are short
        slow = collections.Counter(_work_unit(str(i.path)) for i in items if i.get_closest_marker("slow"))
        items.sort(key=lambda i: -slow[_work_unit(str(i.path))])


@pytest.fixture(autouse=True, scope="session")
def _runtime_files(tmp_path_factory):
    """Engines served in tests (and their subprocesses) leave their tokens' runtime files in a temporary
    folder, not in the user's own (gee_mining.local.service.access.runtime_dir)."""
    os.environ["GEE_MINING_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("runtime"))


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Refuse every connection that is not to loopback: no test may go online."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
            raise OSError(f"network access refused in tests: {address!r}")
        return real_connect(self, address)

    socket.socket.connect = guarded
    yield
    socket.socket.connect = real_connect


def _write_catalog(tmp: Path) -> Path:
    """The test catalog: the shared real data (tables, the real Sentinel-2 scenes) and small test tables."""
    from gee_mining.io.catalog import catalog_toml

    text = catalog_toml(SHARED_DATA if SHARED_DATA.is_dir() else None, "gee-mining-test")
    text += f'\n[[table]]\nid = "projects/gee-mining-test/assets/squares"\npath = "{TEST_DATA / "squares.geojson"}"\n'
    catalog = tmp / "catalog.toml"
    catalog.write_text(text)
    return catalog


@pytest.fixture(scope="session")
def engine_catalog(tmp_path_factory) -> Path:
    return _write_catalog(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="session")
def _session_connection(engine_catalog, tmp_path_factory):
    import gee_mining

    options = dict(project="gee-mining-test", catalog=engine_catalog, storage_root=tmp_path_factory.mktemp("storage"))
    return options, gee_mining.connect("local", **options)


@pytest.fixture(scope="session")
def ee_local(_session_connection):
    """``ee`` initialised against an in-process local engine with the test catalog."""
    import ee

    yield ee


def _reconnect_if_moved(before, session_connection) -> None:
    """``ee`` connected to the test engine again if what ran since ``before`` connected it elsewhere."""
    import gee_mining

    now = gee_mining.current_connection()
    if now is None or before is None or now != before or now.local_engine is not before.local_engine:
        options, _ = session_connection
        gee_mining.connect("local", **options)


@pytest.fixture(autouse=True)
def _back_to_the_test_engine(_session_connection):
    """A test that connects ``ee`` elsewhere (a CLI, another engine) does not leak it to the next test."""
    import gee_mining

    before = gee_mining.current_connection()
    yield
    _reconnect_if_moved(before, _session_connection)


@pytest.fixture(scope="module", autouse=True)
def _module_back_to_the_test_engine(_session_connection):
    """A module whose fixture connects ``ee`` elsewhere (a CLI run, its own engine) hands the test engine back
    when it ends: the per-test check above compares with what the test started with, which for such a module
    is already its own engine."""
    import gee_mining

    before = gee_mining.current_connection()
    yield
    _reconnect_if_moved(before, _session_connection)


@pytest.fixture
def ee_http(ee_local, engine_catalog):
    """The same engine over loopback HTTP for one test; back in-process afterwards."""
    import gee_mining

    conn = gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog, http=True)
    yield ee_local
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    assert conn.url.startswith("http://127.0.0.1:")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, engine_catalog):
    """``make demo`` at its SMALL scale (``gee_mining.demo.context.SMALL``: every step and section, on a 6 km world
    of 4 months, two grid levels, a smaller pixel-study sample and a 5.5 km pyramid world), run once per test
    session and shared by the tests that read its output. They check its structure and independent references,
    which hold at any scale.

    With the shared real data beside the checkout it measures the real polygons too; without, it runs on the
    simulated world alone, as the demo does.
    """
    import gee_mining
    from gee_mining.demo.context import SMALL
    from gee_mining.demo.run import run_demo

    out = tmp_path_factory.mktemp("demo")
    try:
        yield run_demo(out, progress=lambda msg: None, scale=SMALL)
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


# -- the simulated world, generated once per session ----------------------------------------------------------
SIM_WORLD = dict(size_km=3, months=3, seed=3, project="gee-mining-test")  # 3 km, Jan-Mar 2019: 18 scenes


@pytest.fixture(scope="session")
def sim_world(tmp_path_factory):
    """The tiny simulated Sentinel-2 world (:data:`SIM_WORLD`) shared by every module that reads it.

    Generated once per session; read-only for tests (none may write into ``out_dir``): each module that
    exports does so into its own storage root.
    """
    from gee_mining.world import generate_world

    return generate_world(tmp_path_factory.mktemp("sim_world"), **SIM_WORLD)


@pytest.fixture(scope="session")
def sim_catalog(engine_catalog, sim_world, tmp_path_factory) -> Path:
    """A catalog holding the test catalog (real scenes, tables) and the simulated world side by side."""
    from gee_mining.world import world_catalog_toml

    catalog = tmp_path_factory.mktemp("sim_catalog") / "catalog.toml"
    catalog.write_text(engine_catalog.read_text() + "\n" + world_catalog_toml(sim_world.out_dir))
    return catalog


# -- the documentation's notebooks, executed once per session ------------------------------------------------
_NET_GUARD = """
import os, socket
_log = os.environ["GEE_MINING_NET_LOG"]
_real = socket.socket.connect
def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
        with open(_log, "a") as fh:
            fh.write(f"refused {address!r}\\n")
        raise OSError(f"network access refused in the notebook test: {address!r}")
    return _real(self, address)
socket.socket.connect = _guarded
with open(_log, "a") as fh:
    fh.write(f"guard {os.getpid()}\\n")
"""


@dataclass(frozen=True)
class ExecutedNotebook:
    """A notebook of docs/notebooks run by `make docs`'s step on a copy of the docs (``root``: docs/ and
    mkdocs.yml), with its executed copy where `make docs` puts it and what the kernel's network guard logged."""

    root: Path
    source: Path  # root/docs/notebooks/<name>
    executed: Path  # root/runs/notebooks/<name>
    net_log: list[str]  # "guard <pid>" when the guard loaded in the kernel, "refused <address>" per refusal


def _execute_notebook(name: str, tmp: Path) -> ExecutedNotebook:
    """`python -m gee_mining.tools.notebook_doc docs/notebooks/NAME runs/notebooks/NAME` (its ``main``) on a copy of
    the docs; the kernel (a subprocess) loads a ``sitecustomize`` that refuses and logs every non-loopback
    connection, and makes its scratch folders (tempfile) under ``tmp``."""
    from gee_mining.tools import notebook_doc

    root = tmp / "repo"
    shutil.copytree(ROOT / "docs", root / "docs")
    shutil.copy(ROOT / "mkdocs.yml", root / "mkdocs.yml")
    guard, scratch, log = tmp / "guard", tmp / "scratch", tmp / "net.log"
    guard.mkdir()
    scratch.mkdir()
    (guard / "sitecustomize.py").write_text(_NET_GUARD)
    source, executed = root / "docs" / "notebooks" / name, root / "runs" / "notebooks" / name
    with pytest.MonkeyPatch.context() as env, contextlib.redirect_stdout(io.StringIO()):
        env.setenv(
            "PYTHONPATH", os.pathsep.join([str(guard), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        )
        env.setenv("GEE_MINING_NET_LOG", str(log))
        env.setenv("MPLCONFIGDIR", str(ROOT / ".cache" / "matplotlib"))
        env.setenv("TMPDIR", str(scratch))  # the notebook's scratch folder (tempfile.mkdtemp) goes away after
        env.delenv("GEE_MINING_CATALOG", raising=False)
        assert notebook_doc.main([str(source), str(executed)]) == 0
    return ExecutedNotebook(root, source, executed, log.read_text().splitlines() if log.exists() else [])


@pytest.fixture(scope="session")
def executed_notebook(tmp_path_factory):
    """``executed_notebook(name)``: the notebook docs/notebooks/<name> executed offline (:func:`_execute_notebook`),
    once per session however many tests read it (the tour takes 10-20 s)."""
    done: dict[str, ExecutedNotebook] = {}

    def run(name: str) -> ExecutedNotebook:
        if name not in done:
            done[name] = _execute_notebook(name, tmp_path_factory.mktemp("notebook"))
        return done[name]

    return run
