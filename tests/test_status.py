"""upstream_cause_status: the live view's JSON held to the access log,
attempt by attempt, across two workers; nginx's own peer states; stream's
groups beside HTTP's; the HTML page in a real browser (Debian's headless
chromium): its order, its policy, its dark theme."""
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from conftest import NO_KEEPALIVE, dead_port, free_port

CHROMIUM = shutil.which("chromium")


def doc(nginx, query="?format=json", headers=None):
    r = nginx.get("/status" + query, headers=headers)
    assert r.status == 200, r.body
    assert r.header("Content-Type") == "application/json"
    assert r.header("Cache-Control") == "no-store"
    return json.loads(r.body)


def ms(t):
    """Milliseconds of the document's RFC 3339 time."""
    return int(datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=None).timestamp() * 1000) \
        if t else None


def attempts(entries):
    """Every attempt of the access log's entries: (entry, index, peer,
    cause or None for a success), `$upstream_addr` and
    `$upstream_cause_list` aligned."""
    out = []
    for e in entries:
        addrs = re.split(r", | : ", e["upstream_addr"])
        causes = re.split(r", | : ", e["upstream_cause_list"])
        assert len(addrs) == len(causes), e
        for i, (a, c) in enumerate(zip(addrs, causes)):
            out.append((e, i, a, None if c == "-" else c))
    return out


def wait_logged(nginx, uris):
    """Wait (bounded) for every request's access-log line: a request is
    recorded in its worker's log phase, after its response, and with two
    workers the last request's line says nothing of the others'."""
    for u in uris:
        nginx.access_for(u)


def peers_of(d, kind="http"):
    return {(g["name"], p["name"]): p for g in d["upstreams"] if g["kind"] == kind for p in g["peers"]}


def conf(a, b, c, go, flaky):
    return f"""
    upstream_cause_zone uc 1m;
    upstream both_refuse {{ zone both_refuse 64k; server 127.0.0.1:{a} max_fails=0; server 127.0.0.1:{b} max_fails=0; }}
    upstream go {{ server 127.0.0.1:{go}; {NO_KEEPALIVE} }}
    upstream flaky {{ zone flaky 64k; server 127.0.0.1:{flaky} max_fails=2 fail_timeout=60s; server 127.0.0.1:{go}; {NO_KEEPALIVE} }}
    server {{ listen 127.0.0.1:@PORT@;
        location /retry/ {{ proxy_pass http://both_refuse/; }}
        location /gone/ {{ proxy_pass http://127.0.0.1:{c}/; }}
        location /go/ {{ proxy_pass http://go/; }}
        location /flaky/ {{ proxy_pass http://flaky/; }}
        location = /status {{ upstream_cause_status; }}
    }}"""


@pytest.fixture
def live(nginx_factory, go_service):
    a, b, c, flaky = dead_port(), dead_port(), dead_port(), dead_port()
    nginx = nginx_factory(conf(a, b, c, go_service.port, flaky), workers=2)
    return nginx, {"a": f"127.0.0.1:{a}", "b": f"127.0.0.1:{b}", "c": f"127.0.0.1:{c}",
                   "go": f"127.0.0.1:{go_service.port}", "flaky": f"127.0.0.1:{flaky}"}


def test_the_document_is_the_access_log_attempt_by_attempt(live):
    nginx, p = live
    n = 10
    started = time.monotonic()
    uris = [f"/retry/{i}" for i in range(n)] + [f"/gone/{i}" for i in range(n)] + \
           [f"/go/ping?{i}" for i in range(n)] + [f"/go/bad-gateway?{i}" for i in range(n)] + \
           [f"/go/ok?{i}" for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda u: nginx.get(u).status, uris))
    wait_logged(nginx, uris)
    # the flaky group: its dead server fails twice (max_fails=2), then
    # nginx leaves it out; each request is retried on the Go service
    flaky_from = time.time()
    for i in range(6):
        assert nginx.get(f"/flaky/ok?{i}").status == 200
    # the Go service answers last: its row of failures ends
    assert nginx.get("/go/ok?last").status == 200
    entries = [e for u in uris + [f"/flaky/ok?{i}" for i in range(6)] + ["/go/ok?last"] for e in nginx.access_for(u)]
    d = doc(nginx)
    took = time.monotonic() - started
    flaky_to = time.time()

    assert d["version"] == 1 and d["source"] == "nginx"
    (zone,) = d["zones"]
    assert (zone["name"], zone["kind"], zone["size"], zone["peers_dropped"]) == ("uc", "http", 1048576, 0)
    assert ms(zone["started"]) <= ms(d["time"]) and d["started"] == zone["started"]

    # per peer and cause: the document's totals are the access log's
    failed = [(e, i, a, c) for e, i, a, c in attempts(entries) if c]
    want = Counter((a, c) for _, _, a, c in failed)
    got = Counter()
    peers = peers_of(d)
    for (group, name), peer in peers.items():
        for cause, counts in peer["causes"].items():
            got[(name, cause)] += counts["total"]
            assert counts["1m"] <= counts["5m"] <= counts["15m"] == counts["total"], (name, cause, counts)
            if took < 55:
                # (the 1-minute window holds a failure for at least 60 s)
                assert counts["1m"] == counts["total"], (name, cause, counts)
        assert peer["failures"]["total"] == sum(c["total"] for c in peer["causes"].values())
    assert got == want, (got, want)
    assert want[(p["a"], "connect_refused")] == n and want[(p["go"], "upstream_prematurely_closed")] == n

    # the configuration's groups, in its order, each peer's state from
    # nginx's balancer: its zone's, or the answering worker's
    names = [(g["name"], g["view"], [x["name"] for x in g["peers"]]) for g in d["upstreams"]]
    assert names[:3] == [("both_refuse", "zone", [p["a"], p["b"]]), ("go", "worker", [p["go"]]),
                         ("flaky", "zone", [p["flaky"], p["go"]])], names
    assert (p["c"], "worker", [p["c"]]) in names

    # a peer nginx left out after max_fails, until fail_timeout is over
    dead = peers[("flaky", p["flaky"])]
    assert (dead["state"], dead["fails"], dead["max_fails"], dead["fail_timeout"]) == ("unavailable", 2, 2, 60), dead
    # (until the second nginx counted the last failure in, plus
    # fail_timeout, plus one; the failure's own time is its request's log
    # phase, which may come in a later second than the attempt)
    checked = ms(dead["unavailable_until"]) - 61_000
    assert checked % 1000 == 0 and int(flaky_from) * 1000 <= checked <= ms(dead["last_failure"]["time"]) \
        <= flaky_to * 1000, (flaky_from, flaky_to, dead)
    assert (dead["failing"], dead["failures_in_a_row"], dead["failures"]["total"]) == (True, 2, 2)
    assert dead["failing_since"] == dead["first_failure"]["time"]
    assert dead["last_failure"]["detail"].startswith("connect() failed (111: Connection refused)")
    # max_fails=0: never left out, failing since its first failure
    a = peers[("both_refuse", p["a"])]
    assert (a["state"], a["failing"], a["failures_in_a_row"], a["last_success"]) == ("up", True, n, None)
    # the Go service's last attempt succeeded
    go = peers[("go", p["go"])]
    assert (go["failing"], go["failures_in_a_row"], go["failing_since"]) == (False, 0, None), go
    assert ms(go["last_success"]) >= ms(go["last_failure"]["time"]) // 1000 * 1000, go

    # the ring: every failed attempt (fewer than it holds), newest first
    recent = d["recent"]
    assert zone["recent_capacity"] == 198 and len(recent) == len(failed)
    times = [ms(r["time"]) for r in recent]
    assert times == sorted(times, reverse=True)
    ring = Counter((r["request"], r["peer"], r["cause"], r["attempt"], r["status"]) for r in recent)
    logged = Counter((f"{e['method']} {e['uri']} HTTP/1.1", a, c, i + 1, int(e["status"])) for e, i, a, c in failed)
    assert ring == logged
    # a request's later attempt is newer than its earlier one
    order = {(r["request"], r["attempt"]): k for k, r in enumerate(recent)}
    for (req, attempt), k in order.items():
        if attempt > 1:
            assert k < order[(req, attempt - 1)], req


def test_the_same_document_from_either_worker_and_a_reload_keeps_it(live):
    nginx, p = live
    for i in range(4):
        nginx.get(f"/gone/{i}")
    wait_logged(nginx, [f"/gone/{i}" for i in range(4)])
    docs = [doc(nginx) for _ in range(6)]
    for d in docs:
        assert peers_of(d)[(p["c"], p["c"])]["failures"]["total"] == 4
    started = docs[0]["zones"][0]["started"]
    os.kill(nginx.proc.pid, 1)  # SIGHUP: reload, same zone name and size
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        d = doc(nginx)
        if d["zones"][0]["started"] == started and len(d["recent"]) == 4:
            break
        time.sleep(0.1)
    assert d["zones"][0]["started"] == started
    assert peers_of(d)[(p["c"], p["c"])]["failures"]["total"] == 4
    assert len(d["recent"]) == 4


def test_json_or_page_by_format_or_accept_get_and_head_only(live):
    nginx, _ = live
    for query, headers, kind in [("?format=json", {"Accept": "text/html"}, "application/json"),
                                 ("?format=html", {"Accept": "application/json"}, "text/html; charset=utf-8"),
                                 ("", {"Accept": "application/json"}, "application/json"),
                                 ("", {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, "text/html; charset=utf-8"),
                                 ("", {"Accept": "*/*"}, "application/json"),
                                 ("", {}, "application/json")]:
        r = nginx.get("/status" + query, headers=headers)
        assert (r.status, r.header("Content-Type"), r.header("Vary")) == (200, kind, "Accept"), (query, headers)
        if kind.startswith("text/html"):
            assert r.header("Content-Security-Policy").startswith("default-src 'none'; style-src 'sha256-")
            assert r.header("X-Content-Type-Options") == "nosniff"
            assert r.body.startswith(b"<!DOCTYPE html>")
        else:
            assert json.loads(r.body)["version"] == 1
    head = nginx.get("/status", method="HEAD")
    assert (head.status, head.body) == (200, b"")
    assert int(head.header("Content-Length")) > 0
    assert nginx.get("/status", method="POST", body=b"x").status == 405


def test_stream_groups_beside_http_ones(nginx_factory):
    dead = dead_port()
    port = free_port()
    n = nginx_factory("""
        upstream_cause_zone uc 64k;
        server { listen 127.0.0.1:@PORT@; location = /status { upstream_cause_status; } }""",
                      stream_body=f"""
        upstream_cause_zone ucs 64k;
        upstream db {{ zone db 64k; server 127.0.0.1:{dead}; server 127.0.0.1:{dead_port()} backup; }}
        server {{ listen 127.0.0.1:{port}; proxy_pass db; }}""")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"hello")
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    (e,) = n.stream_for(port)
    d = doc(n)
    assert sorted((z["name"], z["kind"]) for z in d["zones"]) == [("uc", "http"), ("ucs", "stream")]
    (g,) = [g for g in d["upstreams"] if g["kind"] == "stream"]
    assert (g["name"], g["view"], [(x["name"], x["backup"]) for x in g["peers"]]) == \
        ("db", "zone", [(f"127.0.0.1:{dead}", False), (e["upstream_addr"].split(", ")[1], True)])
    addrs = e["upstream_addr"].split(", ")
    causes = e["upstream_cause_list"].split(", ")
    for peer, cause in zip(addrs, causes):
        x = peers_of(d, "stream")[("db", peer)]
        assert x["causes"][cause]["total"] == 1 and x["failing"], x
    assert [(r["kind"], r["upstream"], r["peer"], r["cause"], r["attempt"], r["status"]) for r in d["recent"]] == \
        [("stream", "db", a, c, i + 1, 502) for i, (a, c) in reversed(list(enumerate(zip(addrs, causes))))]
    assert d["recent"][0]["request"] == f"TCP from 127.0.0.1 to port {port}"


# --- the page, in a real browser ----------------------------------------------

def chromium(*args, dark=False, tmp=None):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp}", "--enable-logging=stderr", "--v=0"]
    if dark:
        cmd.append("--force-dark-mode")
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def pixel(png, x, y):
    """The RGB of one pixel of a PNG (8-bit RGB or RGBA, as chromium writes)."""
    data = png[8:]
    chunks, idat = {}, b""
    while data:
        length, kind = struct.unpack(">I4s", data[:8])
        body = data[8:8 + length]
        if kind == b"IDAT":
            idat += body
        chunks.setdefault(kind, body)
        data = data[12 + length:]
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    for row in range(y + 1):
        f = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xff
            elif f == 2:
                line[i] = (line[i] + b) & 0xff
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xff
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xff
        prev = line
    return tuple(prev[x * bpp:x * bpp + 3])


def some_failures(nginx):
    """12 failed attempts on four peers: three of them failing now, the Go
    service's row ended by a success."""
    for i in range(3):
        nginx.get(f"/gone/{i}")
        nginx.get(f"/go/ok?{i}")
        nginx.get(f"/go/ping?{i}")
    # (the failures are in the zone once their access-log lines are
    # written, and the success below must come after them)
    wait_logged(nginx, [u for i in range(3) for u in (f"/gone/{i}", f"/go/ok?{i}", f"/go/ping?{i}")])
    nginx.get("/go/ok?last")
    for i in range(3):
        nginx.get(f"/retry/{i}")
    wait_logged(nginx, ["/go/ok?last"] + [f"/retry/{i}" for i in range(3)])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/lib.sh's TEST_PACKAGES)")
def test_the_page_in_a_real_browser(live, tmp_path):
    nginx, p = live
    some_failures(nginx)
    url = f"http://127.0.0.1:{nginx.port}/status"

    # what a browser asks for: the page, under its own policy, which
    # allows its style by the style's hash
    r = nginx.get("/status", headers={"Accept": "text/html"})
    body = r.body.decode()
    style = re.search(r"<style>(.*?)</style>", body, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in r.header("Content-Security-Policy")
    for external in ("<script", "<link", " src=", "url(", "@import"):
        assert external not in body

    run = chromium("--dump-dom", url, tmp=tmp_path / "profile")
    assert "Content Security Policy" not in run.stderr, run.stderr[-2000:]
    dom = run.stdout
    rows = re.findall(r'<tr class="peer (\w+)" data-kind="(\w+)" data-upstream="([^"]*)" data-peer="([^"]*)" '
                      r'data-state="(\w+)">', dom)
    standing = [r[0] for r in rows]
    # failing now first, then the rest; every configured peer is listed
    assert standing == sorted(standing, key=["failing", "recovered", "quiet", "ok"].index), rows
    failing = {(r[2], r[3]) for r in rows if r[0] == "failing"}
    assert failing == {(p["c"], p["c"]), ("both_refuse", p["a"]), ("both_refuse", p["b"])}, rows
    assert ("recovered", "go", p["go"]) in [(r[0], r[2], r[3]) for r in rows]
    assert '<p class="verdict bad" id="verdict">3 peers failing now</p>' in dom
    assert '<meta http-equiv="refresh" content="5">' in dom
    # the recent failures, newest first: the last request's attempts
    recent = re.findall(r'<tr class="failure" data-cause="(\w+)">', dom)
    assert recent[:2] == ["connect_refused", "connect_refused"] and len(recent) == 12

    # the style applies (the policy let it): a dark page in a dark theme, a
    # light one otherwise, on a phone's width too
    light = tmp_path / "light.png"
    dark = tmp_path / "dark.png"
    chromium(f"--screenshot={light}", "--window-size=1280,900", url, tmp=tmp_path / "p1")
    chromium(f"--screenshot={dark}", "--window-size=390,844", url, dark=True, tmp=tmp_path / "p2")
    assert sum(pixel(light.read_bytes(), 2, 2)) > 700, pixel(light.read_bytes(), 2, 2)
    assert sum(pixel(dark.read_bytes(), 2, 2)) < 120, pixel(dark.read_bytes(), 2, 2)
    # (`make screenshot` keeps the light one for docs/status.md)
    if os.environ.get("STATUS_SCREENSHOT"):
        shutil.copy(light, os.environ["STATUS_SCREENSHOT"])


# --- the same document from logs: upstream-cause status ---------------------------

def test_the_offline_classifier_writes_the_same_document_from_the_error_log(live, tmp_path):
    """`upstream-cause status` on the error log of the nginx that served
    the document: the same failures per peer and cause, the same recent
    failures; what logs cannot tell (nginx's peer states, what a success
    ended) is null; its page opens from a file in the browser."""
    from test_cli import CLI
    nginx, _ = live
    some_failures(nginx)
    module = doc(nginx)
    out = subprocess.run([CLI, "status", str(nginx.error_log)], capture_output=True, timeout=60, check=True).stdout
    logs = json.loads(out)
    assert (logs["version"], logs["source"], logs["zones"]) == (1, "logs", [])

    def totals(d):
        return Counter({(x["name"], cause): c["total"] for g in d["upstreams"] for x in g["peers"]
                        for cause, c in x["causes"].items()})
    assert totals(logs) == totals(module) and sum(totals(logs).values()) == 12
    for g in logs["upstreams"]:
        assert (g["configured"], g["view"]) == (False, "unknown")
        for x in g["peers"]:
            assert (x["state"], x["failing"], x["failures_in_a_row"], x["last_success"]) == \
                ("unknown", None, None, None), x
            assert x["failures"]["1m"] == x["failures"]["total"], x
    assert sorted((r["request"], r["peer"], r["cause"], r["attempt"]) for r in logs["recent"]) == \
        sorted((r["request"], r["peer"], r["cause"], r["attempt"]) for r in module["recent"])

    page = tmp_path / "status.html"
    subprocess.run([CLI, "status", "--format", "html", "-o", str(page), str(nginx.error_log)], check=True, timeout=60)
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "http-equiv=\"refresh\"" not in text
    if CHROMIUM:
        dom = chromium("--dump-dom", page.as_uri(), tmp=tmp_path / "profile").stdout
        assert len(re.findall(r'<tr class="peer ', dom)) == len({name for name, _ in totals(logs)})
        assert len(re.findall(r'<tr class="failure"', dom)) == 12
