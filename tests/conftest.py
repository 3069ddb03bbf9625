"""Fixtures: a real nginx with the module loaded, a real Go net/http service
and the fault upstream, all on 127.0.0.1 free ports.

Every wait is bounded; nothing sleeps to synchronise where a port or a log
line can be waited for instead.
"""
import glob
import http.client
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# PyPI packages Debian does not ship (scripts/lib.sh: need_python_libs)
if (ROOT / ".work/pylib").is_dir():
    sys.path.append(str(ROOT / ".work/pylib"))
NGINX_BIN = os.environ.get("NGINX_BIN", str(ROOT / ".work/bin/nginx"))
MODULE = os.environ.get("UPSTREAM_CAUSE_MODULE", str(ROOT / ".work/modules/ngx_http_upstream_cause_module.so"))
# the stream module (its own .so)
STREAM_MODULE = os.environ.get("UPSTREAM_CAUSE_STREAM_MODULE",
                               str(ROOT / ".work/modules/ngx_stream_upstream_cause_module.so"))
GO_SERVICE = os.environ.get("GO_SERVICE", str(ROOT / ".work/bin/go-service"))
# A command the nginx instances run under (scripts/memcheck.sh: valgrind),
# and how much slower it makes starting them.
NGINX_WRAPPER = shlex.split(os.environ.get("NGINX_WRAPPER", ""))
WRAPPER_SLOWDOWN = 6 if NGINX_WRAPPER else 1
FAULTS = ROOT / "docker/faults/faults.py"

def _nginx_version():
    try:
        out = subprocess.run([NGINX_BIN, "-v"], capture_output=True, text=True, timeout=10).stderr
    except OSError:
        return (0, 0, 0)
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


NGINX_VERSION = _nginx_version()
# nginx -V: how the nginx under test was configured
try:
    NGINX_CONFIGURE = subprocess.run([NGINX_BIN, "-V"], capture_output=True, text=True, timeout=10).stderr
except OSError:
    NGINX_CONFIGURE = ""
WITH_DEBUG = "--with-debug" in NGINX_CONFIGURE
# nginx's own stream module, where it is a module of its own (Debian's
# libnginx-mod-stream): loaded before ours
STREAM_CORE = (Path(NGINX_BIN).resolve().parent.parent / "lib/nginx/modules/ngx_stream_module.so"
               if "--with-stream=dynamic" in NGINX_CONFIGURE else None)
# How to accept HTTP/2 on a listener: `http2 on;` from 1.25.1, the listen
# parameter before.
HTTP2_ON = "http2 on;" if NGINX_VERSION >= (1, 25, 1) else ""
HTTP2_LISTEN = "" if NGINX_VERSION >= (1, 25, 1) else " http2"
# From 1.29.7 explicit upstream groups keep connections alive by default
# (and proxy speaks HTTP/1.1): a test that counts attempts exactly turns it
# off for its group, since a failure on a reused connection is retried.
NO_KEEPALIVE = "keepalive 0;" if NGINX_VERSION >= (1, 29, 7) else ""

# nginx's own texts, as $upstream_cause_detail and the log line carry them
REFUSED_DETAIL = "connect() failed (111: Connection refused) while connecting to upstream"
CLOSED_DETAIL = "upstream prematurely closed connection while reading response header from upstream"

JSON_FORMAT = (
    "log_format cause_json escape=json '{"
    '"status":"$status","uri":"$request_uri","method":"$request_method",'
    # which error-log lines are this request's (tests/test_cli.py's agreement check)
    '"pid":"$pid","connection":"$connection",'
    '"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",'
    '"upstream_cause":"$upstream_cause","upstream_cause_list":"$upstream_cause_list",'
    '"upstream_cause_detail":"$upstream_cause_detail"'
    "}';"
)
# stream's access log: one JSON object per session
STREAM_FORMAT = (
    "log_format stream_json escape=json '{"
    '"status":"$status","server_port":"$server_port","pid":"$pid","connection":"$connection",'
    '"bytes_received":"$bytes_received","bytes_sent":"$bytes_sent",'
    '"upstream_addr":"$upstream_addr","upstream_bytes_received":"$upstream_bytes_received",'
    '"upstream_cause":"$upstream_cause","upstream_cause_list":"$upstream_cause_list",'
    '"upstream_cause_detail":"$upstream_cause_detail"'
    "}';"
)
PLAIN_FORMAT = (
    "log_format cause_plain '$status $request_uri "
    'cause=$upstream_cause list="$upstream_cause_list" detail="$upstream_cause_detail"\';'
)


def pytest_configure(config):
    config.addinivalue_line("markers", "after_suite: runs after every other test (it reads their logs)")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("after_suite") is not None)


def _ephemeral_low():
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports handed out by free_port in this process: never handed out twice.
_GIVEN = set()
_PORTS = random.Random()


def free_port():
    """A loopback port free now, for a server that binds it next. It is taken
    below the kernel's ephemeral range, which the kernel hands to outgoing
    connections: between this call and the server's bind(), a connection
    (the tests', nginx's own to its upstreams, a download beside the
    tests) could otherwise take it, and the server fail with EADDRINUSE."""
    low = _ephemeral_low()
    for _ in range(200 if low > 10000 else 0):
        port = _PORTS.randrange(10000, low)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Sockets bound (never listening) for the whole session: their ports refuse
# connects, and no later free_port() (nginx's own listen port among them) can
# be given one of them. A port merely found free once could become nginx's
# listen port later in the test, and a request "to a dead port" would then
# be proxied to nginx itself, recursively.
_DEAD = []


def dead_port():
    """A loopback port nothing listens on (connects are refused), reserved
    for the rest of the session."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _DEAD.append(s)
    return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_closed(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except ConnectionRefusedError:
            return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"127.0.0.1:{port} still accepts after {timeout}s")


def stop(proc, sig=signal.SIGTERM, timeout=10.0):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if len(vals) == 1 else (vals or None)


def request(port, path, method="GET", headers=None, body=None, timeout=15):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


# Every nginx the session made: tests/test_cli.py reads their logs after
# the rest of the suite has run. OTHER_LOGS: the logs of the nginx that
# tests run on their own (the storm's), as (name, error log, access log,
# error_log level, the access log's keys for pid, connection, method, uri,
# $upstream_cause_list and $upstream_status, stream's access log, its keys
# for pid, connection, $upstream_cause_list and $upstream_addr, and stream's
# error log).
INSTANCES = []
OTHER_LOGS = []


class Nginx:
    """One nginx instance (master + 1 worker, foreground) in its own prefix."""

    def __init__(self, prefix: Path, http_body: str, error_level="info", main_extra="", workers=1,
                 binary=None, module=None, stream_body=None, connections=256):
        INSTANCES.append(self)
        # another nginx, or another build of the module (tests/test_build.py)
        self.binary = binary or NGINX_BIN
        self.error_level = error_level
        self.prefix = prefix
        self.port = free_port()
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        (prefix / "html").mkdir(exist_ok=True)
        (prefix / "html/50x.html").write_text("custom 50x page\n")
        self.error_log = prefix / "logs/error.log"
        self.access_log = prefix / "logs/access.log"
        self.plain_log = prefix / "logs/plain.log"
        self.stream_log = prefix / "logs/stream.log"
        self.conf = prefix / "nginx.conf"
        body = http_body.replace("@PORT@", str(self.port))
        # the stream module beside the HTTP one, with a stream block
        stream = ""
        if stream_body is not None:
            stream = (
                (f"load_module {STREAM_CORE};\n" if STREAM_CORE else "")
                + f"load_module {STREAM_MODULE};\n"
            )
        self.conf.write_text(
            f"load_module {module or MODULE};\n"
            + stream +
            f"daemon off;\nmaster_process on;\nworker_processes {workers};\n"
            # pytest's tmp dirs are private to their owner: workers run as that owner
            + ("user root;\n" if os.geteuid() == 0 else "") +
            f"pid {prefix}/logs/nginx.pid;\n"
            f"error_log {self.error_log} {error_level};\n"
            f"{main_extra}\n"
            f"events {{ worker_connections {connections}; }}\n"
            "http {\n"
            f"  {JSON_FORMAT}\n  {PLAIN_FORMAT}\n"
            f"  access_log {self.access_log} cause_json;\n"
            f"  access_log {self.plain_log} cause_plain;\n"
            f"  client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;\n"
            f"{body}\n"
            "}\n"
            + ("" if stream_body is None else
               f"stream {{\n  {STREAM_FORMAT}\n  access_log {self.stream_log} stream_json;\n{stream_body}\n}}\n")
        )
        (prefix / "tmp").mkdir(exist_ok=True)
        self.proc = None

    def test_config(self):
        return subprocess.run(
            [self.binary, "-t", "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log)],
            capture_output=True, text=True, timeout=30,
        )

    def start(self):
        self.stderr = open(self.prefix / "logs/stderr.log", "w")
        self.proc = subprocess.Popen(
            NGINX_WRAPPER + [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log)],
            stdout=self.stderr, stderr=subprocess.STDOUT,
        )
        wait_port(self.port, timeout=10.0 * WRAPPER_SLOWDOWN, proc=self.proc)
        return self

    def stop(self):
        if self.proc is not None:
            stop(self.proc, signal.SIGQUIT, timeout=10.0 * WRAPPER_SLOWDOWN)
            self.stderr.close()

    def get(self, path, **kw):
        return request(self.port, path, **kw)

    # --- logs -------------------------------------------------------------

    def error_lines(self):
        return self.error_log.read_text(errors="replace").splitlines() if self.error_log.exists() else []

    def access_entries(self):
        if not self.access_log.exists():
            return []
        text = self.access_log.read_text()
        # a line nginx is still writing has no newline yet: not an entry
        return [json.loads(l) for l in text[:text.rfind("\n") + 1].splitlines() if l.strip()]

    def stream_entries(self, port=None):
        """The stream access log's entries (of sessions to listener `port`)."""
        if not self.stream_log.exists():
            return []
        text = self.stream_log.read_text()
        entries = [json.loads(l) for l in text[:text.rfind("\n") + 1].splitlines() if l.strip()]
        return [e for e in entries if port is None or e["server_port"] == str(port)]

    def stream_for(self, port, count=1, timeout=10.0):
        """The stream access-log entries of sessions to `port`, waiting
        (bounded) for `count`."""
        deadline = time.monotonic() + timeout * WRAPPER_SLOWDOWN
        while True:
            found = self.stream_entries(port)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{count} stream sessions on {port} expected, got {found}"
                return found
            time.sleep(0.02)

    def access_for(self, uri, count=1, timeout=10.0):
        """The access-log entries of `uri`, waiting (bounded) for `count`."""
        deadline = time.monotonic() + timeout * WRAPPER_SLOWDOWN
        while True:
            found = [e for e in self.access_entries() if e["uri"] == uri]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{count} access-log entries for {uri} expected, got {found}"
                return found
            time.sleep(0.02)

    def wait_error(self, pattern, timeout=10.0):
        deadline = time.monotonic() + timeout * WRAPPER_SLOWDOWN
        rx = re.compile(pattern)
        while True:
            hits = [l for l in self.error_lines() if rx.search(l)]
            if hits or time.monotonic() > deadline:
                assert hits, f"no error-log line matches {pattern!r}:\n" + "\n".join(self.error_lines()[-20:])
                return hits
            time.sleep(0.02)

    def cause_lines(self, uri=None):
        lines = [l for l in self.error_lines() if "upstream_cause=" in l]
        if uri is not None:
            lines = [l for l in lines if f'request: "' in l and f" {uri} HTTP/" in l]
        return lines

    def check_failure(self, uri, r, status, cause, listed=None, detail=None, attempts=1,
                      header="X-Upstream-Cause"):
        """What a user sees of one failed request `r` to `uri`: its status,
        the cause header, the access-log variables and the one enriched
        line. `listed`, `detail` and `attempts` are checked unless None.
        Returns the access-log entry and the line."""
        assert r.status == status, (uri, r.status, r.body[:200])
        assert r.header(header) == cause, (uri, r.headers)
        (e,) = self.access_for(uri)
        assert e["upstream_cause"] == cause, e
        if listed is not None:
            assert e["upstream_cause_list"] == listed, e
        if detail is not None:
            assert e["upstream_cause_detail"] == detail, e
        (line,) = self.cause_lines(uri)
        start = f"upstream_cause={cause} status={status} "
        if attempts is not None:
            start += f"attempts={attempts} "
        assert start in line, line
        return e, line


@pytest.fixture
def nginx_factory(tmp_path):
    started = []

    def make(http_body, **kw):
        n = Nginx(tmp_path / f"nginx{len(started)}", http_body, **kw)
        started.append(n)
        return n.start()

    yield make
    stop_all(started)


def stop_all(instances):
    """Stops the nginx instances, then fails if a worker crashed or the
    module reported an internal error in any of them."""
    for n in instances:
        n.stop()
    for n in instances:
        crashes = [l for l in n.error_lines() if "exited on signal" in l or "panicked at" in l
                   or "upstream_cause: internal error" in l]
        assert not crashes, "worker crashed or alerted:\n" + "\n".join(crashes)


class GoService:
    def __init__(self, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self.start()

    def start(self):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [GO_SERVICE], env={**os.environ, "LISTEN": f"127.0.0.1:{self.port}"},
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_port(self.port, proc=self.proc)

    def output(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        stop(self.proc)
        self.log.close()


@pytest.fixture
def go_service(tmp_path):
    svc = GoService(tmp_path / "go-service.log")
    yield svc
    svc.stop()


@pytest.fixture
def faults(tmp_path):
    port = free_port()
    log = open(tmp_path / "faults.log", "w")
    proc = subprocess.Popen([sys.executable, str(FAULTS), f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, proc=proc)
    yield port
    stop(proc)
    log.close()


STREAM_FAULTS = ROOT / "docker/faults/stream_faults.py"


@pytest.fixture
def stream_faults(tmp_path):
    """Stream fault backends (docker/faults/stream_faults.py), one port per
    mode: close, reset, silent, echo, reset-on-signal (TCP), udp-silent,
    udp-echo; `ports["proc"]` is the server's process, `ports["log"]` its
    output."""
    ports = {m: free_port() for m in ("close", "reset", "silent", "echo", "reset-on-signal", "udp-silent", "udp-echo")}
    log = open(tmp_path / "stream-faults.log", "w")
    proc = subprocess.Popen([sys.executable, str(STREAM_FAULTS), *[f"{m}@127.0.0.1:{p}" for m, p in ports.items()]],
                            stdout=log, stderr=subprocess.STDOUT)
    for m, port in ports.items():
        if not m.startswith("udp-") and m != "reset-on-signal":
            wait_port(port, proc=proc)
    deadline = time.monotonic() + 10
    while "ready" not in (tmp_path / "stream-faults.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    yield {**ports, "proc": proc, "log": tmp_path / "stream-faults.log"}
    stop(proc)
    log.close()


@pytest.fixture
def raw_faults(tmp_path):
    """Listeners that close, or answer an invalid header, whatever the
    protocol: {"close": port, "invalid": port}."""
    ports = {"close": free_port(), "invalid": free_port()}
    log = open(tmp_path / "raw-faults.log", "w")
    extra = [f"{mode}@127.0.0.1:{port}" for mode, port in ports.items()]
    proc = subprocess.Popen([sys.executable, str(FAULTS), f"127.0.0.1:{free_port()}", *extra],
                            stdout=log, stderr=subprocess.STDOUT)
    for port in ports.values():
        wait_port(port, proc=proc)
    yield ports
    stop(proc)
    log.close()


# --- PHP-FPM (tests/test_phpfpm.py and the storm) ----------------------------

def find_php_fpm():
    """PHP_FPM, or the newest /usr/sbin/php-fpm<version> (Debian names the
    binary after the PHP version: php-fpm8.2 on bookworm, php-fpm8.4 on trixie)."""
    if os.environ.get("PHP_FPM"):
        return os.environ["PHP_FPM"]

    def version(path):
        return [int(x) for x in re.findall(r"\d+", os.path.basename(path))]

    found = [p for p in glob.glob("/usr/sbin/php-fpm*") if os.access(p, os.X_OK)]
    return max(found, key=version) if found else None


def fpm_conf(root, log, sock, mode="0666", backlog=0, children=1):
    """A php-fpm configuration: one pool on the unix socket `sock`, `pm =
    static` with `children` children. As root the pool runs as root (with
    php-fpm's -R: the tests' tmp dirs are private to their owner); as
    another user, user/group are not allowed and the pool runs as that user."""
    owner = "user = root\ngroup = root\nlisten.owner = root\nlisten.group = root\n" if os.geteuid() == 0 else ""
    return ("[global]\n"
            f"pid = {root}/fpm.pid\n"
            f"error_log = {log}\n"
            "daemonize = no\n"
            "\n[www]\n"
            f"{owner}"
            f"listen = {sock}\n"
            f"listen.mode = {mode}\n"
            f"listen.backlog = {backlog}\n"
            "pm = static\n"
            f"pm.max_children = {children}\n"
            "catch_workers_output = yes\n")


def fastcgi_params(docroot, script="$fastcgi_script_name", indent=8):
    """The fastcgi_param lines PHP needs, the script being `docroot` +
    `script` (an nginx expression starting with /)."""
    lines = [("SCRIPT_FILENAME", f"{docroot}{script}"), ("SCRIPT_NAME", script),
             ("REQUEST_METHOD", "$request_method"), ("QUERY_STRING", "$query_string"),
             ("REQUEST_URI", "$request_uri"), ("CONTENT_TYPE", "$content_type"),
             ("CONTENT_LENGTH", "$content_length"), ("SERVER_PROTOCOL", "$server_protocol"),
             ("GATEWAY_INTERFACE", "CGI/1.1"), ("REMOTE_ADDR", "$remote_addr"),
             ("SERVER_NAME", "$server_name"), ("SERVER_PORT", "$server_port")]
    return "\n".join(f"{' ' * indent}fastcgi_param {k:17} {v};" for k, v in lines)

