"""Every cause code of docs/reference.md, produced by a real nginx for a real reason.
(The seed pair, the fault upstream's header errors and via_upstream have
their own files: test_seed_pair.py, test_faults.py, test_reporting.py.)"""
import http.client
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import dead_port, free_port, REFUSED_DETAIL

MB = 1024 * 1024


def failure(nginx, uri, status, cause, method="GET", body=None, headers=None):
    """Sends one request; checks status, header, variables and the line;
    returns the access-log entry."""
    r = nginx.get(uri, method=method, body=body, headers=headers)
    e, _ = nginx.check_failure(uri, r, status, cause, attempts=None)
    return e


# --- connect ---------------------------------------------------------------

def test_connect_error_when_proxy_bind_fails(nginx_factory):
    """bind() to an address:port already in use fails before any connect:
    nginx answers 500, and says so at crit."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        busy = held.getsockname()[1]
        nginx = nginx_factory(f"""
        upstream_cause_header X-Upstream-Cause;
        server {{ listen 127.0.0.1:@PORT@;
            location / {{ proxy_bind 127.0.0.1:{busy}; proxy_pass http://127.0.0.1:{dead_port()}; }}
        }}""")
        e = failure(nginx, "/x", 500, "connect_error")
    assert e["upstream_cause_detail"] == \
        f"bind(127.0.0.1:{busy}) failed (98: Address already in use) while connecting to upstream"
    assert nginx.wait_error(r"\[crit\] .*bind\(127\.0\.0\.1:\d+\) failed \(98")


def test_connect_error_when_worker_connections_run_out(nginx_factory):
    """A worker with 3 connections: its channel to the master, the
    listener and the client's take them all, so the upstream's gets none.
    nginx answers 500, and says so at alert."""
    nginx = nginx_factory(f"""
        upstream_cause_header X-Upstream-Cause;
        server {{ listen 127.0.0.1:@PORT@;
            location / {{ proxy_pass http://127.0.0.1:{dead_port()}; }}
        }}""", connections=3)
    e = failure(nginx, "/x", 500, "connect_error")
    assert e["upstream_cause_detail"] == "3 worker_connections are not enough while connecting to upstream"
    line = nginx.wait_error(r"\[error\] .*upstream_cause=connect_error ")[0]
    assert "hint=\"nginx's worker had no free connection for the upstream" in line, line


@pytest.fixture
def full_backlog():
    """A listener that never accepts, its queue full: SYNs are dropped."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    yield port
    for c in fillers:
        c.close()
    srv.close()


def test_connect_timeout(nginx_factory, full_backlog):
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ proxy_connect_timeout 1s; proxy_pass http://127.0.0.1:{full_backlog}; }}
    }}""")
    e = failure(nginx, "/x", 504, "connect_timeout")
    assert e["upstream_cause_detail"] == "upstream timed out (110: Connection timed out) while connecting to upstream"


@pytest.fixture
def vanishing_host():
    """A host of the test's own, in a network namespace behind a veth pair,
    whose interface then goes down: ARP gets no answer."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.fail("needs root and iproute2 (scripts/test.sh installs it)")
    ns, out, inside = f"uc{os.getpid()}", f"ucv{os.getpid()}", f"ucp{os.getpid()}"
    sh = lambda *a: subprocess.run(["ip", *a], check=True, capture_output=True)  # noqa: E731
    sh("netns", "add", ns)
    try:
        sh("link", "add", out, "type", "veth", "peer", "name", inside)
        sh("link", "set", inside, "netns", ns)
        sh("addr", "add", "10.231.0.1/24", "dev", out)
        sh("link", "set", out, "up")
        sh("-n", ns, "addr", "add", "10.231.0.2/24", "dev", inside)
        sh("-n", ns, "link", "set", inside, "down")
        yield "10.231.0.2"
    finally:
        subprocess.run(["ip", "link", "del", out], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_connect_unreachable(nginx_factory, vanishing_host):
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ proxy_connect_timeout 20s; proxy_pass http://{vanishing_host}:9001; }}
    }}""")
    e = failure(nginx, "/x", 502, "connect_unreachable")
    assert e["upstream_cause_detail"] == "connect() failed (113: No route to host) while connecting to upstream"


# --- TLS -------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    for name in ("server", "other"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN={name}.test", "-keyout", str(d / f"{name}.key"),
                        "-out", str(d / f"{name}.crt")], check=True, capture_output=True)
    return d


def serving(handle):
    """A loopback TCP server whose thread calls `handle(conn)` for each
    connection; yields its port, stops (bounded) after the test."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    handle(conn)
                except (OSError, ssl.SSLError):
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    srv.close()


@pytest.fixture
def tls_server(certs):
    """A TLS 1.3-only HTTPS server answering 200 (standard library)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(certs / "server.crt", certs / "server.key")

    def handle(conn):
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")

    yield from serving(handle)


@pytest.fixture
def plain_talker():
    """Answers every connection with plain HTTP, whatever it was sent."""

    def handle(conn):
        conn.recv(4096)  # the ClientHello: read it, so the close is a FIN
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        time.sleep(0.05)

    yield from serving(handle)


def tls_nginx(nginx_factory, port, certs, faults):
    return nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        proxy_ssl_protocols TLSv1.2 TLSv1.3;  # 1.22's default has no TLSv1.3
        location /ok/ {{ proxy_pass https://127.0.0.1:{port}/; }}
        location /plain/ {{ proxy_pass https://127.0.0.1:{faults}/; }}
        location /old/ {{ proxy_ssl_protocols TLSv1.2; proxy_pass https://127.0.0.1:{port}/; }}
        location /verify/ {{ proxy_ssl_verify on; proxy_ssl_name server.test;
                             proxy_ssl_trusted_certificate {certs}/other.crt; proxy_pass https://127.0.0.1:{port}/; }}
    }}""")


def test_tls_handshake_failed_and_verify_failed(nginx_factory, tls_server, certs, plain_talker):
    nginx = tls_nginx(nginx_factory, tls_server, certs, plain_talker)
    assert nginx.get("/ok/x").status == 200
    e = failure(nginx, "/plain/x", 502, "tls_handshake_failed")
    assert e["upstream_cause_detail"].startswith("SSL_do_handshake() failed (SSL: ")
    assert e["upstream_cause_detail"].endswith(" while SSL handshaking to upstream")
    e = failure(nginx, "/old/x", 502, "tls_handshake_failed")
    assert "protocol version" in e["upstream_cause_detail"], e
    e = failure(nginx, "/verify/x", 502, "tls_verify_failed")
    assert e["upstream_cause_detail"].startswith("upstream SSL certificate verify error: (18:self")


# --- sending ----------------------------------------------------------------

@pytest.fixture
def body_nginx(nginx_factory, faults):
    return nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    client_max_body_size 64m;
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ proxy_send_timeout 1s; proxy_pass http://127.0.0.1:{faults}; }}
    }}""")


def test_send_failed(body_nginx):
    e = failure(body_nginx, "/reset", 502, "send_failed", method="POST", body=b"x" * (16 * MB))
    # nginx handles the RST on its write event or, first, on its read event
    assert e["upstream_cause_detail"] in (
        "writev() failed (104: Connection reset by peer) while sending request to upstream",
        "writev() failed (32: Broken pipe) while sending request to upstream",
        "recv() failed (104: Connection reset by peer) while reading response header from upstream",
    ), e


def test_send_timeout(body_nginx):
    e = failure(body_nginx, "/stall-read", 504, "send_timeout", method="POST", body=b"x" * (16 * MB))
    assert e["upstream_cause_detail"] == \
        "upstream timed out (110: Connection timed out) while sending request to upstream"


# --- balancer state, resolver, variables ---------------------------------------

def test_no_live_upstreams(nginx_factory):
    a, b = dead_port(), dead_port()
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    upstream all_down {{ server 127.0.0.1:{a} down; }}
    upstream failing {{ server 127.0.0.1:{a} max_fails=1 fail_timeout=60s;
                       server 127.0.0.1:{b} max_fails=1 fail_timeout=60s; }}
    server {{ listen 127.0.0.1:@PORT@;
        location /down/ {{ proxy_pass http://all_down/; }}
        location /failing/ {{ proxy_pass http://failing/; }}
    }}""")
    e = failure(nginx, "/down/x", 502, "no_live_upstreams")
    assert e["upstream_cause_detail"] == "no live upstreams while connecting to upstream"
    # both peers fail once, then none is left to try
    first = failure(nginx, "/failing/1", 502, "connect_refused")
    assert first["upstream_cause_list"] == "connect_refused, connect_refused"
    e = failure(nginx, "/failing/2", 502, "no_live_upstreams")
    assert e["upstream_cause_list"] == "no_live_upstreams"


@pytest.fixture
def nxdomain_resolver():
    """A DNS server on 127.0.0.1 that answers NXDOMAIN to every query."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                q, addr = sock.recvfrom(512)
            except OSError:
                continue
            if len(q) < 12:
                continue
            qid, flags = struct.unpack("!HH", q[:4])
            # response, opcode and RD copied, RA, RCODE 3; the question echoed
            rflags = 0x8000 | (flags & 0x7900) | 0x0080 | 3
            sock.sendto(struct.pack("!HHHHHH", qid, rflags, 1, 0, 0, 0) + q[12:], addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join(5)
    sock.close()


def test_resolve_failed(nginx_factory, nxdomain_resolver, faults):
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        location /nx/ {{ resolver 127.0.0.1:{nxdomain_resolver} ipv6=off; resolver_timeout 5s;
                         set $backend nosuch.test; proxy_pass http://$backend:{faults}; }}
        location /none/ {{ set $backend nosuch.test; proxy_pass http://$backend:{faults}; }}
    }}""")
    e = failure(nginx, "/nx/x", 502, "resolve_failed")
    assert e["upstream_cause_detail"] == "nosuch.test could not be resolved (3: Host not found)"
    assert e["upstream_cause_list"] == "resolve_failed"
    (line,) = nginx.cause_lines("/nx/x")
    assert "attempts=0 peer=- " in line
    e = failure(nginx, "/none/x", 502, "resolve_failed")
    assert e["upstream_cause_detail"] == "no resolver defined to resolve nosuch.test"


def test_variable_proxy_pass_to_an_address(nginx_factory, faults):
    """`proxy_pass http://$var` to an address: no upstream block, no
    peer.init: the attempts are seen through the log tap alone."""
    refused = dead_port()
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        location /gone/ {{ set $b 127.0.0.1:{refused}; proxy_pass http://$b; }}
        location /f/ {{ set $b 127.0.0.1:{faults}; rewrite ^/f(.*)$ $1 break; proxy_pass http://$b; }}
    }}""")
    e = failure(nginx, "/gone/x", 502, "connect_refused")
    assert e["upstream_cause_detail"] == REFUSED_DETAIL
    failure(nginx, "/f/close", 502, "upstream_prematurely_closed")
    r = nginx.get("/f/ok")
    assert r.status == 200 and r.header("X-Upstream-Cause") is None
    assert nginx.access_for("/f/ok")[0]["upstream_cause_list"] == "-"


# --- after the header, and the client --------------------------------------------

def test_response_truncated_chunked(nginx_factory, faults):
    nginx = nginx_factory(f"""
    server {{ listen 127.0.0.1:@PORT@; location / {{ proxy_pass http://127.0.0.1:{faults}; }} }}""")
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=15)
    try:
        conn.request("GET", "/truncate-chunked")
        r = conn.getresponse()
        assert r.status == 200
        with pytest.raises(http.client.IncompleteRead):
            r.read()
    finally:
        conn.close()
    (e,) = nginx.access_for("/truncate-chunked")
    assert e["upstream_cause"] == "response_truncated"
    assert e["upstream_cause_detail"] == "upstream prematurely closed connection while reading upstream"


def test_client_closed(nginx_factory, faults, tmp_path):
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ proxy_read_timeout 30s; proxy_pass http://127.0.0.1:{faults}; }}
    }}""")
    client = socket.create_connection(("127.0.0.1", nginx.port))
    client.sendall(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")
    log = tmp_path / "faults.log"
    deadline = time.monotonic() + 10
    while "request /silent" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    client.close()
    (e,) = nginx.access_for("/silent")
    assert e["status"] == "499"
    assert e["upstream_cause"] == "client_closed"
    (line,) = nginx.cause_lines("/silent")
    assert "upstream_cause=client_closed status=499 " in line


# --- keepalive reuse --------------------------------------------------------------

def test_failure_on_a_reused_keepalive_connection(nginx_factory, faults):
    """The upstream closes a kept-alive connection just as nginx reuses it:
    a GET is retried on a new connection, a POST gets the 502, marked."""
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    upstream ka {{ server 127.0.0.1:{faults}; keepalive 2; }}
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ proxy_pass http://ka; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}""")
    assert nginx.get("/ka?1").status == 200  # the connection is now cached
    r = nginx.get("/ka?2")
    assert r.status == 200 and r.header("X-Upstream-Cause") is None
    (e,) = nginx.access_for("/ka?2")
    assert e["upstream_status"] == "502, 200"
    assert e["upstream_cause_list"] == "upstream_prematurely_closed, -"
    # the retry's connection is cached in turn: a POST on it is not retried
    r = nginx.get("/ka?3", method="POST", body=b"x")
    assert r.status == 502 and r.header("X-Upstream-Cause") == "upstream_prematurely_closed"
    (e,) = nginx.access_for("/ka?3")
    assert e["upstream_cause_detail"] == ("upstream prematurely closed connection while reading response header "
                                          "from upstream (reused keepalive connection)")
