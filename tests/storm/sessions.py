"""The storm's TCP and UDP sessions, beside its HTTP requests: nginx's
stream proxy with the stream module, the fault backends it proxies to,
the client thread, and what each session and the stream counters must be.

Each stream server of the configuration is one scenario: every session to
its port must give the same outcome (nginx's `$status`, `$upstream_cause`,
`$upstream_cause_list`), so a session needs no id of its own. Sessions are
counted by port: as many entries in the stream access log as sessions the
client ended. The stream zone's size changes with HTTP's (at the same
reload), so its epochs are HTTP's: per epoch, the scrape's
`nginx_upstream_cause_stream_total` and `..._sessions_total` must equal
what the stream access log says. Each failed session has one enriched line
in the stream block's own error log.
"""
import re
import socket
import sys
import time
from pathlib import Path

import check

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STREAM_FAULTS = ROOT / "docker/faults/stream_faults.py"
ZONE = "storm_stream"

CR, CLOSED, RESET = "connect_refused", "upstream_closed_silent", "upstream_reset"

LOG_FORMAT = (
    "log_format storm_stream escape=json '{"
    '"p":"$pid","k":"$connection","sp":"$server_port","s":"$status","a":"$upstream_addr",'
    '"c":"$upstream_cause","l":"$upstream_cause_list","d":"$upstream_cause_detail"'
    "}';"
)


class Session:
    """A stream server and what every session to it gives."""

    def __init__(self, name, proto, status, cause, listed, label, peers, weight=1):
        self.name, self.proto = name, proto
        self.status, self.cause, self.listed = str(status), cause, listed
        # the counters' `upstream` label, and the $upstream_addr entries
        self.label, self.peers = label, peers
        self.weight = weight
        self.port = None


def scenarios(faults, dead):
    """The stream servers: (name, proto, outcome, label, peers). `faults`
    maps a stream_faults.py mode to its port; `dead` are refused ports."""
    a = lambda port: f"127.0.0.1:{port}"  # noqa: E731
    return [
        Session("s-echo", "tcp", 200, "", "-", a(faults["echo"]), [a(faults["echo"])], weight=3),
        Session("s-refused", "tcp", 502, CR, CR, a(dead[0]), [a(dead[0])]),
        Session("s-closed", "tcp", 200, CLOSED, CLOSED, a(faults["close"]), [a(faults["close"])]),
        Session("s-reset", "tcp", 200, RESET, RESET, a(faults["reset"]), [a(faults["reset"])]),
        Session("s-retry", "tcp", 200, "", f"{CR}, -", "s_retry", [a(dead[1]), a(faults["echo"])]),
        Session("s-udp-echo", "udp", 200, "", "-", a(faults["udp-echo"]), [a(faults["udp-echo"])], weight=2),
        Session("s-udp-refused", "udp", 200, CR, CR, a(dead[2]), [a(dead[2])]),
    ]


def config(sessions, prefix, faults, dead, zone_size):
    """The stream block."""
    servers = ""
    for s in sessions:
        udp = " udp" if s.proto == "udp" else ""
        target = s.label if s.label == "s_retry" else s.peers[0]
        servers += f"    server {{ listen 127.0.0.1:{s.port}{udp}; proxy_pass {target}; }}\n"
    return f"""stream {{
    {LOG_FORMAT}
    access_log {prefix}/logs/stream.log storm_stream;
    error_log {prefix}/logs/stream-error.log notice;
    upstream_cause_zone {ZONE} {zone_size};
    proxy_timeout 5s;
    proxy_responses 1;
    upstream s_retry {{ server 127.0.0.1:{dead[1]} max_fails=0; server 127.0.0.1:{faults['echo']} backup; }}
{servers}}}
"""


def session(s, timeout=10.0):
    """One session: send, then read until nginx closes (TCP) or answers
    (UDP). (whether nginx got the session, what went wrong on the client's
    side or None)."""
    if s.proto == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(timeout)
            c.connect(("127.0.0.1", s.port))
            try:
                c.send(b"storm")
            except OSError as exc:
                return False, f"{type(exc).__name__}: {exc}"
            # an ICMP-refused session gets no datagram (nginx 1.28) or an
            # empty one (1.22): nothing to wait for; its entry is counted
            # when nginx has logged it
            if s.cause == CR:
                return True, None
            try:
                return True, (None if c.recv(64) == b"storm" else "not echoed")
            except OSError as exc:
                return True, f"{type(exc).__name__}: {exc}"
    try:
        c = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    with c:
        try:
            c.sendall(b"storm")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not c.recv(65536):
                    return True, None
        except ConnectionResetError:
            return True, None
        except OSError as exc:
            return True, f"{type(exc).__name__}: {exc}"
        return True, "nginx did not close"


class StreamLog(check.JsonLines):
    """The stream access log: every entry, in order."""

    def __init__(self, path):
        super().__init__(path)
        self.entries = []

    def poll(self):
        self.entries += super().poll()


def check_entry(s, e):
    """Errors for one session's entry against its server's outcome."""
    where = f"{s.name} (pid {e['p']})"
    errs = []
    if (e["s"], e["c"], e["l"]) != (s.status, s.cause, s.listed):
        errs.append(f"{where}: status={e['s']} cause={e['c']!r} list={e['l']!r}, "
                    f"{s.status} {s.cause!r} {s.listed!r} expected (addr={e['a']!r}, detail={e['d']!r})")
    addrs = e["a"].split(", ")
    if len(addrs) != len(e["l"].split(", ")) or any(x not in s.peers for x in addrs):
        errs.append(f"{where}: upstream_addr {e['a']!r} not aligned with {e['l']!r} among {s.peers}")
    if (e["d"] == "") != (s.cause in ("", CLOSED)):
        errs.append(f"{where}: cause {e['c']!r} with detail {e['d']!r}")
    return errs


def expected_counts(items):
    """The stream families a zone must hold after these (session, entry)
    items: attempts by label, peer and cause; sessions by label, cause and
    status."""
    att, sess = {}, {}
    for s, e in items:
        for cause, addr in zip(e["l"].split(", "), e["a"].split(", ")):
            if cause not in ("-", ""):
                k = (s.label, addr, cause)
                att[k] = att.get(k, 0) + 1
        if e["c"]:
            k = (s.label, e["c"], e["s"])
            sess[k] = sess.get(k, 0) + 1
    return att, sess


def counters(samples):
    """The stream families of a parsed scrape."""
    att, sess = {}, {}
    for (name, lab), v in samples.items():
        d = dict(lab)
        if name == "nginx_upstream_cause_stream_total":
            att[(d["upstream"], d["peer"], d["cause"])] = int(v)
        elif name == "nginx_upstream_cause_stream_sessions_total":
            sess[(d["upstream"], d["cause"], d["status"])] = int(v)
    return att, sess


LINE_RX = re.compile(r' upstream_cause=(\S+) status=(\d+) attempts=(\d+) .*, server: 127\.0\.0\.1:(\d+), ')


def lines_per_port(text):
    """{port: [(cause, status)]} of the enriched lines, and the lines that
    could not be read."""
    out, bad = {}, []
    for line in text.splitlines():
        if " upstream_cause=" not in line:
            continue
        m = LINE_RX.search(line)
        if not m:
            bad.append(line[:300])
            continue
        out.setdefault(int(m.group(4)), []).append((m.group(1), m.group(2)))
    return out, bad


if __name__ == "__main__":
    sys.exit("a part of tests/storm/storm.py")
