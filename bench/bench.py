#!/usr/bin/env python3
"""A/B benchmark: the same nginx binary and config, without the module
(stock) and with it loaded and everything on (header, log line, zone).

Workloads: (a) proxied 200 from a keepalive upstream, (b) 502 connect
refused, (c) 502 prematurely closed (Go handler panic), (d) a retry that
succeeds on the second peer.

- callgrind: instructions per request, (I(N2) - I(N1)) / (N2 - N1), which
  cancels start-up, warm-up and shutdown; module/stock ratio; the module's
  own share (its functions' self cost) on the failure paths; calls into
  the Rust allocator per request.
- wrk: requests/s, 1 worker, stock and module interleaved, several rounds;
  median ratio and spread.

Writes a markdown table to stdout and, with --write, between the
`<!-- bench:start -->` / `<!-- bench:end -->` markers (--marker names
others) of docs/performance.md.
Every loop is bounded; traffic stays on 127.0.0.1.
"""
import argparse
import datetime
import http.client
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".work"
# the nginx binary and the module built for it (--nginx/--module change them)
NGINX = WORK / "bin/nginx"
MODULE = WORK / "modules/ngx_http_upstream_cause_module.so"
GO = WORK / "bin/go-service"
OUT = WORK / "bench"
# nginx listens on one port for every run, so that no figure depends on
# how many digits a random port has
PORT = 0

# (name, load the module, its configuration)
VARIANTS = {
    "stock": (False, ""),
    "module": (True, "upstream_cause_header X-Upstream-Cause; upstream_cause_zone uc 1m;"),
    # the same without the enriched error-log line: what classifying and
    # counting cost apart from nginx formatting a second line
    "noline": (True, "upstream_cause_header X-Upstream-Cause; upstream_cause_zone uc 1m; upstream_cause_log off;"),
}

WORKLOADS = {
    "a": ("proxied 200, keepalive upstream", "/a/ok"),
    "b": ("502 connect refused", "/b/x"),
    "c": ("502 prematurely closed (handler panic)", "/c/ping"),
    "d": ("retry, 200 from the second peer", "/d/ok"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing on {port}")


def config(prefix, port, go, dead, variant, single):
    user = "user root;" if os.geteuid() == 0 else ""
    module, on = VARIANTS[variant]
    mod = f"load_module {MODULE};" if module else ""
    mp = "master_process off;" if single else "master_process on;"
    # Under callgrind (single): nginx's clock is not read on every event
    # loop turn, and its time strings not formatted again each second
    # (how many seconds a run takes under valgrind moved that by tens of
    # instructions per request, in no relation to the requests).
    clock = "timer_resolution 3600s;" if single else ""
    return f"""{mod}
daemon off; {mp} worker_processes 1; {user} {clock}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  {on}
  upstream ka {{ server 127.0.0.1:{go}; keepalive 16; }}
  upstream retry {{ server 127.0.0.1:{dead} max_fails=0; server 127.0.0.1:{go} backup; }}
  server {{ listen 127.0.0.1:{port};
    proxy_http_version 1.1; proxy_set_header Connection "";
    location /a/ {{ proxy_pass http://ka/; }}
    location /b/ {{ proxy_pass http://127.0.0.1:{dead}/; }}
    location /c/ {{ proxy_pass http://ka/; }}
    location /d/ {{ proxy_pass http://retry/; }}
  }}
}}
"""


def start_nginx(name, go, dead, variant, single, valgrind=None):
    prefix = OUT / name
    prefix.mkdir(parents=True, exist_ok=True)
    port = PORT
    conf = prefix / "nginx.conf"
    conf.write_text(config(prefix, port, go, dead, variant, single))
    cmd = [str(NGINX), "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    if valgrind:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={valgrind}"] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(prefix / "stderr.log", "w"))
    try:
        wait_port(port, proc=proc)
    except (TimeoutError, RuntimeError):
        proc.kill()
        raise RuntimeError(f"nginx did not start: {(prefix / 'stderr.log').read_text()[-2000:]}") from None
    return proc, port


def stop(proc):
    """Graceful stop (callgrind writes its file on exit). Under valgrind a
    signal right after traffic is sometimes not acted on: repeat it."""
    for _ in range(24):
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait(10)


def send(port, path, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(n):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        if r.will_close:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def callgrind_totals(path):
    for line in open(path):
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    raise ValueError(f"no totals in {path}")


def alloc_calls(path):
    """Calls into the Rust allocator recorded in a callgrind file."""
    names, calls, cfn = {}, 0, None
    for line in open(path):
        if line.startswith("cfn="):
            m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.strip())
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                cfn = names.get(m.group(1), "")
            else:
                cfn = line[4:].strip()
        elif line.startswith("fn="):
            m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.strip())
            if m and m.group(2):
                names[m.group(1)] = m.group(2)
        elif line.startswith("calls=") and cfn is not None:
            # __rust_alloc forwards to __rdl_alloc: count the entry points only
            if re.search(r"__rust_(alloc|alloc_zeroed|realloc)$", cfn):
                calls += int(line.split()[0][6:])
            cfn = None
    return calls


OURS = ("libngx_http_upstream_cause_module.so]", ":ngx_http_upstream_cause_module::", ":upstream_cause_core::")


def function_costs(path):
    """Self instructions per function (callgrind_annotate, no source)."""
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", "--inclusive=no", str(path)],
                         capture_output=True, text=True, timeout=300).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)", line)
        if not m or "=>" in m.group(2) or "PROGRAM TOTALS" in m.group(2):
            continue
        what = m.group(2)
        ours = any(o in what for o in OURS)
        name = re.sub(r"\s*\[[^\]]*\]$", "", what).split(":", 1)[-1]
        key = (name, ours)
        costs[key] = costs.get(key, 0) + int(m.group(1).replace(",", ""))
    return costs


def measure_callgrind(go, dead, n1, n2):
    """Per workload and variant: (instructions, allocator calls, module's
    own instructions) per request, and the per-function costs per request."""
    res, funcs = {}, {}
    for w, (_, path) in WORKLOADS.items():
        for variant, (module, _) in VARIANTS.items():
            per, fn = {}, {}
            for n in (n1, n2):
                out = OUT / f"cg-{w}-{variant}-{n}.out"
                proc, port = start_nginx(f"cg-{w}-{variant}-{n}", go, dead, variant, True, valgrind=out)
                send(port, path, n)
                stop(proc)
                fn[n] = function_costs(out)
                own = sum(c for (_, ours), c in fn[n].items() if ours)
                per[n] = (callgrind_totals(out), alloc_calls(out), own)
            res[(w, variant)] = tuple((per[n2][i] - per[n1][i]) / (n2 - n1) for i in range(3))
            funcs[(w, variant)] = {k: (fn[n2].get(k, 0) - fn[n1].get(k, 0)) / (n2 - n1)
                                   for k in set(fn[n1]) | set(fn[n2])}
    return res, funcs


def wrk(port, path, seconds):
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


# HAProxy as the peer (no target): the same three workloads, one thread,
# `option httplog`'s format with the backend connection's error
# (%[bc_err]) appended, the termination state (%tsc) among its fields, in
# every request's log line; one attempt
# per request, as nginx makes with one server (`retries 0`).
HAPROXY_WORKLOADS = ("a", "b", "c")
HAPROXY_LOG = ("%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc "
               "%sq/%bq %hr %hs %{+Q}r %[bc_err]")


def haproxy_config(port, go, dead):
    return f"""global
  nbthread 1
  log stdout format raw local0
defaults
  mode http
  log global
  log-format "{HAPROXY_LOG}"
  retries 0
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:{port}
  use_backend ka if {{ path_beg /a/ }} || {{ path_beg /c/ }}
  use_backend dead if {{ path_beg /b/ }}
backend ka
  http-request replace-path /[ac]/(.*) /\\1
  server go 127.0.0.1:{go}
backend dead
  server dead 127.0.0.1:{dead}
"""


def start_haproxy(go, dead):
    prefix = OUT / "haproxy"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "haproxy.cfg"
    conf.write_text(haproxy_config(PORT, go, dead))
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(conf)], stdout=open(prefix / "log", "w"),
                            stderr=open(prefix / "stderr.log", "w"))
    try:
        wait_port(PORT, proc=proc)
    except (TimeoutError, RuntimeError):
        proc.kill()
        raise RuntimeError(f"haproxy did not start: {(prefix / 'stderr.log').read_text()[-2000:]}") from None
    return proc


def stop_haproxy(proc):
    """A soft stop (SIGUSR1): HAProxy finishes what it has, logs included."""
    proc.send_signal(signal.SIGUSR1)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def check_haproxy(go, dead):
    """Each workload answers as nginx's does (200, 502, 502), and HAProxy's
    log says why: its termination state and the connection's error."""
    proc = start_haproxy(go, dead)
    try:
        got = {}
        for w in HAPROXY_WORKLOADS:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            conn.request("GET", WORKLOADS[w][1])
            got[w] = conn.getresponse().status
            conn.close()
    finally:
        stop_haproxy(proc)
    # HAProxy answers a refused connection with 503
    want = {"a": 200, "b": 503, "c": 502}
    if got != want:
        raise RuntimeError(f"haproxy answered {got}, not {want}: see {OUT / 'haproxy'}")
    lines = (OUT / "haproxy" / "log").read_text().splitlines()
    # each workload's line (the port probe's, a 400 with no request, aside)
    logs = []
    for w in HAPROXY_WORKLOADS:
        path = f'"GET {WORKLOADS[w][1]} '
        logs.append(next((line.split("] ", 1)[-1] for line in lines if path in line), "(no line)"))
    return logs


def measure_haproxy(go, dead, rounds, seconds):
    """req/s of HAProxy on workloads a-c, its rounds between nginx's."""
    res = {}
    for w in HAPROXY_WORKLOADS:
        rps = []
        for _ in range(rounds):
            proc = start_haproxy(go, dead)
            wrk(PORT, WORKLOADS[w][1], 1)  # warm-up
            rps.append(wrk(PORT, WORKLOADS[w][1], seconds))
            stop_haproxy(proc)
        res[w] = statistics.median(rps)
    return res


def measure_wrk(go, dead, rounds, seconds):
    res = {}
    for w, (_, path) in WORKLOADS.items():
        ratios = []
        rps = {"stock": [], "module": []}
        for r in range(rounds):
            got = {}
            order = ("stock", "module") if r % 2 == 0 else ("module", "stock")
            for variant in order:
                proc, port = start_nginx(f"wrk-{w}-{variant}", go, dead, variant, False)
                wrk(port, path, 1)  # warm-up
                got[variant] = wrk(port, path, seconds)
                stop(proc)
                rps[variant].append(got[variant])
            ratios.append(got["module"] / got["stock"] if got["stock"] else 0)
        res[w] = (statistics.median(rps["stock"]), statistics.median(rps["module"]), statistics.median(ratios),
                  min(ratios), max(ratios))
    return res


def short(name):
    """A function's name without its crate path and generics."""
    name = re.sub(r"<[^<>]*>", "", re.sub(r"<[^<>]*>", "", name))
    return name.replace("ngx_http_upstream_cause_module::", "").replace("upstream_cause_core::", "core::")


def where(funcs, w, top, variant="module"):
    """The functions whose cost per request grew most with the module."""
    m, st = funcs[(w, variant)], funcs[(w, "stock")]
    diff = {}
    for k in set(m) | set(st):
        name = short(k[0]) + (" (ours)" if k[1] else "")
        diff[name] = diff.get(name, 0) + m.get(k, 0) - st.get(k, 0)
    best = sorted(diff.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"`{n}` {c:,.0f}" for n, c in best if c >= 1)


def haproxy_version():
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout
    m = re.search(r"version (\S+)", out)
    return f"HAProxy {m.group(1)}" if m else "HAProxy"


def table(cg, funcs, wr, n1, n2, rounds, seconds, build, with_where=True, haproxy=None):
    ver = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True).stderr.strip().replace("nginx version: ", "")
    # whether the binary is built --with-debug, as `nginx -V` says
    configure = subprocess.run([str(NGINX), "-V"], capture_output=True, text=True).stderr
    build += ", `--with-debug`" if "--with-debug" in configure else ", no `--with-debug`"
    cpu = cpu_model()
    lines = [
        f"Measured {datetime.date.today()} on {cpu}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; {ver} ({build}); stock = the same binary without "
        f"`load_module`; module = loaded, with the header, the log line and a zone; without the line = the same "
        f"with `upstream_cause_log off`. callgrind: "
        f"(I({n2}) - I({n1})) / {n2 - n1} requests on one keepalive client connection, nginx's clock "
        f"updated once an hour (`timer_resolution 3600s`: how many seconds a run takes under valgrind moves "
        f"nginx's time formatting by tens of instructions per request); wrk: 1 worker, "
        f"16 connections, {seconds} s, {rounds} interleaved rounds (stock and module).",
        "",
        "| workload | instructions/request stock | module | ratio | module's own functions | without the line | ratio | Rust allocator calls/request | wrk req/s stock | module | median ratio (min-max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w, (name, _) in WORKLOADS.items():
        s, m, q = cg[(w, "stock")], cg[(w, "module")], cg[(w, "noline")]
        ratio, qratio = m[0] / s[0], q[0] / s[0]
        own = m[2] / m[0] * 100 if m[0] else 0
        ws, wm, wmed, wmin, wmax = wr[w]
        lines.append(
            f"| ({w}) {name} | {s[0]:,.0f} | {m[0]:,.0f} | {ratio:.4f} ({(ratio - 1) * 100:+.2f}%) | "
            f"{m[2]:,.0f} ({own:.1f}%) | {q[0]:,.0f} | {qratio:.4f} ({(qratio - 1) * 100:+.2f}%) | {m[1]:.2f} | "
            f"{ws:,.0f} | {wm:,.0f} | {wmed:.3f} ({wmin:.3f}-{wmax:.3f}) |")
    if haproxy:
        hp, logs = haproxy
        lines += ["", f"The peer, in the same run: {haproxy_version()} (one thread; in its log line `option httplog`'s "
                  f"fields with `%[bc_err]` appended, so the termination state `%tsc` and the connection's error; "
                  f"`retries 0`, `http-reuse always`; wrk as above, median of {rounds} rounds):", "",
                  "| workload | req/s stock nginx | nginx with the module | HAProxy | HAProxy's log says |",
                  "|---|---|---|---|---|"]
        for w, log in zip(HAPROXY_WORKLOADS, logs):
            ws, wm = wr[w][0], wr[w][1]
            f = log.split()
            said = f"{f[3]} {f[7]}, bc_err {f[-1]}" if len(f) > 8 else log
            lines.append(f"| ({w}) {WORKLOADS[w][0]} | {ws:,.0f} | {wm:,.0f} | {hp[w]:,.0f} | `{said}` |")
    if with_where:
        lines += ["", "Where the extra instructions go (callgrind, module minus stock, per request, largest first):", ""]
        for w, (name, _) in WORKLOADS.items():
            lines.append(f"- ({w}) {where(funcs, w, 8)}")
        lines += ["", "The same without the line (`upstream_cause_log off`):", ""]
        for w, (name, _) in WORKLOADS.items():
            lines.append(f"- ({w}) {where(funcs, w, 8, 'noline')}")
    return "\n".join(lines)


def write_section(marker, text):
    """Puts `text` between docs/performance.md's `<!-- MARKER:start -->` and
    `<!-- MARKER:end -->`; 1 if there are no such markers."""
    doc = ROOT / "docs/performance.md"
    s = doc.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start not in s or end not in s:
        print(f"docs/performance.md has no {start} ... {end} section", file=sys.stderr)
        return 1
    doc.write_text(s[: s.index(start) + len(start)] + "\n" + text + "\n" + s[s.index(end):])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    ap.add_argument("--n1", type=int, default=50)
    ap.add_argument("--n2", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--only", default="abcd",
                    help="workloads to run, e.g. ab (no docs/performance.md update unless all)")
    ap.add_argument("--no-wrk", action="store_true", help="callgrind only (no docs/performance.md update)")
    ap.add_argument("--nginx", help="another nginx binary (default: the vendored build under .work/)")
    ap.add_argument("--module", help="the module built for that nginx")
    ap.add_argument("--build", default="the vendored build", help="how to name the build (`nginx -V` tells whether "
                    "it is --with-debug)")
    ap.add_argument("--no-where", action="store_true",
                    help="leave out the top callgrind entries (a binary without symbols names none)")
    ap.add_argument("--haproxy", action="store_true", help="also run HAProxy on workloads a-c, for context")
    ap.add_argument("--marker", default="bench",
                    help="docs/performance.md section: <!-- MARKER:start --> ... <!-- MARKER:end -->")
    args = ap.parse_args()
    global NGINX, MODULE, PORT
    NGINX = Path(args.nginx).resolve() if args.nginx else NGINX
    MODULE = Path(args.module).resolve() if args.module else MODULE
    PORT = free_port()
    for w in list(WORKLOADS):
        if w not in args.only:
            del WORKLOADS[w]
    if args.no_wrk or len(WORKLOADS) < 4:
        args.write = False
    OUT.mkdir(parents=True, exist_ok=True)
    go_port, dead = free_port(), free_port()
    go = subprocess.Popen([str(GO)], env={**os.environ, "LISTEN": f"127.0.0.1:{go_port}"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(go_port)
        cg, funcs = measure_callgrind(go_port, dead, args.n1, args.n2)
        wr = ({w: (0, 0, 0, 0, 0) for w in WORKLOADS} if args.no_wrk
              else measure_wrk(go_port, dead, args.rounds, args.seconds))
        haproxy = None
        if args.haproxy and not args.no_wrk:
            logs = check_haproxy(go_port, dead)
            haproxy = (measure_haproxy(go_port, dead, args.rounds, args.seconds), logs)
    finally:
        go.terminate()
        go.wait(10)
    text = table(cg, funcs, wr, args.n1, args.n2, args.rounds, args.seconds, args.build, not args.no_where,
                 haproxy)
    print(text)
    if args.write:
        return write_section(args.marker, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
