"""Real servers behind nginx's stream proxy, with their real clients: a
Redis (Debian's redis-server, redis-cli) that answers, crashes holding a
command, is down, comes back and is full; and UDP through a real resolver
client (dig) to a closed port, a silent server and a resolver that answers.
What is asserted is what the user reads: the client's answer, stream's
access log, the enriched line."""
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import free_port, stop, wait_closed, wait_port
from test_stream import check, session_line
from test_taxonomy import nxdomain_resolver  # noqa: F401

REDIS = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
DIG = shutil.which("dig")


class Redis:
    """A redis-server on a loopback port, no persistence."""

    def __init__(self, tmp_path, maxclients=100):
        self.port = free_port()
        self.dir = tmp_path
        self.maxclients = maxclients
        self.proc = None

    def start(self):
        self.log = open(self.dir / "redis.log", "a")
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--maxclients", str(self.maxclients), "--protected-mode", "no"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None:
            stop(self.proc, sig)
            self.log.close()
            wait_closed(self.port)
            self.proc = None


@pytest.fixture
def redis(tmp_path):
    if not (REDIS and REDIS_CLI):
        pytest.fail("needs redis-server and redis-cli (scripts/test.sh installs redis-server and redis-tools)")
    r = Redis(tmp_path).start()
    yield r
    r.stop(signal.SIGKILL)


def cli(port, *args):
    """redis-cli against nginx's listener; what it printed."""
    r = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args],
                       capture_output=True, text=True, timeout=30)
    return (r.stdout + r.stderr).strip()


def redis_nginx(nginx_factory, redis_port):
    port = free_port()
    n = nginx_factory("server { listen 127.0.0.1:@PORT@; }", stream_body=f"""
    upstream redis {{ server 127.0.0.1:{redis_port}; }}
    server {{ listen 127.0.0.1:{port}; proxy_timeout 30s; proxy_pass redis; }}""")
    n.ports = {"redis": port}
    return n


def wait_unread(port, timeout=10.0):
    """Until a connection to the local server on `port` has bytes its
    server has not read (ss's Recv-Q)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, timeout=10).stdout
        if any(int(line.split()[0]) > 0 for line in out.splitlines() if line.split()):
            return
        assert time.monotonic() < deadline, f"no unread bytes on :{port}: {out}"
        time.sleep(0.02)


def test_redis_up_crashed_down_back_and_full(nginx_factory, redis, tmp_path):
    n = redis_nginx(nginx_factory, redis.port)
    port = n.ports["redis"]
    peer = f"127.0.0.1:{redis.port}"

    # it answers: nothing to say
    assert cli(port, "PING") == "PONG"
    (e,) = n.stream_for(port)
    assert (e["status"], e["upstream_cause"], e["upstream_cause_list"], e["upstream_addr"]) == \
        ("200", "", "-", peer), e

    # it crashes holding a command: stopped, sent a command, killed. The
    # kernel resets a connection closed with unread bytes; nginx logs 200
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(64) == b"+PONG\r\n"
        redis.proc.send_signal(signal.SIGSTOP)
        s.sendall(b"SET k v\r\n")
        # nginx has passed it on: it waits, unread, in Redis's socket
        wait_unread(redis.port)
        redis.stop(signal.SIGKILL)
        s.settimeout(10)
        assert s.recv(64) == b""
    e = n.stream_for(port, 2)[1]
    assert (e["status"], e["upstream_cause"], e["upstream_cause_list"]) == ("200", "upstream_reset", "upstream_reset"), e
    assert e["upstream_cause_detail"] == \
        "recv() failed (104: Connection reset by peer) while proxying and reading from upstream", e

    # it is down: redis-cli's connection is closed, nginx logs 502
    out = cli(port, "PING")
    assert "PONG" not in out, out
    e = n.stream_for(port, 3)[2]
    assert (e["status"], e["upstream_cause"]) == ("502", "connect_refused"), e
    assert "upstream_cause=connect_refused status=502 attempts=1 " in \
        [l for l in n.error_lines() if "upstream_cause=connect_refused" in l][-1]

    # it is back
    redis.start()
    assert cli(port, "PING") == "PONG"
    e = n.stream_for(port, 4)[3]
    assert (e["status"], e["upstream_cause"], e["upstream_cause_list"]) == ("200", "", "-"), e


def test_redis_at_maxclients_answers_itself(nginx_factory, tmp_path):
    """A full Redis (maxclients 1, held by another client) answers the
    next client itself (-ERR max number of clients reached) and closes:
    the backend answered, there is no gateway failure to report. The
    client here sends nothing: a command Redis has not read when it closes
    makes its kernel reset the connection (redis-cli's PING races the
    close), and nginx then reports the reset (`upstream_reset`), truly."""
    if not (REDIS and REDIS_CLI):
        pytest.fail("needs redis-server and redis-cli (scripts/test.sh installs redis-server and redis-tools)")
    redis = Redis(tmp_path, maxclients=1).start()
    try:
        n = redis_nginx(nginx_factory, redis.port)
        port = n.ports["redis"]
        with socket.create_connection(("127.0.0.1", redis.port), timeout=10) as holder:
            holder.sendall(b"PING\r\n")
            assert holder.recv(64) == b"+PONG\r\n"
            got = b""
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                while True:
                    chunk = c.recv(256)
                    if not chunk:
                        break
                    got += chunk
            assert got == b"-ERR max number of clients reached\r\n", got
            (e,) = n.stream_for(port)
            assert (e["status"], e["upstream_cause"], e["upstream_cause_list"]) == ("200", "", "-"), e
            assert int(e["upstream_bytes_received"]) == len(got), e
        assert not [l for l in n.error_lines() if "upstream_cause=" in l]
    finally:
        redis.stop(signal.SIGKILL)


def dig(port, name="example.test"):
    r = subprocess.run([DIG, "@127.0.0.1", "-p", str(port), name, "A", "+tries=1", "+time=3"],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout


def test_dns_through_udp(nginx_factory, stream_faults, nxdomain_resolver):
    """dig through nginx's UDP proxy: to a closed port (ICMP), to a server
    that never answers, to a resolver that answers."""
    if not DIG:
        pytest.fail("needs dig (scripts/test.sh installs bind9-dnsutils)")
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    ports = {"closed": free_port(), "silent": free_port(), "resolver": free_port()}
    n = nginx_factory("server { listen 127.0.0.1:@PORT@; }", stream_body=f"""
    proxy_timeout 1s;
    proxy_responses 1;
    server {{ listen 127.0.0.1:{ports['closed']} udp; proxy_pass 127.0.0.1:{closed_port}; }}
    server {{ listen 127.0.0.1:{ports['silent']} udp; proxy_pass 127.0.0.1:{stream_faults['udp-silent']}; }}
    server {{ listen 127.0.0.1:{ports['resolver']} udp; proxy_pass 127.0.0.1:{nxdomain_resolver}; }}""")
    n.ports = ports
    rc, out = dig(ports["closed"])
    assert rc == 9 and "no servers could be reached" in out, out
    check(n, "closed", 200, "connect_refused", "connect_refused",
          "recv() failed (111: Connection refused) while proxying and reading from upstream",
          f"127.0.0.1:{closed_port}")
    rc, out = dig(ports["silent"])
    assert rc == 9, out
    check(n, "silent", 502, "udp_no_response", "udp_no_response",
          "upstream timed out (110: Connection timed out) while proxying connection",
          f"127.0.0.1:{stream_faults['udp-silent']}")
    rc, out = dig(ports["resolver"])
    assert rc == 0 and "status: NXDOMAIN" in out, out
    (e,) = n.stream_for(ports["resolver"])
    assert (e["status"], e["upstream_cause"], e["upstream_cause_list"]) == ("200", "", "-"), e
