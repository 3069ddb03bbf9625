#!/usr/bin/env python3
"""The dockerized scenarios: real failures across real containers, seen
through nginx with the modules. HTTP to nginx, and TCP to its stream
proxy; the logs of nginx and of the Go services come from read-only
volumes. Prints one line per scenario
and a closing `N passed, N failed`; exits non-zero on any failure.

Every request a scenario sends is counted by the cause its response carried
(`$upstream_cause`), per nginx. The last check runs the offline classifier
(`upstream-cause`, from the trixie package) on each nginx's error log and
holds its per-cause request counts to those.

Every wait is bounded; no step sleeps where a log line or a status can be
polled instead.
"""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

GO_LOGS = Path(os.environ.get("GO_LOGS", "/logs/go"))
# the offline classifier (the upstream-cause package)
CLI = os.environ.get("UPSTREAM_CAUSE_CLI", "upstream-cause")


class Nginx:
    """One nginx of the harness: where to send requests, where its logs are,
    and what the scenarios' requests to it got."""

    def __init__(self, name, url, logs):
        self.name = name
        self.url = urlparse(url)
        self.access = Path(logs) / "access.json"
        self.error = Path(logs) / "error.log"
        # failed requests (the response's cause neither empty nor
        # via_upstream), by cause, and by cause and scenario
        self.failed = Counter()
        self.failed_in = Counter()
        # requests that succeeded (or passed an upstream's own answer on)
        # after a failed attempt: nginx logs the failure and not what came
        # after, so from the log they are requests that failed with the
        # last failed attempt's cause; by that cause, and cause and scenario
        self.recovered = Counter()
        self.recovered_in = Counter()

    def record(self, access):
        """Counts one response by its access-log entry."""
        cause = access["upstream_cause"]
        if cause and cause != "via_upstream":
            self.failed[cause] += 1
            self.failed_in[cause, SCENARIO] += 1
            return
        # nginx writes a line for every failed attempt but an upstream's own 5xx
        attempts = [c.strip() for c in re.split(r"[,:]", access["upstream_cause_list"])]
        failures = [c for c in attempts if c not in ("", "-", "via_upstream")]
        if failures:
            self.recovered[failures[-1]] += 1
            self.recovered_in[failures[-1], SCENARIO] += 1


# the scenario running (main() sets it), for the counts
SCENARIO = "-"
# trixie's nginx (1.26) in front of the Go services and the fault upstream
NGINX = Nginx("trixie", os.environ.get("NGINX_URL", "http://nginx:8080"), os.environ.get("NGINX_LOGS", "/logs/nginx"))
# sid's nginx (1.30) in front of the HTTP/2 fault upstream
NGINX_SID = Nginx("sid", os.environ.get("NGINX_SID_URL", "http://nginx-sid:8080"),
                  os.environ.get("NGINX_SID_LOGS", "/logs/nginx-sid"))

HINTS = {
    "connect_refused": "nothing listens on the upstream port: the backend process is down or restarting",
    "upstream_prematurely_closed": "the upstream closed the connection without answering: "
                                   "its request handler crashed or panicked (see its log)",
    "connect_unreachable": "no route to the upstream host: the host or its network is gone, or the address is stale",
}


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def lines(path):
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def wait_for(what, probe, timeout=30.0, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Result:
    def __init__(self, uri, status, header, body, seconds, access, enriched):
        self.uri, self.status, self.header, self.body = uri, status, header, body
        self.seconds, self.access, self.enriched = seconds, access, enriched

    @property
    def cause(self):
        return self.access["upstream_cause"]

    def summary(self):
        a = self.access
        return (f"{self.uri} -> {self.status} X-Upstream-Cause={self.header or '-'} "
                f'upstream_cause="{a["upstream_cause"]}" list="{a["upstream_cause_list"]}" '
                f'detail="{a["upstream_cause_detail"]}" ({self.seconds:.1f}s)')


def get(uri, timeout=40, nginx=NGINX):
    """GET through nginx; waits for the request's access-log entry and its
    enriched error-log line (if the request failed)."""
    seen_access, seen_error = len(lines(nginx.access)), len(lines(nginx.error))
    start = time.monotonic()
    conn = http.client.HTTPConnection(nginx.url.hostname, nginx.url.port or 80, timeout=timeout)
    try:
        conn.request("GET", uri)
        r = conn.getresponse()
        headers = [v for k, v in r.getheaders() if k.lower() == "x-upstream-cause"]
        try:
            body = r.read()
        except http.client.IncompleteRead as e:
            body = e.partial + b" <truncated>"
        status = r.status
    finally:
        conn.close()
    seconds = time.monotonic() - start
    check(len(headers) <= 1, f"{uri}: {len(headers)} X-Upstream-Cause headers: {headers}")
    entries = wait_for(f"the access-log entry of {uri}", lambda: [
        e for e in map(json.loads, lines(nginx.access)[seen_access:]) if e["request_uri"] == uri])
    access = entries[0]
    nginx.record(access)
    enriched = [l for l in lines(nginx.error)[seen_error:]
                if "upstream_cause=" in l and f'request: "GET {uri} HTTP/1.1"' in l]
    return Result(uri, status, headers[0] if headers else None, body, seconds, access, enriched)


def expect_failure(r, status, cause, detail=None, detail_has=None):
    check(r.status == status, f"{r.uri}: status {r.status}, expected {status}")
    check(r.header == cause, f"{r.uri}: header {r.header!r}, expected {cause!r}")
    a = r.access
    check(a["upstream_cause"] == cause, f"{r.uri}: $upstream_cause {a['upstream_cause']!r}, expected {cause!r}")
    if detail is not None:
        check(a["upstream_cause_detail"] == detail, f"{r.uri}: detail {a['upstream_cause_detail']!r}")
    if detail_has is not None:
        check(detail_has in a["upstream_cause_detail"], f"{r.uri}: detail {a['upstream_cause_detail']!r}"
                                                        f" lacks {detail_has!r}")
    check(len(r.enriched) == 1, f"{r.uri}: {len(r.enriched)} enriched lines")
    line = r.enriched[0]
    m = re.search(r'upstream_cause=(\S+) status=(\d+) attempts=(\d+) peer=(\S+) causes="([^"]*)" '
                  r'detail="((?:[^"\\]|\\.)*)" hint="([^"]+)", client: ', line)
    check(m, f"{r.uri}: enriched line not in the documented form: {line}")
    check(m.group(1) == cause and m.group(2) == str(status), f"{r.uri}: {line}")
    check(m.group(4) == a["upstream_addr"].split(", ")[-1], f"{r.uri}: peer {m.group(4)} vs {a['upstream_addr']}")
    if cause in HINTS:
        check(m.group(7) == HINTS[cause], f"{r.uri}: hint {m.group(7)!r}")


def expect_success(r):
    check(r.status == 200, f"{r.uri}: status {r.status}")
    check(r.header is None, f"{r.uri}: header {r.header!r} on a success")
    check(r.access["upstream_cause"] == "", f"{r.uri}: $upstream_cause {r.cause!r}")
    check(not r.enriched, f"{r.uri}: enriched line on a success: {r.enriched}")


# --- scenarios ---------------------------------------------------------------

def s1_ok():
    r = get("/go/ok")
    expect_success(r)
    check(r.body == b"ok\n", f"body {r.body!r}")
    check(r.access["upstream_cause_list"] == "-", r.access)
    return [r.summary()]


def s2_request_level_panic():
    r = get("/go/ping")
    expect_failure(r, 502, "upstream_prematurely_closed",
                   detail="upstream prematurely closed connection while reading response header from upstream")
    log = wait_for("http: panic serving in the go-service log",
                   lambda: [l for l in lines(GO_LOGS / "go-service.log") if "http: panic serving" in l])
    return [r.summary(), "go-service: " + log[-1][:140], "enriched: " + r.enriched[0].split("] ", 1)[1][:400]]


def s3_service_level_panic_supervised():
    exits_before = sum("supervise: go-service exited" in l for l in lines(GO_LOGS / "go-service.log"))
    crash = get("/go/crash")
    check(crash.status == 502, f"/go/crash: {crash.status}")
    wait_for("the supervisor to see the exit", lambda: sum(
        "supervise: go-service exited" in l for l in lines(GO_LOGS / "go-service.log")) > exits_before)
    down = get("/go/ok")
    expect_failure(down, 502, "connect_refused",
                   detail="connect() failed (111: Connection refused) while connecting to upstream")
    start = time.monotonic()
    tries = []

    def recovered():
        tries.append(get("/go/ok"))
        return tries[-1].status == 200

    wait_for("the restarted service to answer", recovered, timeout=30, every=0.5)
    back = tries[-1]
    expect_success(back)
    return [crash.summary(), "while down: " + down.summary(),
            f"after restart: {back.summary()}, {time.monotonic() - start:.1f}s and {len(tries)} tries after the 502",
            "enriched: " + down.enriched[0].split("] ", 1)[1][:400]]


def s4_service_level_panic_host_gone():
    before = get("/gone/ok")
    expect_success(before)
    crash = get("/gone/crash")
    check(crash.status == 502, f"/gone/crash: {crash.status}")
    wait_for("go-service-gone's network to go down",
             lambda: any("gone: network down" in l for l in lines(GO_LOGS / "go-service-gone.log")))
    # While nginx's kernel still holds the vanished host's neighbour entry
    # as reachable, SYNs go nowhere: with a 2 s connect timeout (under the
    # 3 s an ARP resolution takes to fail) it is always connect_timeout.
    first = get("/gone/ok")
    expect_failure(first, 504, "connect_timeout",
                   detail="upstream timed out (110: Connection timed out) while connecting to upstream")
    # With a longer timeout, once the neighbour entry has failed the kernel
    # answers connect() with EHOSTUNREACH: connect_unreachable.
    start = time.monotonic()
    polls = []

    def unreachable():
        r = get("/gone-wait/ok")
        polls.append(r)
        if r.cause == "connect_timeout":
            expect_failure(r, 504, "connect_timeout")
            return False
        return True

    wait_for("connect_unreachable from the vanished host", unreachable, timeout=150, every=0)
    last = polls[-1]
    expect_failure(last, 502, "connect_unreachable",
                   detail="connect() failed (113: No route to host) while connecting to upstream")
    again = get("/gone-wait/ok")
    expect_failure(again, 502, "connect_unreachable", detail_has="(113: No route to host)")
    waited = f"{time.monotonic() - start:.0f}s after the first, {len(polls) - 1} connect_timeout before it"
    return [crash.summary(), "host gone, 2s connect timeout: " + first.summary(),
            f"host gone, 15s connect timeout: {last.summary()}, {waited}",
            "again: " + again.summary(),
            "enriched: " + last.enriched[0].split("] ", 1)[1][:400]]


def s5_retry_to_a_healthy_peer():
    r = get("/retry/ok")
    expect_success(r)
    a = r.access
    check(a["upstream_cause_list"] == "connect_unreachable, -", f"list {a['upstream_cause_list']!r}")
    check(a["upstream_status"] == "502, 200", f"upstream_status {a['upstream_status']!r}")
    check(len(a["upstream_addr"].split(", ")) == 2, a["upstream_addr"])
    return [r.summary() + f' upstream_addr="{a["upstream_addr"]}"']


FAULTS = [
    ("/faults/close", 502, "upstream_prematurely_closed",
     "upstream prematurely closed connection while reading response header from upstream"),
    ("/faults/half", 502, "upstream_prematurely_closed",
     "upstream prematurely closed connection while reading response header from upstream"),
    ("/faults/reset", 502, "upstream_reset",
     "recv() failed (104: Connection reset by peer) while reading response header from upstream"),
    ("/faults/silent", 504, "read_timeout",
     "upstream timed out (110: Connection timed out) while reading response header from upstream"),
    ("/faults/invalid", 502, "invalid_header",
     'upstream sent invalid header: "X-Bad\\x01..." while reading response header from upstream'),
    ("/faults/big", 502, "header_too_big",
     "upstream sent too big header while reading response header from upstream"),
]


def s6_faults():
    out = []
    for uri, status, cause, detail in FAULTS:
        r = get(uri)
        expect_failure(r, status, cause, detail=detail)
        out.append(r.summary())
    for uri in ("/faults/truncate", "/faults/truncate-chunked"):
        r = get(uri)
        check(r.status == 200 and r.header is None and r.body.endswith(b"<truncated>"), r.summary())
        check(r.cause == "response_truncated", r.summary())
        check(len(r.enriched) == 1 and "upstream_cause=response_truncated status=200 " in r.enriched[0], r.enriched)
        out.append(r.summary())
    r = get("/faults/own502")
    check(r.status == 502 and r.header == "via_upstream", f"{r.uri}: {r.status} {r.header!r}")
    check(r.cause == "via_upstream" and not r.enriched, r.summary())
    check(r.body == b"the backend's own 502\n", f"{r.uri}: body {r.body!r}")
    out.append(r.summary() + " (forged header stripped)")
    r = get("/faults/forged-ok")
    check(r.status == 200 and r.header is None, f"{r.uri}: forged header reached the client: {r.header!r}")
    out.append(r.summary() + " (forged header stripped)")
    return out


# Through sid's nginx (1.30): HTTP/2 to the upstream, the fault upstream's
# frames. nginx's own texts, from ngx_http_proxy_v2_module.c and
# ngx_http_grpc_module.c.
H2 = " while reading response header from upstream"
H2_FAULTS = [
    ("refused", "stream_refused", "upstream rejected request with error 7" + H2),
    ("internal", "upstream_reset", "upstream rejected request with error 2" + H2),
    ("goaway", "stream_refused", "upstream sent goaway with error 0" + H2),
    ("goaway-error", "stream_refused", "upstream sent goaway with error 2" + H2),
    ("close", "upstream_prematurely_closed", "upstream prematurely closed connection" + H2),
]


def s7_http2_upstream():
    out = []
    for prefix in ("/h2", "/grpc"):
        for mode, cause, detail in H2_FAULTS:
            r = get(f"{prefix}/{mode}", nginx=NGINX_SID)
            expect_failure(r, 502, cause, detail=detail)
            out.append(r.summary())
    r = get("/h2/ok", nginx=NGINX_SID)
    expect_success(r)
    out.append(r.summary())
    return out


# Through trixie's nginx's stream proxy (the stream module's package): a
# TCP service that reads the request and closes without a byte, which
# nginx logs as a success, and one that echoes.
def tcp_session(port, payload=b"hello", timeout=30.0):
    """Sends, reads until nginx closes; waits for the session's entry in
    the stream access log. (what came back, the entry)."""
    log = NGINX.access.parent / "stream.json"
    seen = len(lines(log))
    got = b""
    with socket.create_connection((NGINX.url.hostname, port), timeout=timeout) as s:
        s.sendall(payload)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    entry = wait_for(f"the session's entry in {log}",
                     lambda: [json.loads(l) for l in lines(log)[seen:] if f'"server_port":"{port}"' in l])
    return got, entry[0]


def s9_tcp_service_crashes_on_the_request():
    out = []
    got, e = tcp_session(9000)
    summary = (f"TCP :9000 -> {got!r} status={e['status']} upstream_cause={e['upstream_cause']} "
               f"list={e['upstream_cause_list']!r} upstream_addr={e['upstream_addr']}")
    check(got == b"" and (e["status"], e["upstream_cause"], e["upstream_cause_list"]) ==
          ("200", "upstream_closed_silent", "upstream_closed_silent"), summary)
    check(e["upstream_addr"].endswith(":9004"), summary)
    err = NGINX.access.parent / "stream-error.log"
    line = wait_for("the session's enriched line",
                    lambda: [l for l in lines(err) if "upstream_cause=upstream_closed_silent status=200 " in l])
    check(", server: 0.0.0.0:9000, " in line[0] and 'hint="the upstream closed the session' in line[0], line[0])
    out += [summary, "enriched line: " + line[0].split("] ", 1)[-1]]
    got, e = tcp_session(9001)
    summary = (f"TCP :9001 -> {got!r} status={e['status']} upstream_cause={e['upstream_cause']!r} "
               f"list={e['upstream_cause_list']!r}")
    check(got == b"hello" and (e["status"], e["upstream_cause"], e["upstream_cause_list"]) == ("200", "", "-"),
          summary)
    out.append(summary)
    return out


# --- the offline classifier, on the logs of the scenarios above --------------

def cli(*args, stdin=None):
    """Runs upstream-cause; its standard output."""
    p = subprocess.run([CLI, *args], input=stdin, capture_output=True, timeout=60)
    check(p.returncode == 0, f"upstream-cause {' '.join(args)}: exit status {p.returncode}: "
                             f"{p.stderr.decode(errors='replace').strip()}")
    return p.stdout.decode(errors="replace")


def summary_requests(text):
    """The summary's table: cause -> its 4th column, requests."""
    rows, table = {}, False
    for line in text.splitlines():
        if not table:
            table = line.split()[:4] == ["cause", "failures", "share", "requests"]
            continue
        if not line.strip():
            break
        if line.startswith("("):   # (no failed upstream attempts)
            continue
        f = line.split()
        rows[f[0]] = int(f[3].replace(",", ""))
    check(table, f"no table in the summary:\n{text}")
    return rows


def table(head, rows):
    """Left-aligned first column, the others right-aligned."""
    cells = [head] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)).rstrip()
            for r in cells]


def classifier_on(nginx):
    """upstream-cause summary and requests on one nginx's error log, held to
    the scenarios' counts; then, for information, the summary of the same
    log without the module's lines."""
    out, bad = [], []
    log = str(nginx.error)
    summary = cli("summary", log)
    by_summary = summary_requests(summary)
    reqs = [json.loads(l) for l in cli("requests", log).splitlines() if l.strip()]
    by_source = {src: Counter(r["cause"] for r in reqs if r["source"] == src) for src in ("module", "nginx")}
    check(sum(by_summary.values()) == len(reqs),
          f"{nginx.name}: the summary counts {sum(by_summary.values())} requests, `requests` prints {len(reqs)}")

    scenarios = lambda counts, c: ", ".join(f"{s.split()[0]}: {n}" for (k, s), n in sorted(counts.items())
                                           if k == c) or "-"
    causes = sorted(set(nginx.failed) | set(nginx.recovered) | set(by_summary))
    out.append(f"the scenarios' own count ({nginx.name}'s nginx, by the cause each response carried):")
    out += ["  " + l for l in table(
        ["cause", "failed", "succeeded after a failure", "in the log", "by scenario"],
        [[c, nginx.failed[c], nginx.recovered[c], nginx.failed[c] + nginx.recovered[c],
          scenarios(nginx.failed_in + nginx.recovered_in, c)] for c in causes])]
    out.append(f"$ upstream-cause summary {log}")
    out += ["  " + l for l in summary.rstrip().splitlines()]
    out.append(f"per cause, upstream-cause's requests against the scenarios' ({nginx.name}):")
    rows = []
    for c in causes:
        want = nginx.failed[c] + nginx.recovered[c]
        got = by_summary.get(c, 0)
        module, text = by_source["module"][c], by_source["nginx"][c]
        ok = got == want and module == nginx.failed[c] and text == nginx.recovered[c]
        if not ok:
            bad.append(c)
        rows.append([c, want, got, f"{nginx.failed[c]}/{module}", f"{nginx.recovered[c]}/{text}",
                     "ok" if ok else "MISMATCH"])
    out += ["  " + l for l in table(
        ["cause", "scenarios", "summary", "failed/module's lines", "succeeded later/nginx's lines", ""], rows)]

    # nginx's text alone: for information (it cannot tell the status, a
    # later attempt's success, an upstream's own 5xx, a reused connection,
    # a saturated group from a dead one)
    stripped = "".join(l + "\n" for l in lines(nginx.error) if "upstream_cause" not in l)
    bare = cli("summary", "-", stdin=stripped.encode())
    out.append(f"$ grep -v upstream_cause {log} | upstream-cause summary   (for information)")
    out += ["  " + l for l in bare.rstrip().splitlines()]
    return out, bad


def s8_offline_classifier():
    out, bad = [], []
    for nginx in (NGINX, NGINX_SID):
        o, b = classifier_on(nginx)
        out += o
        bad += [f"{nginx.name}: {c}" for c in b]
    if bad:
        # the tables first, then the verdict
        for line in out:
            print(f"      {line}".rstrip(), flush=True)
        raise Failed(f"upstream-cause's counts differ from the scenarios' for {', '.join(bad)} (tables above)")
    return out


SCENARIOS = [
    ("1 ok", s1_ok),
    ("2 request-level panic", s2_request_level_panic),
    ("3 service-level panic, supervised", s3_service_level_panic_supervised),
    ("4 service-level panic, host gone", s4_service_level_panic_host_gone),
    ("5 retry to a healthy peer", s5_retry_to_a_healthy_peer),
    ("6 fault upstream", s6_faults),
    ("7 HTTP/2 upstream (sid's nginx, proxy_http_version 2 and grpc_pass)", s7_http2_upstream),
    # after 1-7: it reads what they left in the HTTP error logs
    ("8 the offline classifier (upstream-cause) on both nginx's error logs", s8_offline_classifier),
    # (its lines go to the stream block's own error log)
    ("9 a TCP service that crashes on the request (nginx's stream proxy)", s9_tcp_service_crashes_on_the_request),
]


def main():
    global SCENARIO
    passed = failed = 0
    for name, fn in SCENARIOS:
        SCENARIO = name
        try:
            details = fn()
        except Failed as e:
            failed += 1
            print(f"FAIL  {name}: {e}", flush=True)
            continue
        except Exception:  # a broken scenario is a failure too
            failed += 1
            print(f"FAIL  {name}: {traceback.format_exc(limit=3)}", flush=True)
            continue
        passed += 1
        print(f"PASS  {name}", flush=True)
        for d in details:
            print(f"      {d}".rstrip(), flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
