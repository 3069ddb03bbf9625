"""The stream module (ngx_stream_upstream_cause_module) behind nginx's TCP
and UDP proxy: every way a backend fails, as a user reads it in stream's
access log (nginx's `$status`, `$upstream_addr` and our variables), in the
one enriched error-log line, and in the scrape HTTP's
`upstream_cause_metrics` serves. nginx's own `$status` is never changed:
the silent close, the reset after the connect, the idle timeout and an
ICMP-refused UDP session stay 200."""
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from conftest import REFUSED_DETAIL, WRAPPER_SLOWDOWN, dead_port, free_port, request

RESET_DETAIL = "recv() failed (104: Connection reset by peer) while proxying and reading from upstream"
UDP_REFUSED_DETAIL = "recv() failed (111: Connection refused) while proxying and reading from upstream"
UDP_TIMEOUT_DETAIL = "upstream timed out (110: Connection timed out) while proxying connection"


def tcp_session(port, payload=b"hello", timeout=10.0):
    """A client that sends `payload` and reads until nginx closes (bounded)."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            got += chunk
    return got


def udp_session(port, payload=b"hello", timeout=5.0):
    """One datagram; the answer if one comes within `timeout`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.send(payload)
        try:
            return s.recv(65536)
        except (ConnectionRefusedError, socket.timeout):
            return None


@pytest.fixture
def stream_nginx(nginx_factory, stream_faults):
    """One listener per case (`ports[name]`), the counters' zone, and HTTP's
    scrape location."""
    dead, dead2 = dead_port(), dead_port()
    ports = {name: free_port() for name in
             ("refused", "closed", "reset", "idle", "retried", "group", "ok", "udp_refused", "udp_silent",
              "udp_ok", "off")}
    n = nginx_factory("""
    upstream_cause_zone uc_http 1m;
    server {
        listen 127.0.0.1:@PORT@;
        location = /metrics { upstream_cause_metrics; }
    }""", stream_body=f"""
    upstream_cause_zone uc_stream 1m;
    proxy_timeout 1s;
    proxy_connect_timeout 2s;
    upstream two_dead {{ server 127.0.0.1:{dead}; server 127.0.0.1:{dead2}; }}
    upstream all_dead {{ zone all_dead 64k; server 127.0.0.1:{dead} max_fails=1 fail_timeout=60s;
                         server 127.0.0.1:{dead2} max_fails=1 fail_timeout=60s; }}
    server {{ listen 127.0.0.1:{ports['refused']}; proxy_pass 127.0.0.1:{dead}; }}
    server {{ listen 127.0.0.1:{ports['closed']}; proxy_pass 127.0.0.1:{stream_faults['close']}; }}
    server {{ listen 127.0.0.1:{ports['reset']}; proxy_pass 127.0.0.1:{stream_faults['reset']}; }}
    server {{ listen 127.0.0.1:{ports['idle']}; proxy_pass 127.0.0.1:{stream_faults['silent']}; }}
    server {{ listen 127.0.0.1:{ports['retried']}; proxy_pass two_dead; }}
    server {{ listen 127.0.0.1:{ports['group']}; proxy_pass all_dead; }}
    server {{ listen 127.0.0.1:{ports['ok']}; proxy_pass 127.0.0.1:{stream_faults['echo']}; }}
    server {{ listen 127.0.0.1:{ports['udp_refused']} udp; proxy_pass 127.0.0.1:{dead}; proxy_responses 1; }}
    server {{ listen 127.0.0.1:{ports['udp_silent']} udp; proxy_pass 127.0.0.1:{stream_faults['udp-silent']};
              proxy_responses 1; }}
    server {{ listen 127.0.0.1:{ports['udp_ok']} udp; proxy_pass 127.0.0.1:{stream_faults['udp-echo']};
              proxy_responses 1; }}
    server {{ listen 127.0.0.1:{ports['off']}; upstream_cause off; proxy_pass 127.0.0.1:{dead}; }}""")
    n.ports = ports
    n.dead = (dead, dead2)
    n.faults = stream_faults
    return n


def session_line(n, port, cause, level="error"):
    """The one enriched line of the session to listener `port`."""
    rx = re.compile(rf"\[{level}\] .*upstream_cause={cause} .*server: 127\.0\.0\.1:{port}, ")
    lines = [l for l in n.error_lines() if rx.search(l)]
    assert len(lines) == 1, (cause, port, [l for l in n.error_lines() if "upstream_cause=" in l][-10:])
    return lines[0]


def check(n, name, status, cause, listed, detail, peer, attempts=1, level="error"):
    """What a user reads of the one session to case `name`."""
    port = n.ports[name]
    (e,) = n.stream_for(port)
    assert (e["status"], e["upstream_cause"], e["upstream_cause_list"], e["upstream_cause_detail"]) == \
        (str(status), cause, listed, detail), e
    line = session_line(n, port, cause, level)
    assert f"upstream_cause={cause} status={status} attempts={attempts} peer={peer} " in line, line
    assert f'causes="{listed}" detail="{detail}" hint="' in line, line
    # stream's own suffix, as nginx writes it on its own lines
    assert f", server: 127.0.0.1:{port}, upstream: " in line and ", bytes from/to client:" in line, line
    return e, line


def test_every_way_a_backend_fails(stream_nginx):
    n, f = stream_nginx, stream_nginx.faults
    dead, dead2 = n.dead
    for name in ("refused", "closed", "reset", "idle", "retried", "ok"):
        tcp_session(n.ports[name])
    # nothing listens: 502, as nginx says
    e, _ = check(n, "refused", 502, "connect_refused", "connect_refused", REFUSED_DETAIL, f"127.0.0.1:{dead}")
    assert e["upstream_addr"] == f"127.0.0.1:{dead}"
    # read the client's bytes, closed without one: nginx says 200 and only
    # an info line
    e, _ = check(n, "closed", 200, "upstream_closed_silent", "upstream_closed_silent", "",
                 f"127.0.0.1:{f['close']}")
    assert (e["bytes_received"], e["upstream_bytes_received"]) == ("5", "0"), e
    # read, then reset: 200
    check(n, "reset", 200, "upstream_reset", "upstream_reset", RESET_DETAIL, f"127.0.0.1:{f['reset']}")
    # read, then silence until proxy_timeout: 200, said at info
    check(n, "idle", 200, "idle_timeout", "idle_timeout", "", f"127.0.0.1:{f['silent']}", level="info")
    # two dead peers: each attempt, aligned with $upstream_addr
    e, _ = check(n, "retried", 502, "connect_refused", "connect_refused, connect_refused", REFUSED_DETAIL,
                 f"127.0.0.1:{dead2}", attempts=2)
    assert e["upstream_addr"] == f"127.0.0.1:{dead}, 127.0.0.1:{dead2}", e
    # a session that works: nothing to say
    (e,) = n.stream_for(n.ports["ok"])
    assert (e["status"], e["upstream_cause"], e["upstream_cause_list"], e["upstream_cause_detail"]) == \
        ("200", "", "-", ""), e
    assert not [l for l in n.error_lines() if f"server: 127.0.0.1:{n.ports['ok']}," in l and "upstream_cause=" in l]


def test_no_live_upstreams_names_the_group(stream_nginx):
    n = stream_nginx
    port = n.ports["group"]
    tcp_session(port)
    tcp_session(port)
    first, second = n.stream_for(port, 2)
    assert (first["status"], first["upstream_cause_list"]) == ("502", "connect_refused, connect_refused"), first
    assert (second["status"], second["upstream_cause"], second["upstream_addr"]) == \
        ("502", "no_live_upstreams", "all_dead"), second
    assert second["upstream_cause_detail"] == "no live upstreams while connecting to upstream", second
    line = session_line(n, port, "no_live_upstreams")
    assert "attempts=1 peer=all_dead " in line, line


def test_udp(stream_nginx):
    n, f = stream_nginx, stream_nginx.faults
    dead = n.dead[0]
    # (nginx 1.22 passes the failed read on to the client as an empty
    # datagram; later versions send nothing)
    assert udp_session(n.ports["udp_refused"], timeout=3.0) in (None, b"")
    assert udp_session(n.ports["udp_silent"], timeout=3.0) is None
    assert udp_session(n.ports["udp_ok"]) == b"hello"
    # ICMP port unreachable: nginx ends it as `udp done`, 200
    check(n, "udp_refused", 200, "connect_refused", "connect_refused", UDP_REFUSED_DETAIL, f"127.0.0.1:{dead}")
    # no response within proxy_timeout: 502
    check(n, "udp_silent", 502, "udp_no_response", "udp_no_response", UDP_TIMEOUT_DETAIL,
          f"127.0.0.1:{f['udp-silent']}")
    (e,) = n.stream_for(n.ports["udp_ok"])
    assert (e["status"], e["upstream_cause"], e["upstream_cause_list"]) == ("200", "", "-"), e


def test_off_says_nothing(stream_nginx):
    n = stream_nginx
    tcp_session(n.ports["off"])
    (e,) = n.stream_for(n.ports["off"])
    assert (e["status"], e["upstream_cause"], e["upstream_cause_list"], e["upstream_cause_detail"]) == \
        ("502", "", "", ""), e
    n.wait_error(rf"connect\(\) failed .*server: 127\.0\.0\.1:{n.ports['off']},")
    assert not [l for l in n.error_lines() if "upstream_cause=" in l and f":{n.ports['off']}," in l]


def scrape(n):
    r = request(n.port, "/metrics")
    assert r.status == 200
    return r.body.decode()


def test_the_scrape_counts_stream_beside_http(stream_nginx):
    n, f = stream_nginx, stream_nginx.faults
    dead, dead2 = n.dead
    for name in ("refused", "closed", "retried", "ok"):
        tcp_session(n.ports[name])
    for name in ("refused", "closed", "retried", "ok"):
        n.stream_for(n.ports[name])
    text = scrape(n)
    stream = sorted(l for l in text.splitlines() if l.startswith("nginx_upstream_cause_stream"))
    assert stream == sorted([
        f'nginx_upstream_cause_stream_total{{upstream="127.0.0.1:{dead}",peer="127.0.0.1:{dead}",'
        'cause="connect_refused"} 1',
        f'nginx_upstream_cause_stream_total{{upstream="127.0.0.1:{f["close"]}",peer="127.0.0.1:{f["close"]}",'
        'cause="upstream_closed_silent"} 1',
        f'nginx_upstream_cause_stream_total{{upstream="two_dead",peer="127.0.0.1:{dead}",cause="connect_refused"}} 1',
        f'nginx_upstream_cause_stream_total{{upstream="two_dead",peer="127.0.0.1:{dead2}",cause="connect_refused"}} 1',
        f'nginx_upstream_cause_stream_sessions_total{{upstream="127.0.0.1:{dead}",cause="connect_refused",'
        'status="502"} 1',
        f'nginx_upstream_cause_stream_sessions_total{{upstream="127.0.0.1:{f["close"]}",'
        'cause="upstream_closed_silent",status="200"} 1',
        'nginx_upstream_cause_stream_sessions_total{upstream="two_dead",cause="connect_refused",status="502"} 1',
    ]), text
    assert "# TYPE nginx_upstream_cause_stream_total counter" in text
    assert "# TYPE nginx_upstream_cause_stream_sessions_total counter" in text
    # HTTP's families are there too, empty
    assert "# TYPE nginx_upstream_cause_total counter" in text
    assert not [l for l in text.splitlines() if l.startswith("nginx_upstream_cause_total{")]


def test_the_offline_classifier_reads_the_same_from_nginx_s_lines(stream_nginx):
    """`upstream-cause` on the error log without the module's lines (an
    nginx that cannot load it, error_log at info): each failed session's
    cause and status as the module gave them, its peer from nginx's
    `upstream: "..."` alone, and stream's families in its Prometheus
    report."""
    from test_cli import cli, requests_of, without_module_lines
    n, f = stream_nginx, stream_nginx.faults
    dead, dead2 = n.dead
    tcp = ("refused", "closed", "reset", "idle", "retried", "ok")
    udp = ("udp_refused", "udp_silent", "udp_ok")
    for name in tcp:
        tcp_session(n.ports[name])
    for name in udp:
        udp_session(n.ports[name], timeout=3.0)
    logged = {name: n.stream_for(n.ports[name])[0] for name in tcp + udp}
    text = without_module_lines(n.error_log.read_bytes())
    assert b"upstream_cause" not in text and b"upstream disconnected" in text
    offline = {(r["pid"], r["connection"]): r for r in requests_of(stdin=text)}
    for name, e in logged.items():
        r = offline.pop((int(e["pid"]), int(e["connection"])), None)
        if not e["upstream_cause"]:
            assert r is None, (name, r)
            continue
        assert r is not None, (name, e)
        assert (r["stream"], r["cause"]) == ("udp" if name in udp else "tcp", e["upstream_cause"]), (name, r)
        assert ", ".join(x["cause"] for x in r["failures"]) == e["upstream_cause_list"], (name, r)
        assert [x["peer"] for x in r["failures"]] == e["upstream_addr"].split(", "), (name, r)
        assert r["client"] == "127.0.0.1" and r["server"] == f"127.0.0.1:{n.ports[name]}", (name, r)
        # after the connect nginx ends the session itself: its status is known
        if name in ("refused", "retried"):
            assert r["status"] is None and "status" in r["unknown"], (name, r)
        else:
            assert r["status"] == int(e["status"]), (name, r)
    assert not offline, offline
    # stream's families, as the module names them (the upstream label is
    # the peer: nginx's text names no group)
    out = cli("prometheus", stdin=text).stdout.decode()
    assert "# TYPE nginx_upstream_cause_stream_total counter" in out, out
    for want in (
        f'nginx_upstream_cause_stream_total{{upstream="127.0.0.1:{f["close"]}",peer="127.0.0.1:{f["close"]}",'
        'cause="upstream_closed_silent"} 1',
        f'nginx_upstream_cause_stream_total{{upstream="127.0.0.1:{dead}",peer="127.0.0.1:{dead}",'
        'cause="connect_refused"} 3',
        f'nginx_upstream_cause_stream_sessions_total{{upstream="127.0.0.1:{f["reset"]}",cause="upstream_reset",'
        'status="200"} 1',
        f'nginx_upstream_cause_stream_sessions_total{{upstream="127.0.0.1:{f["silent"]}",cause="idle_timeout",'
        'status="200"} 1',
        f'nginx_upstream_cause_stream_sessions_total{{upstream="127.0.0.1:{f["udp-silent"]}",'
        'cause="udp_no_response",status="502"} 1',
        "# upstream-cause: 2 failed sessions from nginx's lines alone are not in "
        "nginx_upstream_cause_stream_sessions_total",
    ):
        assert want in out, (want, out)
    assert not [l for l in out.splitlines() if l.startswith("nginx_upstream_cause_total{")], out
    # with the module's lines, its own: the sessions' statuses are all known
    out = cli("prometheus", stdin=n.error_log.read_bytes()).stdout.decode()
    assert f'nginx_upstream_cause_stream_sessions_total{{upstream="127.0.0.1:{dead}",cause="connect_refused",' \
        'status="502"} 1' in out, out
    assert "failed sessions from nginx's lines alone" not in out, out


@pytest.mark.parametrize("directive, message", [
    ("upstream_cause maybe;", 'invalid value "maybe" in "upstream_cause" directive, it must be "on" or "off"'),
    ("upstream_cause_log loud;", 'invalid value "loud" in "upstream_cause_log" directive'),
    ("upstream_cause on; upstream_cause off;", '"upstream_cause" directive is duplicate'),
    ("upstream_cause_zone z 1k;", 'zone size "1k" in "upstream_cause_zone" directive is too small'),
    ("upstream_cause_zone z 1m; upstream_cause_zone y 1m;", '"upstream_cause_zone" directive is duplicate'),
])
def test_a_wrong_directive_fails_nginx_t(tmp_path, directive, message):
    from conftest import Nginx
    n = Nginx(tmp_path / "n", "server { listen 127.0.0.1:@PORT@; }", stream_body=f"    {directive}")
    r = n.test_config()
    assert r.returncode != 0
    assert re.search(r"\[emerg\] .*" + re.escape(message) + r".* in .*nginx\.conf:\d+", r.stderr), r.stderr


def test_the_zone_is_not_allowed_in_a_server(tmp_path):
    from conftest import Nginx
    n = Nginx(tmp_path / "n", "server { listen 127.0.0.1:@PORT@; }",
              stream_body=f"    server {{ listen 127.0.0.1:{free_port()}; upstream_cause_zone z 1m; "
                          f"proxy_pass 127.0.0.1:{dead_port()}; }}")
    r = n.test_config()
    assert r.returncode != 0
    assert '"upstream_cause_zone" directive is not allowed here' in r.stderr, r.stderr


# --- the codes stream shares with HTTP, each for real -------------------------

from test_taxonomy import certs, full_backlog, nxdomain_resolver, plain_talker, tls_server, vanishing_host  # noqa: E402,F401


def one_server(nginx_factory, server, main=""):
    """nginx with one stream server (`server`'s body, listening on the
    returned port); logs at info."""
    port = free_port()
    n = nginx_factory("server { listen 127.0.0.1:@PORT@; }",
                      stream_body=f"    {main}\n    server {{ listen 127.0.0.1:{port}; {server} }}")
    n.ports = {"one": port}
    return n


def test_connect_error_when_proxy_bind_fails(nginx_factory):
    """bind() to an address:port in use fails before the connect: nginx
    logs 500 (its own error, at crit)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        busy = held.getsockname()[1]
        n = one_server(nginx_factory, f"proxy_bind 127.0.0.1:{busy}; proxy_pass 127.0.0.1:{dead_port()};")
        tcp_session(n.ports["one"])
        detail = f"bind(127.0.0.1:{busy}) failed (98: Address already in use) while connecting to upstream"
        check(n, "one", 500, "connect_error", "connect_error", detail, "-", attempts=1)


def test_connect_timeout(nginx_factory, full_backlog):
    n = one_server(nginx_factory, f"proxy_connect_timeout 1s; proxy_pass 127.0.0.1:{full_backlog};")
    tcp_session(n.ports["one"])
    check(n, "one", 502, "connect_timeout", "connect_timeout",
          "upstream timed out (110: Connection timed out) while connecting to upstream", f"127.0.0.1:{full_backlog}")


def test_connect_unreachable(nginx_factory, vanishing_host):
    n = one_server(nginx_factory, f"proxy_connect_timeout 20s; proxy_pass {vanishing_host}:9001;")
    tcp_session(n.ports["one"], timeout=30.0)
    check(n, "one", 502, "connect_unreachable", "connect_unreachable",
          "connect() failed (113: No route to host) while connecting to upstream", f"{vanishing_host}:9001")


def test_tls_to_the_upstream(nginx_factory, tls_server, certs, plain_talker):
    """proxy_ssl to a server that does not speak TLS, and to one whose
    certificate does not verify."""
    plain, verify, ok = free_port(), free_port(), free_port()
    n = nginx_factory("server { listen 127.0.0.1:@PORT@; }", stream_body=f"""
    proxy_ssl on;
    proxy_ssl_protocols TLSv1.2 TLSv1.3;
    server {{ listen 127.0.0.1:{plain}; proxy_pass 127.0.0.1:{plain_talker}; }}
    server {{ listen 127.0.0.1:{verify}; proxy_ssl_verify on; proxy_ssl_name server.test;
              proxy_ssl_trusted_certificate {certs}/other.crt; proxy_pass 127.0.0.1:{tls_server}; }}
    server {{ listen 127.0.0.1:{ok}; proxy_pass 127.0.0.1:{tls_server}; }}""")
    n.ports = {"plain": plain, "verify": verify, "ok": ok}
    for name in ("plain", "verify"):
        tcp_session(n.ports[name], b"GET / HTTP/1.0\r\n\r\n")
    assert tcp_session(ok, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 OK")
    (e,) = n.stream_for(plain)
    assert (e["status"], e["upstream_cause"]) == ("502", "tls_handshake_failed"), e
    assert e["upstream_cause_detail"].startswith("SSL_do_handshake() failed (SSL: "), e
    assert e["upstream_cause_detail"].endswith(" while SSL handshaking to upstream"), e
    session_line(n, plain, "tls_handshake_failed")
    (e,) = n.stream_for(verify)
    assert (e["status"], e["upstream_cause"]) == ("502", "tls_verify_failed"), e
    assert e["upstream_cause_detail"].startswith("upstream SSL certificate verify error: (18:self"), e
    session_line(n, verify, "tls_verify_failed")
    (e,) = n.stream_for(ok)
    assert (e["status"], e["upstream_cause"], e["upstream_cause_list"]) == ("200", "", "-"), e


def test_resolve_failed(nginx_factory, nxdomain_resolver, stream_faults):
    """proxy_pass to a name a variable gives, and the resolver answers
    NXDOMAIN: before any attempt, nginx logs 502."""
    n = one_server(nginx_factory, f"resolver 127.0.0.1:{nxdomain_resolver} ipv6=off; resolver_timeout 5s; "
                                  f"set $backend nosuch.test; proxy_pass $backend:{stream_faults['echo']};")
    tcp_session(n.ports["one"])
    (e,) = n.stream_for(n.ports["one"])
    assert (e["upstream_cause"], e["upstream_cause_list"]) == ("resolve_failed", "resolve_failed"), e
    assert e["upstream_cause_detail"] == "nosuch.test could not be resolved (3: Host not found)", e
    line = session_line(n, n.ports["one"], "resolve_failed")
    assert f"status={e['status']} attempts=0 peer=- " in line, line


def worker_pid(n, timeout=10.0):
    """The one worker's pid. nginx listens before it writes its pid file
    and forks its worker (long before, under valgrind): both are waited
    for, bounded."""
    deadline = time.monotonic() + timeout * WRAPPER_SLOWDOWN
    while True:
        pidfile = n.prefix / "logs/nginx.pid"
        if pidfile.exists() and pidfile.read_text().strip():
            master = int(pidfile.read_text())
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
            if len(children) == 1:
                return int(children[0])
        assert time.monotonic() < deadline, "no nginx worker"
        time.sleep(0.02)


def wait_output(path, text, count=1, timeout=10.0):
    deadline = time.monotonic() + timeout
    while path.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not printed {count} times: {path.read_text()}"
        time.sleep(0.02)


def test_send_failed(nginx_factory, stream_faults):
    """The client's bytes reach nginx, and the upstream's reset too, before
    nginx looks (its worker is stopped in between): nginx reads the client
    first, and its write to the upstream breaks.

    Which of the two pending events nginx handles first is the kernel's
    order, not a promise: under valgrind nginx has been seen to take the
    reset first (it then read 0 bytes of the client, and the module rightly
    says upstream_reset). Such a session is tried again, a bounded number of
    times; any other outcome fails at once."""
    f = stream_faults
    n = one_server(nginx_factory, f"proxy_pass 127.0.0.1:{f['reset-on-signal']};")
    port = n.ports["one"]
    connected = re.compile(rf"proxy 127\.0\.0\.1:\d+ connected to 127\.0\.0\.1:{f['reset-on-signal']}")
    worker = worker_pid(n)
    for attempt in range(1, 6):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            wait_output(f["log"], "accepted", count=attempt)
            # nginx has seen its connect complete (not only the kernel)
            deadline = time.monotonic() + 10 * WRAPPER_SLOWDOWN
            while sum(1 for l in n.error_lines() if connected.search(l)) < attempt:
                assert time.monotonic() < deadline, n.error_lines()[-10:]
                time.sleep(0.02)
            os.kill(worker, signal.SIGSTOP)
            try:
                s.sendall(b"hello")
                f["proc"].send_signal(signal.SIGUSR1)
                wait_output(f["log"], "reset", count=attempt)
            finally:
                os.kill(worker, signal.SIGCONT)
            s.settimeout(10)
            try:
                while s.recv(65536):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
        e = n.stream_for(port, count=attempt)[-1]
        if (e["upstream_cause"], e["bytes_received"]) != ("upstream_reset", "0"):
            break
    assert (e["status"], e["upstream_cause"], e["upstream_cause_list"], e["bytes_received"]) == \
        ("200", "send_failed", "send_failed", "5"), e
    assert re.fullmatch(r"(writev|send)\(\) failed \((104: Connection reset by peer|32: Broken pipe)\) "
                        r"while proxying and sending to upstream", e["upstream_cause_detail"]), e
    session_line(n, port, "send_failed")


@pytest.mark.parametrize("zone", ["", "zone held 64k;"])
def test_max_conns_reached(nginx_factory, stream_faults, zone):
    """A group whose one server is at max_conns=1 (a session holds it):
    nginx says "no live upstreams", as for a dead group; the group is
    saturated, not down."""
    silent = stream_faults["silent"]
    n = one_server(nginx_factory, "proxy_timeout 30s; proxy_pass held;",
                   main=f"upstream held {{ {zone} server 127.0.0.1:{silent} max_conns=1; }}")
    port = n.ports["one"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as holder:
        holder.sendall(b"hold")
        # the held session is connected to the upstream once nginx logs it
        n.wait_error(rf"proxy 127\.0\.0\.1:\d+ connected to 127\.0\.0\.1:{silent}")
        tcp_session(port)
        (e,) = n.stream_for(port)
        assert (e["status"], e["upstream_cause"], e["upstream_cause_list"], e["upstream_addr"]) == \
            ("502", "max_conns_reached", "max_conns_reached", "held"), e
        assert e["upstream_cause_detail"] == "no live upstreams while connecting to upstream", e
        line = session_line(n, port, "max_conns_reached")
        assert "attempts=1 peer=held " in line, line
