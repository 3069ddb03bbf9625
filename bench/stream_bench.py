#!/usr/bin/env python3
"""What the stream module costs per TCP or UDP session: the same nginx
binary and stream configuration, without the stream module (stock) and
with it loaded and on (its zone, the enriched line).

Workloads: (s) a TCP session proxied to an echo backend (success),
(r) a TCP session to a refused port (502), (q) a TCP session whose backend
closes without a byte (200, upstream_closed_silent), (u) a UDP datagram
answered by an echo backend (success).

callgrind: instructions per session, (I(N2) - I(N1)) / (N2 - N1); calls
into the Rust allocator and into nginx's pool allocator (ngx_palloc,
ngx_pnalloc, ngx_pcalloc) per session, module minus stock: what the module
allocates. Writes a markdown table, and with --write puts it between the
`<!-- bench-stream:start -->` / `<!-- bench-stream:end -->` markers of
docs/performance.md. Every loop is bounded; traffic stays on 127.0.0.1.
"""
import argparse
import datetime
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path

import bench
from machine import cpu_model

ROOT = bench.ROOT
FAULTS = ROOT / "docker/faults/stream_faults.py"
STREAM_MODULE = bench.WORK / "modules/ngx_stream_upstream_cause_module.so"

WORKLOADS = {
    "s": ("TCP session, echoed (success)", "tcp", "echo"),
    "r": ("TCP session, connect refused (502)", "tcp", "dead"),
    "q": ("TCP session, backend closes without a byte (200, `upstream_closed_silent`)", "tcp", "close"),
    "u": ("UDP datagram, echoed (success)", "udp", "udp-echo"),
}

POOL_FUNCS = ("ngx_palloc", "ngx_pnalloc", "ngx_pcalloc")


def config(prefix, port, ready, backends, workload, module):
    user = "user root;" if os.geteuid() == 0 else ""
    _, proto, backend = WORKLOADS[workload]
    mod = f"load_module {STREAM_MODULE};" if module else ""
    on = "upstream_cause_zone ucs 1m;" if module else ""
    udp = " udp" if proto == "udp" else ""
    return f"""{mod}
daemon off; master_process off; worker_processes 1; {user} timer_resolution 3600s;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
events {{ worker_connections 1024; }}
stream {{
  {on}
  proxy_timeout 10s;
  proxy_responses 1;
  server {{ listen 127.0.0.1:{port}{udp}; proxy_pass 127.0.0.1:{backends[backend]}; }}
  server {{ listen 127.0.0.1:{ready}; return ready; }}
}}
"""


def session(proto, port):
    if proto == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            s.send(b"hello")
            s.recv(64)
        return
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"hello")
        try:
            while s.recv(64):
                pass
        except (ConnectionResetError, socket.timeout):
            pass


def calls_to(path, names):
    """Calls recorded in a callgrind file into functions named `names`."""
    ids, calls, cfn = {}, 0, None
    for line in open(path):
        if line.startswith(("cfn=", "fn=")):
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.strip())
            if m and m.group(2):
                ids[m.group(1)] = m.group(2)
            if line.startswith("cfn="):
                cfn = ids.get(m.group(1), "") if m else line[4:].strip()
        elif line.startswith("calls=") and cfn is not None:
            if cfn in names:
                calls += int(line.split()[0][6:])
            cfn = None
    return calls


def run_one(workload, module, n, backends, port, ready):
    name = f"stream-{workload}-{'module' if module else 'stock'}-{n}"
    prefix = bench.OUT / name
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(config(prefix, port, ready, backends, workload, module))
    out = bench.OUT / f"{name}.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(bench.NGINX),
                             "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=open(prefix / "stderr.log", "w"))
    try:
        bench.wait_port(ready, proc=proc)
        proto = WORKLOADS[workload][1]
        # each session ends before the next starts: the client reads until
        # nginx closes (TCP) or answers (UDP); the stop is graceful
        for _ in range(n):
            session(proto, port)
    finally:
        bench.stop(proc)
    return bench.callgrind_totals(out), bench.alloc_calls(out), calls_to(out, POOL_FUNCS)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    ap.add_argument("--n1", type=int, default=50)
    ap.add_argument("--n2", type=int, default=250)
    ap.add_argument("--nginx", help="another nginx binary (default: the vendored build under .work/)")
    ap.add_argument("--module", help="the stream module built for that nginx")
    ap.add_argument("--build", default="the vendored build")
    args = ap.parse_args()
    global STREAM_MODULE
    bench.NGINX = Path(args.nginx).resolve() if args.nginx else bench.NGINX
    STREAM_MODULE = Path(args.module).resolve() if args.module else STREAM_MODULE
    bench.OUT.mkdir(parents=True, exist_ok=True)
    ports = {m: bench.free_port() for m in ("echo", "close", "udp-echo")}
    backends = {**ports, "dead": bench.free_port()}
    faults = subprocess.Popen([sys.executable, str(FAULTS), *[f"{m}@127.0.0.1:{p}" for m, p in ports.items()]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port, ready = bench.free_port(), bench.free_port()
    res = {}
    try:
        bench.wait_port(ports["echo"], proc=faults)
        for w in WORKLOADS:
            for module in (False, True):
                a = run_one(w, module, args.n1, backends, port, ready)
                b = run_one(w, module, args.n2, backends, port, ready)
                res[(w, module)] = tuple((b[i] - a[i]) / (args.n2 - args.n1) for i in range(3))
    finally:
        faults.terminate()
        faults.wait(10)
    ver = subprocess.run([str(bench.NGINX), "-v"], capture_output=True, text=True).stderr.strip()
    configure = subprocess.run([str(bench.NGINX), "-V"], capture_output=True, text=True).stderr
    build = args.build + (", `--with-debug`" if "--with-debug" in configure else ", no `--with-debug`")
    lines = [
        f"Measured {datetime.date.today()} on {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; {ver.replace('nginx version: ', '')} ({build}); stock = the same binary and "
        f"stream block without the stream module; module = loaded, with a zone and the enriched line. callgrind: "
        f"(I({args.n2}) - I({args.n1})) / {args.n2 - args.n1} sessions, each on a new client connection "
        f"(a datagram from a new socket for UDP), nginx's clock updated once an hour. Allocations are "
        f"the module's: calls per session with it minus without it.",
        "",
        "| workload | instructions/session stock | module | ratio | Rust allocator calls/session | nginx pool allocations/session |",
        "|---|---|---|---|---|---|",
    ]
    for w, (name, _, _) in WORKLOADS.items():
        s, m = res[(w, False)], res[(w, True)]
        ratio = m[0] / s[0]
        lines.append(f"| ({w}) {name} | {s[0]:,.0f} | {m[0]:,.0f} | {ratio:.4f} ({(ratio - 1) * 100:+.2f}%) | "
                     f"{m[1] - s[1]:.2f} | {m[2] - s[2]:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        return bench.write_section("bench-stream", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
