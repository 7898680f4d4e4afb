"""Run ultralytics with no network and no files under ``$HOME``.

ultralytics reaches the network in several places by default: a connectivity check
(DNS) when it starts, a font download (``Arial.ttf``) in every dataset check even with
``plots=False``, an AMP check that downloads ``yolo11n.pt``, settings sync and
integration callbacks, and downloads of any named ``.pt`` file it cannot find. It keeps
its settings under ``~/.config/Ultralytics``. :func:`prepare_ultralytics` shuts every one
of these off (settings, font and runs in a folder you choose), :data:`OFFLINE_TRAIN_ARGS`
are the train/val arguments that keep it offline, and :func:`no_network` is a guard that
refuses, and records, every connection or DNS lookup that is not to loopback, so a
forgotten download fails loudly instead of hanging.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

from gee_mining.errors import InputError

# Arguments of ``model.train`` / ``model.val`` that keep ultralytics offline and in-process on a CPU.
OFFLINE_TRAIN_ARGS = {"plots": False, "amp": False, "workers": 0}

_INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class NetworkRefused(OSError):
    """A connection or DNS lookup to a non-loopback address inside :func:`no_network`."""


def _is_loopback(host) -> bool:
    if not isinstance(host, str):
        return isinstance(host, bytes) and _is_loopback(host.decode(errors="replace"))
    return host in _LOOPBACK_NAMES or host.startswith("127.") or host in ("::1", "0:0:0:0:0:0:0:1")


@contextmanager
def no_network() -> Iterator[list[str]]:
    """Refuse every socket connection and DNS lookup that is not to loopback; yield the list of attempts.

    Each refused attempt is appended to the yielded list (``"connect ('1.2.3.4', 443)"``,
    ``"getaddrinfo dns.google"``) and raises :class:`NetworkRefused` in the caller. Unix
    sockets and loopback (the local engine's HTTP server) pass.
    """
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse(what: str):
        attempts.append(what)
        raise NetworkRefused(f"network access refused (gee_mining.ml.detect runs offline): {what}")

    def connect(self, address):
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            refuse(f"connect {address!r}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            refuse(f"connect {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_loopback(host):
            refuse(f"getaddrinfo {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    try:
        yield attempts
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (
            real_connect,
            real_connect_ex,
            real_getaddrinfo,
        )


def default_cache_dir() -> Path:
    """Where ultralytics' settings and font go: ``$YOLO_CONFIG_DIR`` if set, else ``./.cache/ultralytics``."""
    return Path(os.environ.get("YOLO_CONFIG_DIR") or Path.cwd() / ".cache" / "ultralytics").resolve()


def _font() -> Path:

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not font.is_file():
        raise InputError(
            f"{font} is missing: reinstall matplotlib, whose DejaVu font stands in for ultralytics' Arial."
        )
    return font


def prepare_ultralytics(cache_dir: str | os.PathLike | None = None):
    """Configure ultralytics to run offline and import it; returns the ``ultralytics`` module.

    Sets ``YOLO_CONFIG_DIR`` (unless already set), ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=0``
    and ``MPLCONFIGDIR`` (unless set) before the import, puts matplotlib's DejaVu Sans where
    ultralytics looks for ``Arial.ttf`` and ``Arial.Unicode.ttf`` (so it never downloads
    them), and turns settings sync and every integration callback off. Call it before
    anything imports ultralytics; calling it again is harmless.
    """
    cache = Path(cache_dir).resolve() if cache_dir is not None else default_cache_dir()
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache))
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("MPLCONFIGDIR", str(Path(os.environ["YOLO_CONFIG_DIR"]).parent / "matplotlib"))
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    with no_network():
        # deferred: heavy optional dependency (the `yolo` extra), imported with the network refused
        import ultralytics
        import ultralytics.utils as uutils
        import ultralytics.utils.checks as uchecks

    uutils.AUTOINSTALL = uchecks.AUTOINSTALL = False
    config_dir = Path(uutils.USER_CONFIG_DIR)
    config_dir.mkdir(parents=True, exist_ok=True)
    font = _font()
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (config_dir / name).exists():
            shutil.copyfile(font, config_dir / name)
    wanted = {"sync": False, **dict.fromkeys(_INTEGRATIONS, False)}
    if any(uutils.SETTINGS.get(k) != v for k, v in wanted.items()):
        uutils.SETTINGS.update(wanted)
    return ultralytics


def resolve_weights(weights: str | os.PathLike, what: str = "weights") -> Path:
    """The path of a user-given weights file, or an :class:`InputError` naming the missing file.

    ultralytics downloads any ``.pt`` name it cannot find; gee-mining never lets it: give a
    path to a file you have (a model you trained, or one copied onto this machine).
    """
    path = Path(weights).expanduser()
    if not path.is_file():
        raise InputError(
            f"{what} file {str(path)!r} does not exist: gee-mining never downloads weights. Copy the file "
            f"(e.g. yolo11n.pt, yolov8s-worldv2.pt, or a best.pt from `gee-mining detect train`) onto this machine "
            f"and pass its path, or train from a model yaml such as 'yolo11n.yaml'."
        )
    return path.resolve()


def is_model_yaml(model: str | os.PathLike) -> bool:
    """True for a model architecture yaml (ultralytics builds those with no download)."""
    return str(model).lower().endswith((".yaml", ".yml"))


def _quiet_stdout_encoding() -> None:  # pragma: no cover - platform dependent
    if hasattr(sys.stdout, "reconfigure"):
        try:
            sys.stdout.reconfigure(errors="replace")
        except Exception:
            pass
