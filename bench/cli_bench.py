"""The offline classifier's benchmark (bench/cli.sh runs it).

Generates an nginx error log of a given size from nginx's own line formats
(the texts nginx 1.28 writes, as the integration suite's logs have them):
every failure kind the classifier knows, retries over two and three peers,
four workers with their own connection numbers, and 90% other lines
(keepalive closes, client timeouts, buffering warnings, start-up notices,
lines of other modules). Then times, on one core (taskset), the classifier's
`summary` and `requests` over it against `grep -c upstream` and `wc -l` on
the same file in the same run (best of N, the file in the page cache), and
measures peak RSS (GNU time) on the whole file and on a quarter of it.
Prints a Markdown table and, with --write,
writes it into docs/performance.md between <!-- bench-cli:start --> and
<!-- bench-cli:end -->.
"""
import argparse
import os
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent

# nginx's texts for each failure (message, action), as in the suite's logs
FAILURES = [
    ("connect() failed (111: Connection refused)", "connecting to upstream"),
    ("connect() failed (113: No route to host)", "connecting to upstream"),
    ("connect() to 10.0.3.7:8080 failed (99: Cannot assign requested address)", "connecting to upstream"),
    ("connect() to unix:/run/php/php8.2-fpm.sock failed (11: Resource temporarily unavailable)", "connecting to upstream"),
    ("upstream timed out (110: Connection timed out)", "connecting to upstream"),
    ("upstream timed out (110: Connection timed out)", "reading response header from upstream"),
    ("upstream timed out (110: Connection timed out)", "sending request to upstream"),
    ("upstream prematurely closed connection", "reading response header from upstream"),
    ("upstream prematurely closed connection", "reading upstream"),
    ("recv() failed (104: Connection reset by peer)", "reading response header from upstream"),
    ("writev() failed (32: Broken pipe)", "sending request to upstream"),
    ("upstream sent invalid header: \"X-Bad\\x0D...\"", "reading response header from upstream"),
    ("upstream sent too big header", "reading response header from upstream"),
    ("no live upstreams", "connecting to upstream"),
    ("upstream SSL certificate verify error: (18:self-signed certificate)", "SSL handshaking to upstream"),
    ("SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number)", "SSL handshaking to upstream"),
    ("upstream rejected request with error 7", "reading response header from upstream"),
    ("upstream sent goaway with error 0", "reading response header from upstream"),
    ("client prematurely closed connection", "reading response header from upstream"),
]
RESOLVER = ["api.internal could not be resolved (3: Host not found)", "no resolver defined to resolve api.internal"]
NOISE = [
    "[info] {w}: *{c} client {ip} closed keepalive connection",
    "[info] {w}: *{c} client closed connection while waiting for request, client: {ip}, server: 0.0.0.0:443",
    "[info] {w}: *{c} client timed out (110: Connection timed out) while waiting for request, client: {ip}, server: 0.0.0.0:80",
    "[info] {w}: *{c} SSL_do_handshake() failed (SSL: error:0A000126:SSL routines::unexpected eof while reading) while SSL handshaking, client: {ip}, server: 0.0.0.0:443",
    "[warn] {w}: *{c} a client request body is buffered to a temporary file /var/cache/nginx/client_temp/0000{c}, client: {ip}, server: api.example.com, request: \"POST /v1/upload HTTP/1.1\", host: \"api.example.com\"",
    "[warn] {w}: *{c} an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/1/00/0000{c} while reading upstream, client: {ip}, server: api.example.com, request: \"GET /v1/export HTTP/1.1\", upstream: \"http://10.0.1.{p}:8080/v1/export\", host: \"api.example.com\"",
    "[error] {w}: *{c} open() \"/usr/share/nginx/html/favicon.ico\" failed (2: No such file or directory), client: {ip}, server: www.example.com, request: \"GET /favicon.ico HTTP/1.1\", host: \"www.example.com\"",
    "[error] {w}: *{c} access forbidden by rule, client: {ip}, server: www.example.com, request: \"GET /.git/config HTTP/1.1\", host: \"www.example.com\"",
    "[error] {w}: *{c} limiting requests, excess: 20.512 by zone \"api\", client: {ip}, server: api.example.com, request: \"GET /v1/search?q=x HTTP/1.1\", host: \"api.example.com\"",
    "[notice] {w}: signal process started",
    "[error] {w}: *{c} ModSecurity: Access denied with code 403 (phase 2), client: {ip}, server: api.example.com, request: \"GET /v1/items?id=1%27 HTTP/1.1\", host: \"api.example.com\"",
]
URIS = ["/v1/orders", "/v1/users/42", "/checkout", "/api/search?q=shoes", "/index.php", "/grpc.health.v1.Health/Check"]


def generate(path: Path, size: int, seed: int):
    rng = random.Random(seed)
    workers = [(4100 + i, 0) for i in range(4)]
    conn = [1000 * i for i in range(4)]
    t0 = time.mktime((2026, 11, 25, 0, 0, 0, 0, 0, -1))
    written = 0
    n = 0
    with open(path, "w") as f:
        buf = []
        while written < size:
            n += 1
            ts = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t0 + n // 200))
            k = rng.randrange(len(workers))
            pid = workers[k][0]
            w = f"{pid}#{pid}"
            conn[k] += rng.randrange(1, 4)
            ip = f"203.0.113.{rng.randrange(1, 255)}"
            if rng.random() < 0.9:
                line = f"{ts} " + rng.choice(NOISE).format(w=w, c=conn[k], ip=ip, p=rng.randrange(1, 9))
                buf.append(line)
            else:
                uri = rng.choice(URIS)
                req = f"GET {uri} HTTP/1.1"
                host = "api.example.com"
                if rng.random() < 0.03:
                    buf.append(f"{ts} [error] {w}: *{conn[k]} {rng.choice(RESOLVER)}, client: {ip}, "
                               f"server: api.example.com, request: \"{req}\", host: \"{host}\"")
                else:
                    # a request and its attempts: 1 to 3 peers
                    for a in range(rng.choice([1, 1, 1, 2, 3])):
                        msg, action = rng.choice(FAILURES)
                        peer = f"10.0.1.{a + 1}:8080" if "no live" not in msg else "backend"
                        level = "crit" if "(99:" in msg else "error"
                        buf.append(f"{ts} [{level}] {w}: *{conn[k]} {msg} while {action}, client: {ip}, "
                                   f"server: api.example.com, request: \"{req}\", upstream: \"http://{peer}{uri}\", "
                                   f"host: \"{host}\"")
            if len(buf) >= 10000:
                s = "\n".join(buf) + "\n"
                f.write(s)
                written += len(s)
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")


def timed(cmd):
    """One run's wall time. The output goes to a pipe this process drains:
    not /dev/null (GNU grep stops at its first match when its output is
    /dev/null), not a file (its writeback would run during the next
    timings)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    while p.stdout.read(1 << 20):
        pass
    assert p.wait() == 0, cmd
    return time.perf_counter() - t


def best(cmds, rounds):
    """The best time of each command over `rounds` rounds, each round
    running every command once (interleaved: a machine whose speed drifts
    slows them alike)."""
    times = [[] for _ in cmds]
    for _ in range(rounds):
        for i, cmd in enumerate(cmds):
            times[i].append(timed(cmd))
    return [min(t) for t in times]


def instructions_per_byte(cli, log: Path, d: Path):
    """callgrind's instruction count of `summary` over the log's first 20 MB
    (deterministic, where wall time on a shared machine is not)."""
    part = d / "part.log"
    with open(log, "rb") as src, open(part, "wb") as dst:
        dst.write(src.read(20_000_000))
    r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={d / 'callgrind.out'}",
                        cli, "summary", str(part)], capture_output=True, text=True, check=True)
    ir = int(re.search(r"Collected : (\d+)", r.stderr).group(1))
    return ir / part.stat().st_size


def peak_kib(cmd):
    r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return int(r.stderr.decode().split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=str(ROOT / "target/release/upstream-cause"))
    ap.add_argument("--size", type=int, default=1 << 30, help="bytes of log to generate")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=str(ROOT / ".work/bench-cli"))
    ap.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    log = d / "error.log"
    if not log.exists() or log.stat().st_size < args.size:
        t = time.perf_counter()
        generate(log, args.size, seed=1)
        print(f"generated {log} ({log.stat().st_size} bytes) in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    quarter = d / "quarter.log"
    if not quarter.exists() or quarter.stat().st_size != log.stat().st_size // 4:
        with open(log, "rb") as src, open(quarter, "wb") as dst:
            dst.write(src.read(log.stat().st_size // 4))
    size = log.stat().st_size
    # nothing of the set-up still being written back during the timings
    os.sync()
    one = ["taskset", "-c", "0"]
    # warm the page cache
    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)
    named = [
        ("`wc -l`", ["wc", "-l", str(log)]),
        ("`grep -c upstream`", ["grep", "-c", "upstream", str(log)]),
        ("`upstream-cause summary`", [args.cli, "summary", str(log)]),
        ("`upstream-cause requests`", [args.cli, "requests", str(log)]),
    ]
    secs = best([one + cmd for _, cmd in named], args.rounds)
    rows = [(name, t, cmd) for (name, cmd), t in zip(named, secs)]
    ipb = instructions_per_byte(args.cli, log, d)
    wc, grep = rows[0][1], rows[1][1]
    out = subprocess.run([args.cli, "summary", str(log)], capture_output=True, check=True).stdout.decode()
    head = out.splitlines()[:3]
    rss_full = peak_kib([args.cli, "summary", str(log)])
    rss_quarter = peak_kib([args.cli, "summary", str(quarter)])
    rss_req = peak_kib([args.cli, "requests", str(log)])
    cpu = cpu_model()
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu}, {os.cpu_count()} cores, Linux {platform.release()}: "
        f"`bash bench/cli.sh` generated a {size / 2**30:.2f} GiB error log "
        f"({head[1].split(' lines')[0].replace('read ', '')} lines, 90% of them other than upstream failures; "
        f"{head[0].split(': ', 1)[1]}), read from the page cache, each command on one core (`taskset -c 0`), "
        f"its output read from a pipe, best of {args.rounds} interleaved rounds.",
        "",
        "| command | seconds | GB/s | vs `wc -l` | vs `grep -c upstream` |",
        "|---|---|---|---|---|",
    ]
    for name, secs, _ in rows:
        lines.append(f"| {name} | {secs:.3f} | {size / secs / 1e9:.2f} | {wc / secs:.2f} | {grep / secs:.2f} |")
    lines += [
        "",
        f"Peak RSS (GNU time): `summary` {rss_quarter / 1024:.1f} MiB over a quarter of the file, "
        f"{rss_full / 1024:.1f} MiB over all of it; `requests` {rss_req / 1024:.1f} MiB. "
        "The ratios are throughput against the floor's: the floor's time over the command's (1.00: as fast). "
        f"callgrind, `summary` over the first 20 MB: {ipb:.1f} instructions per byte (wall times on this "
        "shared machine drift by up to 2x from minute to minute; the instruction count does not).",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        doc = ROOT / "docs/performance.md"
        text = doc.read_text()
        new, n = re.subn(r"(<!-- bench-cli:start -->\n).*?(<!-- bench-cli:end -->)",
                         lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
        if n != 1:
            sys.exit("docs/performance.md has no <!-- bench-cli:start --> ... <!-- bench-cli:end --> section")
        doc.write_text(new)


if __name__ == "__main__":
    main()
