"""A headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``), for tests.

No client library: messages are JSON separated by NUL bytes on file descriptors 3 (to the browser) and
4 (from it). Enough to open a page, click a link as a user does, wait for the next page and take a
screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from gee_mining.tools.report import CHROMIUM_FLAGS, find_chromium


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError("Chromium not found (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="gee-mining-browser-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        cmd = [exe, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
               f"--window-size={width},{height}", "about:blank"]  # fmt: skip

        def fds_3_and_4() -> None:  # in the child: the pipe ends at fds 3 and 4, where Chromium expects them
            os.dup2(to_browser_r, 100)  # first out of the way: the pipe's own fds may be 3 or 4
            os.dup2(from_browser_w, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        self._proc = subprocess.Popen(
            cmd, close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds_3_and_4,
        )  # fmt: skip
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._id = 0
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self._session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.call("Page.enable", session=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        try:  # closed as a user closes it: its helper processes stop writing into the profile
            self.call("Browser.close", timeout=10)
            self._proc.wait(timeout=10)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait(timeout=30)
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._remove_profile()

    def _remove_profile(self) -> None:
        """Remove the profile folder; a helper process (crashpad, a renderer) that outlives the browser for a moment
        may still write into it, which made ``rmtree`` fail with 'Directory not empty' now and then."""
        for _ in range(20):
            try:
                shutil.rmtree(self._profile)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.25)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed its pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, session: bool = False, timeout: float = 30, **params) -> dict:
        """Send one command and return its result (events that arrive meanwhile are dropped)."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str) -> None:
        before = self.evaluate("location.href")
        self.call("Page.navigate", session=True, url=url)
        self.wait_loaded(not_url=before)

    def wait_loaded(self, not_url: str | None = None, timeout: float = 20) -> str:
        """Wait until the page has loaded (and, with ``not_url``, left that address); its address."""
        deadline = time.monotonic() + timeout
        href = None
        while time.monotonic() < deadline:
            try:
                state, href = self.evaluate("[document.readyState, location.href]") or (None, None)
            except RuntimeError as e:  # asked while the page was being replaced: ask the new one
                if "navigated or closed" not in str(e):
                    raise
                state = None
            if state == "complete" and (not_url is None or href != not_url):
                return href
            time.sleep(0.1)
        raise TimeoutError(f"page did not load (still {href})")

    def click_link(self, text: str) -> str:
        """Click the first link whose text is ``text``, as a user does; the address it lands on."""
        before = self.evaluate("location.href")
        found = self.evaluate(
            "(() => { const a = [...document.querySelectorAll('a')].find(a => a.textContent.trim() === "
            + json.dumps(text)
            + "); if (!a) return false; a.click(); return true; })()"
        )
        if not found:
            raise LookupError(f"no link {text!r} on {before}")
        return self.wait_loaded(not_url=before)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path
