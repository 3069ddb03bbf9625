"""HTTP/2 and gRPC upstreams that fail the HTTP/2 way: a stream reset, a
GOAWAY, a stream or connection closed before the response header, and a real
gRPC server stopped in the middle of a call.

The fault upstream is docker/faults/h2faults.py (cleartext HTTP/2 with prior
knowledge, as grpc_pass and `proxy_http_version 2` speak it); the gRPC
server is tests/grpc_server.py (python3-grpcio). Both need Debian packages:
python3-hpack and python3-grpcio.
"""
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import CLOSED_DETAIL, NGINX_BIN, NGINX_VERSION, ROOT, free_port, stop, wait_port

H2FAULTS = ROOT / "docker/faults/h2faults.py"
GRPC_SERVER = ROOT / "tests/grpc_server.py"

WHILE = " while reading response header from upstream"

# From 1.29.0 ("Upstream: early hints support", 662c1dd2a) grpc_pass accepts
# a 103 and says "upstream prematurely closed stream" when the stream ends
# with it; before, any 1xx is "upstream sent unexpected :status".
EARLY_HINTS = (1, 29, 0)
# `proxy_http_version 2` (ngx_http_proxy_v2_module, "Proxy: added HTTP/2
# proxy module", 9bf758ea4) is in nginx 1.29.4 and later, built with
# --with-http_v2_module.
PROXY_HTTP2 = (1, 29, 4)


def _has_http_v2():
    try:
        out = subprocess.run([NGINX_BIN, "-V"], capture_output=True, text=True, timeout=10).stderr
    except OSError:
        return False
    return "--with-http_v2_module" in out


def version(v):
    return ".".join(map(str, v))


if NGINX_VERSION >= EARLY_HINTS:
    EARLY_END = ("upstream_prematurely_closed", "upstream prematurely closed stream")
else:
    EARLY_END = ("invalid_header", 'upstream sent unexpected :status "103"')

# mode of h2faults.py, cause, nginx's own error text (without WHILE)
FAULTS = [
    ("refused", "stream_refused", "upstream rejected request with error 7"),
    ("internal", "upstream_reset", "upstream rejected request with error 2"),
    ("goaway", "stream_refused", "upstream sent goaway with error 0"),
    ("goaway-error", "stream_refused", "upstream sent goaway with error 2"),
    ("close", "upstream_prematurely_closed", "upstream prematurely closed connection"),
    ("early-end", *EARLY_END),
]
MODES = [f[0] for f in FAULTS] + ["ok"]

GRPC_HEADERS = {"Content-Type": "application/grpc", "TE": "trailers"}
GRPC_MESSAGE = b"\x00\x00\x00\x00\x02hi"  # uncompressed, length 2, "hi"

PROXY_H2_SKIP = pytest.mark.skipif(
    NGINX_VERSION < PROXY_HTTP2 or not _has_http_v2(),
    reason=f"proxy_http_version 2 needs nginx >= {version(PROXY_HTTP2)} built with --with-http_v2_module; "
           f"this nginx is {version(NGINX_VERSION)}")

# How each transport reaches h2faults.py: the nginx location, and the request.
#   grpc       grpc_pass, the path picks the mode (/refused/grpc)
#   grpc-call  grpc_pass to the mode's own listener, a gRPC-shaped call
#              (POST /test.Fault/refused, application/grpc, one message)
#   proxy-h2   proxy_pass + proxy_http_version 2, the path picks the mode
TRANSPORTS = ["grpc", "grpc-call", pytest.param("proxy-h2", marks=PROXY_H2_SKIP)]


class Process:
    """A helper process started with this python, its output in a file."""

    def __init__(self, log_path, *args):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, *map(str, args)], stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        return self.log_path.read_text(errors="replace")

    def wait_output(self, text, timeout=10.0):
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert time.monotonic() < deadline, f"{text!r} not in the output after {timeout}s:\n{self.output()}"
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.output()}"
            time.sleep(0.02)

    def wait_ports(self, *ports):
        try:
            for port in ports:
                wait_port(port, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}:\n{self.output()}")

    def stop(self, sig=signal.SIGTERM):
        stop(self.proc, sig)
        self.log.close()


@pytest.fixture(scope="module")
def h2faults(tmp_path_factory):
    """h2faults.py: .port picks the mode by path, .ports[mode] is a listener
    acting as `mode` whatever the path."""
    ports = {mode: free_port() for mode in MODES}
    main = free_port()
    proc = Process(tmp_path_factory.mktemp("h2faults") / "h2faults.log", H2FAULTS, f"127.0.0.1:{main}",
                   *(f"{mode}@127.0.0.1:{port}" for mode, port in ports.items()))
    proc.wait_ports(main, *ports.values())
    proc.port, proc.ports = main, ports
    yield proc
    proc.stop()


def h2_nginx(nginx_factory, h2faults, transport, mode):
    """nginx in front of h2faults.py for `transport`, and the request to send."""
    if transport == "grpc":
        location = f"grpc_pass grpc://127.0.0.1:{h2faults.port};"
        uri, kw = f"/{mode}/grpc", {}
    elif transport == "grpc-call":
        location = f"grpc_pass grpc://127.0.0.1:{h2faults.ports[mode]};"
        uri, kw = f"/test.Fault/{mode}", {"method": "POST", "headers": GRPC_HEADERS, "body": GRPC_MESSAGE}
    else:
        location = f"proxy_pass http://127.0.0.1:{h2faults.port}; proxy_http_version 2;"
        uri, kw = f"/{mode}/proxy-h2", {}
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ {location} }}
    }}""")
    return nginx, uri, kw


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode,cause,text", FAULTS, ids=[f[0] for f in FAULTS])
def test_h2_fault_is_classified(nginx_factory, h2faults, transport, mode, cause, text):
    nginx, uri, kw = h2_nginx(nginx_factory, h2faults, transport, mode)
    r = nginx.get(uri, **kw)
    h2faults.wait_output(f"request {uri} stream ")
    assert r.status == 502
    # nginx's own line, at [error]: what the module classifies
    nginx.wait_error(r"\[error\] \d+#\d+: \*\d+ " + re.escape(text + WHILE) + ", client: ")
    e, _ = nginx.check_failure(uri, r, 502, cause, listed=cause, detail=text + WHILE)
    assert e["upstream_status"] == "502"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_h2_ok(nginx_factory, h2faults, transport):
    nginx, uri, kw = h2_nginx(nginx_factory, h2faults, transport, "ok")
    r = nginx.get(uri, **kw)
    assert r.status == 200 and r.header("X-Upstream-Cause") is None
    if transport == "grpc-call":
        assert r.header("Content-Type") == "application/grpc" and r.body == b"\x00\x00\x00\x00\x02ok"
    else:
        assert r.body == b"ok\n"
    (e,) = nginx.access_for(uri)
    assert (e["upstream_status"], e["upstream_cause"], e["upstream_cause_list"], e["upstream_cause_detail"]) \
        == ("200", "", "-", "")
    assert nginx.cause_lines(uri) == []


# --- a real gRPC server stopped in the middle of a call ----------------------

@pytest.fixture
def grpc_server(tmp_path):
    try:
        import grpc  # noqa: F401  (the server runs under this same python)
    except ImportError:
        pytest.fail("python3-grpcio is missing (apt-get install python3-grpcio)")
    port = free_port()
    proc = Process(tmp_path / "grpc-server.log", GRPC_SERVER, port)
    proc.wait_ports(port)
    proc.port = port
    yield proc
    proc.stop(signal.SIGKILL)


def call_and_stop(nginx, grpc_server, sig):
    """A first call answers; then /test.Echo/Sleep, and `sig` to the server
    once the call is in its handler. Returns the response to the second."""
    r = nginx.get("/test.Echo/Ok", method="POST", headers=GRPC_HEADERS, body=GRPC_MESSAGE)
    assert r.status == 200 and r.body == GRPC_MESSAGE, (r.status, r.body)
    result = {}

    def sleep_call():
        result["r"] = nginx.get("/test.Echo/Sleep", method="POST", headers=GRPC_HEADERS, body=GRPC_MESSAGE, timeout=30)

    client = threading.Thread(target=sleep_call, daemon=True)
    client.start()
    grpc_server.wait_output("call /test.Echo/Sleep")
    grpc_server.proc.send_signal(sig)
    client.join(30)
    assert not client.is_alive(), "no answer 30 s after the gRPC server was stopped"
    return result["r"]


@pytest.fixture
def grpc_nginx(nginx_factory, grpc_server):
    return nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ grpc_pass grpc://127.0.0.1:{grpc_server.port}; }}
    }}""")


# What the kernel sends for a killed process's socket, and what nginx says.
KILLED = {
    "upstream_prematurely_closed": CLOSED_DETAIL,
    "upstream_reset": "recv() failed (104: Connection reset by peer) while reading response header from upstream",
}


def test_grpc_server_killed_mid_call(grpc_nginx, grpc_server):
    """kill -9 while the call is in its handler: the kernel closes the
    server's sockets with a FIN when grpc-core had read every byte nginx
    sent (nginx logs `upstream prematurely closed connection while reading
    response header from upstream`), with an RST when a frame of nginx's was
    still unread as the process died (`recv() failed (104: Connection reset
    by peer)`); 502 either way, and the cause follows what the kernel sent
    (CI saw the RST once, on a loaded machine)."""
    r = call_and_stop(grpc_nginx, grpc_server, signal.SIGKILL)
    assert r.status == 502
    cause = r.header("X-Upstream-Cause")
    assert cause in KILLED
    (e,) = grpc_nginx.access_for("/test.Echo/Sleep")
    assert e["upstream_status"] == "502"
    assert (e["upstream_cause"], e["upstream_cause_list"], e["upstream_cause_detail"]) == (cause, cause, KILLED[cause])
    (line,) = grpc_nginx.cause_lines("/test.Echo/Sleep")
    assert f"upstream_cause={cause} status=502 attempts=1 " in line


def test_grpc_server_stopped_mid_call(grpc_nginx, grpc_server):
    """`server.stop(0)` while the call is in its handler: grpc-core cancels
    the call with a complete trailers-only answer (HEADERS `:status 200`,
    `grpc-status: 14`, `grpc-message: Cancelling all calls`, END_STREAM).
    To nginx that is a good HTTP/2 response: it logs nothing, passes a 200
    with the gRPC status in the header ($upstream_status 200), and the gRPC
    client sees UNAVAILABLE. Not a gateway failure: no cause, no line."""
    r = call_and_stop(grpc_nginx, grpc_server, signal.SIGTERM)
    grpc_server.wait_output("stopped")
    assert r.status == 200
    assert r.header("grpc-status") == "14" and r.header("grpc-message") == "Cancelling all calls"
    assert r.header("X-Upstream-Cause") is None
    (e,) = grpc_nginx.access_for("/test.Echo/Sleep")
    assert (e["upstream_status"], e["upstream_cause"], e["upstream_cause_list"], e["upstream_cause_detail"]) \
        == ("200", "", "-", "")
    assert grpc_nginx.cause_lines("/test.Echo/Sleep") == []
    assert [l for l in grpc_nginx.error_lines() if "/test.Echo/Sleep" in l] == []
