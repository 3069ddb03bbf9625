"""The offline classifier, `upstream-cause`, on real nginx error logs: the
logs a real nginx writes here (rotated by nginx's own reopen and by
copytruncate while it keeps writing), compressed and piped, with bad bytes
in between; and, after the rest of the suite, every error log the suite's
nginx instances wrote, held attempt by attempt to the module's
$upstream_cause_list."""
import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import conftest
from conftest import ROOT, dead_port

CLI = os.environ.get("UPSTREAM_CAUSE_CLI", str(ROOT / ".work/bin/upstream-cause"))


def cli(*args, stdin=None, check=True):
    r = subprocess.run([CLI, *map(str, args)], input=stdin, capture_output=True, timeout=120)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stderr.decode(errors="replace"))
    return r


def requests_of(*args, stdin=None):
    out = cli("requests", *args, stdin=stdin).stdout.decode()
    return [json.loads(l) for l in out.splitlines()]


def without_module_lines(text: bytes) -> bytes:
    return b"".join(l for l in text.splitlines(keepends=True) if b"upstream_cause" not in l)


def conf(dead, log="error"):
    return f"""
    upstream pair {{ server 127.0.0.1:{dead} max_fails=0; server 127.0.0.1:{dead_port()} max_fails=0; }}
    server {{
        listen 127.0.0.1:@PORT@;
        upstream_cause_log {log};
        location /gone/ {{ proxy_pass http://127.0.0.1:{dead}/; }}
        location /pair/ {{ proxy_pass http://pair/; }}
        location /files/ {{ }}
    }}
    """


def wait_for(what, probe, timeout=15.0):
    deadline = time.monotonic() + timeout * conftest.WRAPPER_SLOWDOWN
    while True:
        got = probe()
        if got or time.monotonic() > deadline:
            assert got, f"timed out waiting for {what}"
            return got
        time.sleep(0.05)


class Follower:
    """`upstream-cause requests --follow`, its JSON lines gathered as they come."""

    def __init__(self, path, *args):
        self.proc = subprocess.Popen([CLI, "requests", "--follow", *args, str(path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buf = b""
        self.got = []

    def poll(self):
        chunk = self.proc.stdout.read()
        if chunk:
            self.buf += chunk
            *whole, self.buf = self.buf.split(b"\n")
            self.got += [json.loads(l) for l in whole]
        assert self.proc.poll() is None, self.proc.stderr.read()
        return self.got

    def wait_request(self, uri):
        return wait_for(f"{uri} from --follow", lambda: [r for r in self.poll() if f" {uri} HTTP/" in r["request"]])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


def test_follow_through_reopen_and_copytruncate(nginx_factory):
    nginx = nginx_factory(conf(dead_port()))
    nginx.rotated = True        # its lines are spread over copies: not for the agreement check
    log = nginx.error_log
    f = Follower(log)
    try:
        assert nginx.get("/gone/1").status == 502
        (r,) = f.wait_request("/gone/1")
        assert (r["cause"], r["status"], r["source"]) == ("connect_refused", 502, "module")
        # logrotate's default: rename, create, then nginx reopens its logs (USR1)
        log.rename(log.with_name("error.log.1"))
        log.touch()
        time.sleep(0.5)     # the follower sees the new file before nginx has reopened
        assert nginx.get("/gone/2").status == 502       # still into the renamed file
        os.kill(nginx.proc.pid, signal.SIGUSR1)
        wait_for("the reopened log", log.exists)
        assert nginx.get("/gone/4").status == 502
        f.wait_request("/gone/2")
        f.wait_request("/gone/4")
        # copytruncate: nginx keeps its descriptor (O_APPEND) and writes from 0 again
        shutil.copy(log, log.with_name("error.log.2"))
        os.truncate(log, 0)
        assert nginx.get("/gone/5").status == 502
        f.wait_request("/gone/5")
        uris = [r["request"] for r in f.poll()]
        assert len(uris) == len(set(uris)), uris      # nothing read twice
    finally:
        f.stop()


def test_follow_closes_text_only_requests_when_the_log_goes_quiet_or_moves_on(nginx_factory):
    nginx = nginx_factory(conf(dead_port(), log="off"))
    f = Follower(nginx.error_log, "--window", "1")
    try:
        assert nginx.get("/pair/q").status == 502
        (r,) = f.wait_request("/pair/q")
        # a busy log: other lines keep coming (404s), the request is closed
        # once the log's clock has passed the window
        assert nginx.get("/pair/busy").status == 502
        deadline = time.monotonic() + 15 * conftest.WRAPPER_SLOWDOWN
        while not [x for x in f.poll() if " /pair/busy " in x["request"]] and time.monotonic() < deadline:
            assert nginx.get("/files/missing").status == 404
            time.sleep(0.1)
        (busy,) = f.wait_request("/pair/busy")
        assert busy["causes"] == "connect_refused, connect_refused"
        assert (r["cause"], r["causes"], r["source"], r["status"]) == (
            "connect_refused", "connect_refused, connect_refused", "nginx", None)
        assert set(r["unknown"]) >= {"status", "later_attempts", "reused", "via_upstream"}
        assert r["detail"] == conftest.REFUSED_DETAIL
        assert r["hint"].startswith("nothing listens on the upstream port")
    finally:
        f.stop()


@pytest.fixture
def failing_log(nginx_factory):
    """A real error log: two workers, retries over a dead pair, refused
    single peers, with and without the module's lines."""
    dead = dead_port()
    nginx = nginx_factory(conf(dead), workers=2)
    for i in range(20):
        assert nginx.get(f"/gone/{i}").status == 502
        assert nginx.get(f"/pair/{i}").status == 502
    wait_for("40 enriched lines", lambda: len(nginx.cause_lines()) >= 40)
    return nginx.error_log.read_bytes()


def test_plain_gzip_stdin_and_a_pipe_read_alike(failing_log, tmp_path):
    plain = tmp_path / "error.log"
    plain.write_bytes(failing_log)
    gz = tmp_path / "error.log.2.gz"
    gz.write_bytes(gzip.compress(failing_log))
    from_plain = requests_of(plain)
    assert len(from_plain) == 40
    assert requests_of(gz) == from_plain
    # a FIFO (as <(zcat ...) gives) cannot seek
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat {gz} > {fifo}"])
    assert requests_of(fifo) == from_plain
    writer.wait(timeout=30)
    bad = cli("--follow", gz, check=False)
    assert bad.returncode == 2 and b"not a compressed one" in bad.stderr
    assert requests_of("-", stdin=failing_log) == from_plain
    assert requests_of(stdin=failing_log) == from_plain
    # two files: the requests of both, the summary counts both
    assert len(requests_of(plain, gz)) == 80
    summary = cli(plain, gz).stdout.decode()
    assert re.search(r"^connect_refused +120 +100\.0% +80 ", summary, re.M), summary


def test_the_module_lines_and_nginx_lines_alone(failing_log):
    by_module = requests_of(stdin=failing_log)
    assert {r["source"] for r in by_module} == {"module"}
    pairs = [r for r in by_module if "/pair/" in r["request"]]
    assert {r["causes"] for r in pairs} == {"connect_refused, connect_refused"}
    assert {r["attempts"] for r in pairs} == {2}
    text_only = requests_of(stdin=without_module_lines(failing_log))
    assert {r["source"] for r in text_only} == {"nginx"}
    key = lambda r: (r["pid"], r["connection"], r["request"])
    assert sorted(map(key, text_only)) == sorted(map(key, by_module))
    for r in text_only:
        assert r["status"] is None and r["attempts"] is None
        assert r["causes"] == ("connect_refused, connect_refused" if "/pair/" in r["request"] else "connect_refused")
        assert all(f["peer"].startswith("127.0.0.1:") for f in r["failures"])
    # the module's line is one request with nginx's lines folded into it
    summary = cli("summary", stdin=failing_log).stdout.decode()
    assert "60 upstream failure lines of nginx's, 40 of the module's (60 of nginx's folded into them)" in summary


def test_prometheus_has_the_module_s_families(failing_log):
    from prometheus_client.parser import text_string_to_metric_families
    out = cli("prometheus", stdin=failing_log).stdout.decode()
    fams = {f.name: f for f in text_string_to_metric_families(out)}
    attempts = fams["nginx_upstream_cause"].samples
    assert sum(s.value for s in attempts) == 60
    assert {s.labels["cause"] for s in attempts} == {"connect_refused"}
    assert len({s.labels["peer"] for s in attempts}) == 2
    responses = fams["nginx_upstream_cause_responses"].samples
    assert {(s.labels["cause"], s.labels["status"]) for s in responses} == {("connect_refused", "502")}
    assert sum(s.value for s in responses) == 40
    # from nginx's lines alone the attempts are there, the statuses are not
    out = cli("prometheus", stdin=without_module_lines(failing_log)).stdout.decode()
    fams = {f.name: f for f in text_string_to_metric_families(out)}
    assert sum(s.value for s in fams["nginx_upstream_cause"].samples) == 60
    assert fams["nginx_upstream_cause_responses"].samples == []
    assert "# upstream-cause: 40 failed requests from nginx's lines alone" in out


def test_since_until_and_by(failing_log, tmp_path):
    lines = failing_log.decode().splitlines(keepends=True)
    # move the second half an hour later, as a longer log would have it
    later = []
    for i, l in enumerate(lines):
        if i >= len(lines) // 2 and re.match(r"\d{4}/\d\d/\d\d \d\d:", l):
            t = time.strptime(l[:19], "%Y/%m/%d %H:%M:%S")
            l = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(time.mktime(t) + 3600)) + l[19:]
        later.append(l)
    log = tmp_path / "error.log"
    log.write_text("".join(later))
    first = time.strptime(later[0][:19], "%Y/%m/%d %H:%M:%S")
    cut = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.mktime(first) + 1800))
    a = requests_of("--until", cut, log)
    b = requests_of("--since", cut, log)
    assert a and b and len(a) + len(b) == 40
    assert max(r["time"] for r in a) < min(r["time"] for r in b)
    by_peer = cli("summary", "--by", "peer", log).stdout.decode()
    assert re.search(r"^peer +failures +share +requests .* top causes +top upstreams$", by_peer, re.M), by_peer
    assert len(re.findall(r"^127\.0\.0\.1:\d+ ", by_peer, re.M)) == 2
    assert "failed attempts per" in by_peer
    bad = cli("--since", "yesterday", log, check=False)
    assert bad.returncode == 2 and b"invalid time" in bad.stderr


# The prefixes people's tools put in front of nginx's line (docs/cli.md),
# each with the source it names: as `kubectl logs`, `docker compose logs`,
# journald and syslog hand a real log over, from two sources at once.
PREFIXES = [
    (lambda src: "2017-05-10T06:50:00.434167704Z ", None),                      # docker logs -t
    (lambda src: "2030-01-01T00:00:00+00:00 ", None),                             # kubectl logs --timestamps
    (lambda src: f"[pod/ingress-{src}/controller] ", "pod/ingress-{src}/controller"),  # kubectl logs --prefix
    (lambda src: f"\x1b[32mingress-{src}\x1b[0m \x1b[34mcontroller\x1b[0m ", "ingress-{src} controller"),  # stern
    (lambda src: f"web-{src}  | ", "web-{src}"),                                  # docker compose logs
    (lambda src: f"12:00:00 web.{src} | ", "web.{src}"),                           # foreman
    (lambda src: f"Apr 21 08:13:58 box-{src} nginx[30946]: ", "box-{src}"),      # journald short
    (lambda src: f"2024-04-21T08:13:58+0000 box-{src} nginx[30946]: ", "box-{src}"),  # journald short-iso
    (lambda src: f"<187>Apr 21 08:13:58 box-{src} nginx: ", "box-{src}"),        # syslog RFC 3164
    (lambda src: f"<187>1 2024-04-21T08:13:58.000Z box-{src} nginx - - - ", "box-{src}"),  # syslog RFC 5424
    (lambda src: "@400000006624cb6a2c3b1f0c ", None),                            # s6
    (lambda src: "2024-04-21_08:13:58.12345 ", None),                            # svlogd
]


@pytest.mark.parametrize("form", range(len(PREFIXES)))
def test_a_log_handed_over_with_a_prefix_reads_as_the_plain_one(failing_log, tmp_path, form):
    """The real log of two workers, as two pods' or services' (the same
    `*N` in both), interleaved line by line behind each prefix form."""
    prefix, names = PREFIXES[form]
    plain = requests_of(stdin=failing_log)
    lines = failing_log.splitlines(keepends=True)
    key = lambda r: (r["pid"], r["connection"], r["request"], r["causes"])
    if names is None:
        # no source in the prefix: one log's lines
        got = requests_of(stdin=b"".join(prefix("").encode() + l for l in lines))
        assert sorted(map(key, got)) == sorted(map(key, plain))
        assert {r["origin"] for r in got} == {None}
        return
    both = b"".join(prefix(src).encode() + l for pair in zip(lines, lines) for src, l in zip("ab", pair))
    got = requests_of(stdin=both)
    assert len(got) == 2 * len(plain) == 80
    for src in "ab":
        mine = [r for r in got if r["origin"] == names.format(src=src)]
        assert sorted(map(key, mine)) == sorted(map(key, plain)), src
    summary = cli("summary", stdin=both).stdout.decode()
    assert "upstream-cause: 80 failed requests, 120 failed attempts" in summary, summary
    assert f"failed requests by source: {names.format(src='a')} (40), {names.format(src='b')} (40)" in summary, summary
    assert re.search(r"skipped: 0 lines not in nginx's error-log format", summary), summary
    # nginx's own time, not the prefix's, for --since and --until
    first = plain[0]["time"].replace("/", "-").replace(" ", "T")
    assert len(requests_of("--since", first, stdin=both)) == 80
    assert requests_of("--until", first, stdin=both) == []


@pytest.mark.parametrize("logger, args, stamp", [("svlogd", ["-tt"], rb"\d{4}-\d\d-\d\d_\d\d:\d\d:\d\d\.\d+ 20"),
                                                ("s6-log", ["t"], rb"@4000[0-9a-f]{20} 20")])
def test_a_log_kept_by_runit_s_or_s6_s_logger_reads_as_the_plain_one(failing_log, tmp_path, logger, args, stamp):
    """The real log through the real loggers of runit (`svlogd -tt`:
    `2026-12-06_07:03:28.61100 ` in front) and s6 (`s6-log t`: a TAI64N
    label), as GitLab's and s6-overlay's images keep nginx's log."""
    if shutil.which(logger) is None:
        pytest.skip(f"no {logger} here (Debian's runit and s6 packages; scripts/lib.sh installs them)")
    logdir = tmp_path / "log"
    logdir.mkdir()
    subprocess.run([logger, *args, str(logdir)], input=failing_log, check=True, timeout=60)
    kept = (logdir / "current").read_bytes()
    assert kept.count(b"\n") == failing_log.count(b"\n")
    assert all(re.match(stamp, l) for l in kept.splitlines()), kept[:200]
    key = lambda r: (r["pid"], r["connection"], r["request"], r["causes"], r["status"])
    got = requests_of(stdin=kept)
    assert len(got) == 40
    assert sorted(map(key, got)) == sorted(map(key, requests_of(stdin=failing_log)))
    assert {r["origin"] for r in got} == {None}


@pytest.mark.parametrize("hostname", [True, False])
def test_nginx_s_own_syslog_lines_read_as_its_file(nginx_factory, hostname):
    """nginx's `error_log syslog:` (RFC 3164, its own header: `<PRI>Mon DD
    HH:MM:SS HOST TAG: `, or without the host), received as a syslog server
    receives it, gives the requests its error log file gives, keyed by the
    host (or the tag)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(0.5)
        port = sink.getsockname()[1]
        extra = "" if hostname else ",nohostname"
        nginx = nginx_factory(conf(dead_port()),
                              main_extra=f"error_log syslog:server=127.0.0.1:{port},tag=gateway{extra} error;")
        for i in range(5):
            assert nginx.get(f"/gone/{i}").status == 502
            assert nginx.get(f"/pair/{i}").status == 502
        wait_for("10 enriched lines", lambda: len(nginx.cause_lines()) >= 10)
        datagrams = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(b"upstream_cause=" in d for d in datagrams) < 10:
            try:
                datagrams.append(sink.recv(65536))
            except socket.timeout:
                pass
    assert datagrams and all(re.match(rb"<\d+>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ", d) for d in datagrams), datagrams[:3]
    origin = socket.gethostname() if hostname else "gateway"
    from_file = requests_of(stdin=nginx.error_log.read_bytes())
    from_syslog = requests_of(stdin=b"".join(d.rstrip(b"\n") + b"\n" for d in datagrams))
    key = lambda r: (r["pid"], r["connection"], r["request"], r["causes"], r["status"])
    assert len(from_syslog) == 10
    assert sorted(map(key, from_syslog)) == sorted(map(key, from_file))
    assert {r["origin"] for r in from_syslog} == {origin}
    text_only = requests_of(stdin=b"".join(d.rstrip(b"\n") + b"\n" for d in datagrams if b"upstream_cause=" not in d))
    assert sorted((r["pid"], r["connection"], r["causes"]) for r in text_only) == \
        sorted((r["pid"], r["connection"], r["causes"]) for r in from_file)


def on_a_terminal(args, env):
    """The CLI's output when its standard output is a terminal (a pty)."""
    import pty
    leader, follower = pty.openpty()
    p = subprocess.Popen([CLI, *map(str, args)], stdout=follower, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:     # EIO: the other end is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert p.wait(timeout=60) == 0, p.stderr.read()
    return out.decode(errors="replace")


def test_colour_on_a_terminal_unless_no_color(failing_log, tmp_path):
    log = tmp_path / "error.log"
    log.write_bytes(failing_log)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = on_a_terminal([log], env)
    assert "\x1b[31m█" in coloured and "connect_refused" in coloured, coloured[-2000:]
    plain = on_a_terminal([log], {**env, "NO_COLOR": "1"})
    bars = re.findall(r"^\d{4}/\d\d/\d\d \d\d:\d\d  #+ (\d+)\r?$", plain, re.M)
    assert "\x1b[" not in plain and sum(map(int, bars)) == 60, plain[-2000:]
    # NO_COLOR="" is no request (no-color.org), a pipe never gets colour
    assert "\x1b[31m" in on_a_terminal([log], {**env, "NO_COLOR": ""})
    assert b"\x1b[" not in cli(log).stdout


def test_bad_input_is_skipped_and_counted(failing_log, tmp_path):
    rng = random.Random(7)
    real = failing_log.splitlines(keepends=True)
    noise = []
    for l in real:
        noise.append(l)
        k = rng.randrange(6)
        if k == 0:
            noise.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) + b"\n")
        elif k == 1:
            noise.append(l[: rng.randrange(40)] + b"\n")      # a copy cut in its prefix
        elif k == 2:
            noise.append(b"2026/11/25 10:00:00 [error] 9#9: *1 ModSecurity: Access denied with code 403, "
                         b"client: 10.0.0.1, server: x, request: \"GET /upstream HTTP/1.1\"\n")
    noise.insert(len(noise) // 2, b"2026/11/25 10:00:00 [error] 1#1: " + b"upstream " * 400_000 + b"\n")
    log = tmp_path / "noisy.log"
    log.write_bytes(b"".join(noise))
    r = cli(log)
    out = r.stdout.decode()
    assert re.search(r"^connect_refused +60 +100\.0% +40 ", out, re.M), out
    m = re.search(r"skipped: ([\d,]+) lines not in nginx's error-log format, (\d+) longer than 64 KiB, "
                  r"([\d,]+) upstream lines unreadable", out)
    assert m and int(m.group(1).replace(",", "")) > 0 and m.group(2) == "1", out
    # nothing but bytes
    r = cli(stdin=bytes(rng.randrange(256) for _ in range(1 << 20)))
    assert "0 failed requests" in r.stdout.decode()


def test_memory_is_flat_in_the_log_size(failing_log, tmp_path):
    """Peak RSS over a log 16 times longer stays within a few MiB: the open
    requests and the tallies are bounded, the reader keeps one chunk."""
    unit = failing_log * 50
    small, large = tmp_path / "small.log", tmp_path / "large.log"
    small.write_bytes(unit)
    with open(large, "wb") as f:
        for _ in range(16):
            f.write(unit)

    def peak_kib(path):
        r = subprocess.run(["/usr/bin/time", "-f", "%M", CLI, "summary", str(path)],
                           capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return int(r.stderr.decode().split()[-1])

    a, b = peak_kib(small), peak_kib(large)
    print(f"peak RSS: {a} KiB over {small.stat().st_size} bytes, {b} KiB over {large.stat().st_size} bytes")
    assert b < a + 4096, (a, b)


def test_the_readme_s_install_command(tmp_path):
    """`cargo install --path cli`, as the README says (into a root of the
    test's own), gives a working upstream-cause."""
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("no cargo here")
    readme = (ROOT / "README.md").read_text()
    assert "cargo install --path cli" in readme
    r = subprocess.run([cargo, "install", "--locked", "--offline", "--path", str(ROOT / "cli"), "--root", str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0 and "--offline" in r.stderr:
        pytest.skip("the crates are not in cargo's cache here: " + r.stderr[-300:])
    assert r.returncode == 0, r.stderr[-3000:]
    out = subprocess.run([tmp_path / "bin/upstream-cause", "--version"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "upstream-cause 0.1.0"


# --- agreement with the module, over the whole suite's traffic -------------

# What nginx's text cannot tell, by (the module's cause, the text's):
EXPLAINED = {
    # nginx logs "no live upstreams" for a saturated group and a dead one
    ("max_conns_reached", "no_live_upstreams"),
    # a reset read before the request body was all sent: nginx's text says
    # "while reading response header" (its read event came first); only the
    # module sees that the body was not sent (test_taxonomy's send_failed)
    ("send_failed", "upstream_reset"),
}
# nginx logs a client leaving at info, and stream's silent close and idle
# timeout: not in a log at notice and above
INFO_ONLY = {"client_closed", "upstream_closed_silent", "idle_timeout"}
LEVELS = ["debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"]
SUITE_KEYS = dict(pid="pid", connection="connection", method="method", uri="uri",
                  list="upstream_cause_list", status="upstream_status")
# stream's access log (conftest.STREAM_FORMAT): a session is its connection
# (`status`: an attempt was made)
SUITE_STREAM_KEYS = dict(pid="pid", connection="connection", list="upstream_cause_list", status="upstream_addr")


def entries(path):
    text = path.read_text(errors="replace")
    return [json.loads(l) for l in text[:text.rfind("\n") + 1].splitlines() if l.strip()]


def listed_failures(entry, k):
    """The failed attempts of $upstream_cause_list, in order."""
    return [c for c in re.split(r", | : ", entry[k["list"]]) if c and c != "-"]


@pytest.mark.after_suite
def test_the_text_alone_agrees_with_the_module_attempt_by_attempt():
    logs = [(n.prefix.parent.name, n.error_log, n.access_log, n.error_level, SUITE_KEYS,
             n.stream_log, SUITE_STREAM_KEYS, n.error_log)
            for n in conftest.INSTANCES
            if n.error_log.exists() and n.access_log.exists() and not getattr(n, "rotated", False)]
    if len(logs) < 50:
        pytest.skip(f"the agreement check reads the whole suite's logs ({len(logs)} nginx ran)")
    logs += [l for l in conftest.OTHER_LOGS if l[1].exists() and l[2].exists()]
    compared = agree = sessions = 0
    explained, unexplained, not_in_text, not_in_log = Counter(), Counter(), Counter(), Counter()
    for name, error_log, access_log, level, k, stream_log, sk, stream_error_log in logs:
        module = defaultdict(list)
        off = set()
        for e in entries(access_log):
            if k["pid"] in e:
                key = (e[k["pid"]], e[k["connection"]], e[k["method"]], e[k["uri"]])
                module[key] += listed_failures(e, k)
                if not e[k["list"]] and e[k["status"]] not in ("", "-"):
                    off.add(key)     # attempts made where upstream_cause is off
        # stream's sessions (tests/test_stream*.py, the storm's), each its connection
        for e in entries(stream_log) if stream_log.exists() else []:
            key = (e[sk["pid"]], e[sk["connection"]], "stream", "")
            module[key] += listed_failures(e, sk)
            if not e[sk["list"]] and e[sk["status"]] not in ("", "-"):
                off.add(key)
        text = without_module_lines(error_log.read_bytes())
        if stream_error_log != error_log and stream_error_log.exists():
            text += without_module_lines(stream_error_log.read_bytes())
        offline = defaultdict(list)
        for r in requests_of(stdin=text):
            causes = [f["cause"] for f in r["failures"]]
            if r["subrequest"] is not None:
                # an SSI or auth_request subrequest's: the access log has the main request
                not_in_log["subrequests' attempts"] += len(causes)
                continue
            method, _, rest = r["request"].partition(" ")
            uri = rest.rsplit(" ", 1)[0]
            if r["stream"] is not None:
                method, uri = "stream", ""
                sessions += len(causes)
            key = (str(r["pid"]), str(r["connection"]), method, uri)
            if key in off and not module[key]:
                not_in_log["attempts where upstream_cause is off"] += len(causes)
                continue
            offline[key] += causes
        above = LEVELS.index(level.split("_")[0])
        for key, causes in module.items():
            # an upstream's own 5xx leaves no line
            seen = [c for c in causes if c != "via_upstream"]
            not_in_text["via_upstream"] += len(causes) - len(seen)
            got = offline.pop(key, [])
            i = 0
            for c in seen:
                t = got[i] if i < len(got) else None
                if t != c and (above > LEVELS.index("error") or (c in INFO_ONLY and above > 1)):
                    # a line nginx wrote below the log's level: nothing to read
                    not_in_text[f"{c} (error_log at {level})"] += 1
                    continue
                compared += 1
                i += 1
                if t == c:
                    agree += 1
                elif (c, t) in EXPLAINED:
                    explained[(c, t)] += 1
                else:
                    unexplained[(c, t, name, key[3])] += 1
            for t in got[i:]:
                unexplained[(None, t, name, key[3])] += 1
        for key, got in offline.items():
            for t in got:
                unexplained[(None, t, name, key[3])] += 1
    report = [f"agreement over {len(logs)} nginx runs: {compared} failed attempts compared ({sessions} of stream "
              f"sessions), {agree} agree"]
    report += [f"  explained: module {c}, text {t}: {n}" for (c, t), n in sorted(explained.items())]
    report += [f"  not in nginx's text: {c}: {n}" for c, n in sorted(not_in_text.items())]
    report += [f"  not in the module's list: {c}: {n}" for c, n in sorted(not_in_log.items())]
    report += [f"  DISAGREE module {x[0]} text {x[1]} ({x[2]} {x[3]}): {n}"
               for x, n in sorted(unexplained.items(), key=str)]
    print("\n" + "\n".join(report))
    # for docs/testing.md, where the checkout is writable (not in the sid
    # suite's container)
    try:
        (ROOT / ".work").mkdir(exist_ok=True)
        (ROOT / ".work/agreement.txt").write_text("\n".join(report) + "\n")
    except OSError:
        pass
    assert compared >= 300 and sessions >= 30
    assert not unexplained
