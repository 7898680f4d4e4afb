"""The engine served over HTTP (`gee-mining serve`) against a hostile web page and hostile requests.

A web page in the user's browser can send requests to 127.0.0.1 (a "simple" cross-origin POST with a
text/plain body needs no preflight) and, by DNS rebinding, read the answers; so the server answers only
requests with its token, a loopback Host, no foreign Origin and a JSON body (as Jupyter's server does).
One request must not stop the server: a regular expression that backtracks catastrophically in a
backtracking engine (``^(a+)+$`` on 'a' * 40 + '!': 2^40 steps), a list of 10^9 numbers, a long
computation; each is answered within the request timeout ("Computation timed out.", "User memory limit
exceeded.", Earth Engine's words) while another request is answered, and the work of a request whose
client went away stops.

The server runs in its own process (`gee-mining serve`, with a 3 s request timeout and a 4 GB
address-space cap), so that a regression hangs or exhausts that process, not the test run.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import gee_mining

TIMEOUT_S = 3.0  # the server's limits.request_time_s in this module
PROJECT = "gee-mining-test"
COMPUTE = f"/v1/projects/{PROJECT}/value:compute"


def _cap_memory():  # the served engine's address space: a runaway request fails there, not here
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`gee-mining serve` in a subprocess: (url, token, runtime dir, its stdout's first lines, its pid)."""
    runtime = tmp_path_factory.mktemp("runtime")
    env = {**os.environ, "GEE_MINING_RUNTIME_DIR": str(runtime), "PYTHONUNBUFFERED": "1", "MALLOC_ARENA_MAX": "2"}
    limits = f"request_time_s={TIMEOUT_S},requests_per_s=1000"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gee_mining.cli", "serve", "--project", PROJECT, "--limits", limits],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=_cap_memory,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()
        url = first.split(" on ", 1)[1].split()[0]
        second = proc.stdout.readline()
        token = second.split("token: ", 1)[1].split()[0] if "token: " in second else None
        yield url, token, runtime, first + second, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _request(url, method="POST", path=COMPUTE, body=b"{}", headers=None, timeout=30.0):
    """(status, parsed JSON answer) of one raw request with exactly ``headers`` (Host included if given)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body if method == "POST" else None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def _good_headers(url, token):
    return {"Host": urlsplit(url).netloc, "Content-Type": "application/json", "Authorization": f"Bearer {token}"}


def _graph(ee, value) -> bytes:
    return json.dumps({"expression": ee.serializer.encode(value, for_cloud_api=True)}).encode()


def test_serve_prints_a_token_and_leaves_it_for_the_user_only(served):
    url, token, runtime, said, _ = served
    assert token and len(token) >= 32, said
    path = runtime / f"server-{urlsplit(url).port}.json"
    info = json.loads(path.read_text())
    assert info["token"] == token and info["url"] == url
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_request_with_the_token_is_answered(served, ee_local):
    url, token, _, _, _ = served
    status, body = _request(url, body=_graph(ee_local, ee_local.Number(2).add(3)), headers=_good_headers(url, token))
    assert (status, body) == (200, {"result": 5})


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"Authorization": None}, 401, "Missing token"),
        ({"Authorization": "Bearer not-the-token"}, 401, "Wrong token"),
        ({"Host": "evil.example.com"}, 403, "Host 'evil.example.com' refused"),
        ({"Host": "rebound.attacker.net:{port}"}, 403, "refused"),  # DNS rebinding: the page's own name
        ({"Host": "127.0.0.1:1"}, 403, "refused"),  # loopback, another port
        ({"Origin": "https://evil.example.com"}, 403, "Cross-origin request refused"),
        ({"Origin": "null"}, 403, "Cross-origin request refused"),
        ({"Content-Type": "text/plain"}, 415, "JSON only"),
        ({"Content-Type": None}, 415, "JSON only"),
    ],
)
def test_requests_a_web_page_could_send_are_refused(served, ee_local, change, status, words):
    """A cross-origin page's POST (text/plain, its Origin), a rebound Host, a missing or wrong token."""
    url, token, _, _, _ = served
    headers = _good_headers(url, token)
    for name, value in change.items():
        headers.pop(name, None)
        if value is not None:
            headers[name] = value.format(port=urlsplit(url).port)
    got, body = _request(url, body=_graph(ee_local, ee_local.Number(1)), headers=headers)
    assert got == status, body
    assert words in body["error"]["message"]


def test_the_engines_own_origin_and_localhost_are_answered(served, ee_local):
    url, token, _, _, _ = served
    port = urlsplit(url).port
    for host, origin in ((f"localhost:{port}", f"http://localhost:{port}"), (f"127.0.0.1:{port}", None)):
        headers = {**_good_headers(url, token), "Host": host}
        if origin:
            headers["Origin"] = origin
        assert _request(url, body=_graph(ee_local, ee_local.Number(7)), headers=headers) == (200, {"result": 7})


def test_the_real_ee_client_finds_the_token_and_works(served, monkeypatch):
    """connect(url=...) reads the token from the server's runtime file; without it, a clear error."""
    import ee

    url, _, runtime, _, _ = served
    monkeypatch.setenv("GEE_MINING_RUNTIME_DIR", str(runtime))
    conn = gee_mining.connect("local", project=PROJECT, url=url)
    assert conn.transport == "http"
    assert ee.String("abc").cat("def").getInfo() == "abcdef"
    assert ee.Algorithms.ObjectType(ee.List([1])).getInfo() == "List"
    monkeypatch.setenv("GEE_MINING_RUNTIME_DIR", str(runtime / "elsewhere"))
    with pytest.raises(gee_mining.ConnectError, match="no token for the local engine"):
        gee_mining.connect("local", project=PROJECT, url=url)


def _timed(url, token, body, out, key):
    start = time.monotonic()
    out[key] = (*_request(url, body=body, headers=_good_headers(url, token), timeout=60), time.monotonic() - start)


def test_hostile_requests_are_answered_within_the_timeout_while_another_is_served(served, ee_local):
    """The backtracking regex, the 10^9 list and a long computation, sent together; meanwhile a small
    request is answered at once. Each hostile one is answered before the request timeout (plus slack)."""
    ee = ee_local
    url, token, _, _, _ = served
    hostile = {
        "regex": _graph(ee, ee.String("a" * 40 + "!").match("^(a+)+$")),
        "list": _graph(ee, ee.List.sequence(0, 1e9)),
        "bands": _graph(ee, ee.Image.constant(1).rename("a" * 40 + "!").select("(a+)+$").bandNames()),
        "long": _graph(ee, ee.List.sequence(0, 2_000_000).iterate(lambda x, acc: ee.Number(acc).add(x), 0)),
    }
    out: dict = {}
    threads = [threading.Thread(target=_timed, args=(url, token, body, out, k)) for k, body in hostile.items()]
    for t in threads:
        t.start()
    time.sleep(0.3)  # the three are running
    _timed(url, token, _graph(ee, ee.Number(20).add(22)), out, "small")
    assert out["small"][:2] == (200, {"result": 42})
    assert out["small"][2] < TIMEOUT_S, out  # not held behind the hostile ones
    for t in threads:
        t.join(timeout=60)
    assert out["regex"][:2] == (200, {"result": []})  # RE2: no match, found in linear time
    assert out["bands"][0] == 400 and "did not match any bands" in out["bands"][1]["error"]["message"]
    assert out["list"][0] == 400 and out["list"][1]["error"]["message"].startswith("User memory limit exceeded.")
    assert out["long"][0] == 400 and out["long"][1]["error"]["message"].startswith("Computation timed out.")
    for key in hostile:
        assert out[key][2] < TIMEOUT_S + 3.0, out


def test_the_work_of_a_request_whose_client_went_away_stops(served, ee_local):
    """A long computation whose client closes its socket stops at once, well before its time is up:
    the server process, busy while the client waits, is idle after it has gone (its CPU time, from
    /proc, stops growing) within the request timeout."""
    ee = ee_local
    url, token, _, _, pid = served
    body = _graph(ee, ee.List.sequence(0, 2_000_000).iterate(lambda x, acc: ee.Number(acc).add(x), 0))
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    head = "".join(f"{k}: {v}\r\n" for k, v in _good_headers(url, token).items())
    start = time.monotonic()
    sock.sendall(f"POST {COMPUTE} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    time.sleep(0.6)  # past the list's construction (one call that no check interrupts): into the iteration
    before = _cpu_s(pid)
    time.sleep(0.4)
    busy = _cpu_s(pid) - before
    sock.close()  # the client goes away
    # noticed within 0.1 s; the evaluation stops at its next algorithm call (on a loaded machine the list's
    # construction, which no check interrupts, may still be running): the first idle 0.8 s window counts
    idle, windows = None, []
    while idle is None and time.monotonic() - start < TIMEOUT_S - 0.8:
        idle_from = _cpu_s(pid)
        time.sleep(0.8)
        windows.append(_cpu_s(pid) - idle_from)
        idle = windows[-1] if windows[-1] <= 0.03 else None
    assert busy >= 0.05, busy  # it was computing (on a shared machine: not always a full core)
    assert idle is not None, (busy, windows)  # and stopped when its client went away, before the time budget


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_memory_bound_just_under_and_just_over(engine_catalog):
    """limits.elements_per_value (here 1,000): a list of 1,000 is made, one of 1,001 is refused before it is
    made (List.sequence, List.repeat) or after (a list grown by List.cat), with Earth Engine's words."""
    import ee

    gee_mining.connect("local", project=PROJECT, engine_settings={"limits": {"elements_per_value": 1000}})
    assert ee.List.sequence(1, 1000).size().getInfo() == 1000
    assert ee.List.repeat(0, 1000).size().getInfo() == 1000
    for over in (ee.List.sequence(1, 1001), ee.List.sequence(0, None, 1, 1001), ee.List.repeat(0, 1001)):
        with pytest.raises(ee.EEException, match=r"^User memory limit exceeded\. .*1,001 elements"):
            over.size().getInfo()
    with pytest.raises(ee.EEException, match=r"^User memory limit exceeded\. .*List\.cat .*1,200 elements"):
        ee.List.sequence(1, 600).cat(ee.List.sequence(1, 600)).size().getInfo()
