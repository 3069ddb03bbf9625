"""The storm's nginx configuration and, for every request it can send, what
that request must give: status, $upstream_cause, the shapes its
$upstream_cause_list may take, the response header, and the counters'
`upstream` label of each ' : ' group of its attempts.

Where a fault legitimately has more than one outcome, each allowed one is
listed with the reason beside it; nothing else passes.
"""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import fastcgi_params  # noqa: E402  (the tests' own helper)

# cause codes, short
CR = "connect_refused"
UPC = "upstream_prematurely_closed"
RESET = "upstream_reset"
RT = "read_timeout"
INV = "invalid_header"
BIG = "header_too_big"
NLU = "no_live_upstreams"
VIA = "via_upstream"
TRUNC = "response_truncated"
CC = "client_closed"
AQF = "accept_queue_full"
SR = "stream_refused"

# Causes whose final status nginx itself made: they get an enriched
# error-log line and a non-empty $upstream_cause_detail.
NO_DETAIL = {"", VIA, CC}

# $upstream_cause_detail (nginx's own text) for each cause the storm produces
_W = " while reading response header from upstream"
_REUSED = r"(?: \(reused keepalive connection\))?"
DETAIL_OF = {k: re.compile(v + _REUSED) for k, v in {
    CR: r"connect\(\) (?:to unix:\S+ )?failed \((?:111: Connection refused|2: No such file or directory)\)"
        r" while connecting to upstream",
    UPC: r"upstream prematurely closed (?:connection|stream)" + _W,
    RESET: r"(?:(?:recv\(\) failed \(104: Connection reset by peer\)|upstream rejected request with error 2)" + _W
           + r"|connect\(\) failed \(104: Connection reset by peer\) while connecting to upstream)",
    RT: r"upstream timed out \(110: Connection timed out\)" + _W,
    INV: r'upstream sent (?:invalid header: ".*"|unexpected :status "103")' + _W,
    BIG: r"upstream sent too big header" + _W,
    NLU: r"no live upstreams while connecting to upstream",
    TRUNC: r"upstream prematurely closed connection while reading upstream",
    SR: r"upstream (?:rejected request with error 7|sent goaway with error \d+)" + _W,
    AQF: r"connect\(\) to unix:\S+ failed \(11: Resource temporarily unavailable\) while connecting to upstream",
    "send_failed": r"\S+ failed \((?:104: Connection reset by peer|32: Broken pipe)\)"
                   r" while sending request to upstream",
}.items()}

ZONE = "storm"
HEADER = "X-Upstream-Cause"
# the stalls: proxy_read_timeout, 504 read_timeout soon; long enough that a
# fault upstream slowed by a busy machine (CI builds images meanwhile) still
# answers first (400 ms was not: 10 requests of one CI run timed out)
READ_TIMEOUT = "2s"
ABORT_AFTER = 0.1       # a client that leaves while the upstream is silent, after this (s)
BIG_FILE = 2 * 1024 * 1024

ANY = "any"                          # HTTP/1.0, HTTP/1.1 keep-alive or HTTP/2
ABORT_REQ = "abort-mid-request"      # HTTP/1.1, half the body, then close
ABORT_RESP = "abort-mid-response"    # HTTP/1.1, the header and a little body, then close
ABORT_WAIT = "abort-before-response"  # HTTP/1.1: close; HTTP/2: RST_STREAM CANCEL
H2_CANCEL = "h2-cancel"
BURST = "burst"                       # 5 HTTP/1.1 requests at once, each on its own connection


class Out:
    """One allowed outcome. `listed` is a regex over $upstream_cause_list;
    `header` the cause header the client must see (None: none; the default
    is the cause itself when the response is the failure's own)."""
    __slots__ = ("status", "cause", "listed", "header", "body", "truncated", "why")

    def __init__(self, status, cause, listed, header="default", body=None, truncated=False, why=""):
        self.status = str(status)
        self.cause = cause
        self.listed = re.compile(listed)
        self.header = (cause or None) if header == "default" else header
        self.body = body
        self.truncated = truncated  # True, False or None (either)
        self.why = why


class Scenario:
    __slots__ = ("id", "name", "kind", "path", "method", "body", "client", "outs", "labels", "addrs",
                 "weight", "check", "rcheck", "group", "keep_body", "off")

    def __init__(self, name, path, outs, labels, addrs=None, kind=None, method="GET", body=None,
                 client=ANY, weight=1.0, check=None, rcheck=None):
        self.id = None
        self.name = name
        self.kind = kind or name    # the fault kind, for the report
        self.path = path
        self.method = method
        self.body = body            # None, "small" (up to 1 KiB), "h2" (up to 32 KiB), "any"
        self.client = client
        self.outs = outs
        self.labels = labels        # counters' upstream label per ' : ' group
        self.addrs = addrs          # allowed $upstream_addr entries per group (sets), or None
        self.weight = weight
        self.check = check          # extra check(access-log entry) -> error text or None
        self.rcheck = rcheck        # extra check(client's Result) -> error text or None
        self.group = None           # the dynamic group or location it belongs to
        self.keep_body = any(o.body is not None for o in outs)
        self.off = False            # under `upstream_cause off`: attempts but no list

    def _off(self):
        self.off = True
        return self


def ok(listed="-", **kw):
    return Out(200, "", listed, **kw)


def fail(status, cause, listed=None, **kw):
    return Out(status, cause, listed if listed is not None else re.escape(cause), **kw)


def first(cause, lo=0, hi=None):
    """`cause, ` repeated lo..hi times (hi None: unbounded), before a last entry."""
    c = re.escape(cause)
    return f"(?:{c}, ){{{lo},{'' if hi is None else hi}}}"


class Env:
    """Everything the configuration refers to (ports, paths)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def a(self, port):
        return f"127.0.0.1:{port}"


def base_scenarios(e, early_end_cause, auth=True):
    """The fixed part: every fault kind the project knows, on locations
    that are in every configuration."""
    G, CRASHY, F, H2, SELF = e.a(e.go), e.a(e.crashy), e.a(e.faults), e.a(e.h2), e.a(e.self_port)
    S = []
    add = S.append

    # the Go service (never restarted): request-level panic, its own 502
    add(Scenario("go-ok", "/go/ok", [ok()], [G], [{G}], weight=6))
    add(Scenario("go-ping-panic", "/go/ping", [fail(502, UPC)], [G], [{G}], weight=3))
    add(Scenario("go-own-502", "/go/bad-gateway", [fail(502, VIA, body=b"the backend's own 502\n")], [G], [{G}],
                 weight=2))
    # the supervised Go service: /crash kills the process, the supervisor
    # restarts it. While it is down, anything sent to it is refused; a
    # request that was inside the process when it died is closed (FIN) or,
    # if the process had not read it yet, reset (RST). So /ok, /ping and
    # /crash each have these outcomes, and only these.
    dying = [fail(502, CR, why="the process is down (crashed, not restarted yet)"),
             fail(502, UPC, why="in the process when it died (or its handler panicked, for /ping)"),
             fail(502, RESET, why="unread by the process when it died, or still in its listen queue (then "
                                  "nginx hears the reset while connecting): the kernel resets"),
             fail(502, "send_failed", why="the process died while nginx was writing the request")]
    add(Scenario("crashy-ok", "/crashy/ok", [ok(why="the process is up")] + dying, [CRASHY], [{CRASHY}],
                 kind="go-crash-supervised", weight=3))
    add(Scenario("crashy-ping", "/crashy/ping", dying, [CRASHY], [{CRASHY}], kind="go-ping-panic", weight=1))
    add(Scenario("crashy-crash", "/crashy/crash", dying, [CRASHY], [{CRASHY}], kind="go-crash-supervised",
                 weight=0.4))

    # the HTTP/1 fault upstream, direct
    fa = [{F}]
    add(Scenario("f-close", "/f/close", [fail(502, UPC)], [F], fa, kind="close", weight=2))
    add(Scenario("f-half", "/f/half", [fail(502, UPC)], [F], fa, kind="close", weight=1))
    add(Scenario("f-reset", "/f/reset", [fail(502, RESET)], [F], fa, kind="reset", weight=2))
    add(Scenario("f-silent", "/f/silent", [fail(504, RT)], [F], fa, kind="stall", weight=0.8))
    add(Scenario("f-invalid", "/f/invalid", [fail(502, INV)], [F], fa, kind="invalid-header", weight=2))
    add(Scenario("f-big", "/f/big", [fail(502, BIG)], [F], fa, kind="too-big-header", weight=1.5))
    # the 200's header went out before the upstream failed: no cause header
    # can follow; the client sees the body cut short (HTTP/1.0 too: the
    # Content-Length says 1000)
    add(Scenario("f-truncate", "/f/truncate", [Out(200, TRUNC, TRUNC, header=None, truncated=True)], [F], fa,
                 kind="truncation", weight=1.5))
    # chunked: an HTTP/1.0 client gets it close-delimited, so it cannot tell
    add(Scenario("f-truncate-chunked", "/f/truncate-chunked", [Out(200, TRUNC, TRUNC, header=None, truncated=None)],
                 [F], fa, kind="truncation", weight=1))
    add(Scenario("f-own502-forged", "/f/own502", [fail(502, VIA, body=b"the backend's own 502\n")], [F], fa,
                 kind="own-502-forged-header", weight=1.5))
    add(Scenario("f-forged-ok", "/f/forged-ok", [ok()], [F], fa, kind="own-502-forged-header", weight=1))
    add(Scenario("f-ok", "/f/anything", [ok()], [F], fa, kind="ok", weight=2))

    # refused ports (conftest.dead_port(): bound, never listening)
    D = e.dead
    add(Scenario("gone", "/gone/x", [fail(502, CR)], [e.a(D[7])], [{e.a(D[7])}], kind="refused", weight=3))
    add(Scenario("gone-head", "/gone/head", [fail(502, CR)], [e.a(D[7])], [{e.a(D[7])}], kind="refused",
                 method="HEAD", weight=0.5))

    # keepalive upstreams
    add(Scenario("ka-ok", "/ka/ok", [ok()], ["go_ka"], [{G}], kind="keepalive-ok", weight=4))
    # the panic closes the connection: on a connection taken from the cache
    # nginx retries the GET (one more try for each cached connection that
    # fails), so the list is one or more upstream_prematurely_closed
    add(Scenario("ka-ping", "/ka/ping", [fail(502, UPC, first(UPC) + UPC)], ["go_ka"], [{G}], kind="go-ping-panic",
                 weight=2))
    add(Scenario("ka-own502", "/ka/bad-gateway", [fail(502, VIA)], ["go_ka"], [{G}], kind="own-502-forged-header",
                 weight=1))
    # faults.py /ka answers the first request on a connection and closes the
    # second unanswered (an idle timeout racing the reuse): a GET that got a
    # reused connection is retried on a new one
    add(Scenario("fka-ka", "/fka/ka", [ok(first(UPC) + "-")], ["faults_ka"], [{F}],
                 kind="keepalive-race", weight=2))
    # a POST is not retried: 200 on a new connection, 502 on a reused one
    add(Scenario("fka-ka-post", "/fka/ka", [ok(why="a new upstream connection"),
                                           fail(502, UPC, why="a reused upstream connection, not retried"),
                                           fail(502, RESET, why="the same, when the body came in a segment "
                                                                "faults.py had not read when it closed")],
                 ["faults_ka"], [{F}], kind="keepalive-race", method="POST", body="small", weight=1))
    add(Scenario("deadka", "/deadka/x", [fail(502, CR)], ["dead_ka"], [{e.a(D[6])}], kind="refused", weight=1))

    # retries: proxy_next_upstream error timeout invalid_header http_502,
    # the fault upstream first, the Go service as backup (404: it has none
    # of these paths)
    rf = [{F, G}]
    for name, path, cause in (("own502", "/own502", VIA), ("close", "/close", UPC), ("reset", "/reset", RESET),
                              ("silent", "/silent", RT), ("invalid", "/invalid", INV), ("big", "/big", BIG)):
        add(Scenario(f"retry-{name}", f"/retry{path}", [Out(404, "", re.escape(cause) + ", -")], ["retry_faults"],
                     rf, kind="retry", weight=0.6 if name == "silent" else 1))
    add(Scenario("retry-first-ok", "/retry/fine", [ok()], ["retry_faults"], rf, kind="retry", weight=1))
    add(Scenario("retry-dead", "/retry-dead/ok", [ok(f"{CR}, -")], ["retry_dead"], [{e.a(D[0]), G}], kind="retry",
                 weight=2))
    add(Scenario("both-dead", "/both-dead/x", [fail(502, CR, f"{CR}, {CR}")], ["both_dead"],
                 [{e.a(D[1]), e.a(D[2])}], kind="refused", weight=1.5))

    # no live upstreams: every server `down`; and every server failed
    # (max_fails=1): per worker, both are tried and refuse, then none is
    # left; one failed and one live gives one refusal, then none left
    add(Scenario("all-down", "/down/x", [fail(502, NLU)], ["all_down"], [{"all_down"}], kind="no-live-upstreams",
                 weight=1.5))
    add(Scenario("failing", "/failing/x",
                 [fail(502, CR, f"{CR}, {CR}", why="both servers live in this worker"),
                  fail(502, NLU, f"(?:{CR}, )?{NLU}", why="one or both already failed in this worker")],
                 ["failing"], [{e.a(D[4]), e.a(D[5]), "failing"}], kind="no-live-upstreams", weight=1.5))

    # HTTP/2 upstream faults through grpc_pass (h2faults.py picks the mode by
    # the first path segment)
    h2 = [{H2}]
    for mode, cause in (("refused", SR), ("internal", RESET), ("goaway", SR), ("goaway-error", SR),
                        ("close", UPC), ("early-end", early_end_cause)):
        add(Scenario(f"h2-{mode}", f"/h2/{mode}/x", [fail(502, cause)], [H2], h2, kind="http2-upstream", weight=1))
    add(Scenario("h2-ok", "/h2/ok/x", [ok()], [H2], h2, kind="http2-upstream", weight=1))
    add(Scenario("h2-ok-post", "/h2/ok/post", [ok()], [H2], h2, kind="http2-upstream", method="POST", body="h2",
                 weight=0.5))

    # PHP-FPM: a pool of 2 children with a listen backlog of 0: under
    # concurrent requests the pool is full now and then (the storm's own
    # concurrency decides which request finds it full)
    # (the counters' upstream label of a unix socket is its path, the peer
    # is unix:path as in $upstream_addr)
    P = f"unix:{e.fpm_sock}"
    full = fail(502, AQF, why="every child busy and the listen queue full")
    add(Scenario("fpm-fast", "/fpm/fast.php", [ok(why="a child was free"), full], [str(e.fpm_sock)], [{P}],
                 kind="php-fpm", weight=2))
    add(Scenario("fpm-slow", "/fpm/slow.php", [ok(why="a child was free"), full], [str(e.fpm_sock)], [{P}],
                 kind="php-fpm", weight=1.5))
    add(Scenario("fpm-burst", "/fpm/slow.php", [ok(why="a child was free or the queue had room"), full],
                 [str(e.fpm_sock)], [{P}], kind="php-fpm", client=BURST, weight=0.3))
    PG = f"unix:{e.gone_sock}"
    add(Scenario("fpm-gone", "/fpm-gone/x.php", [fail(502, CR)], [str(e.gone_sock)], [{PG}], kind="php-fpm",
                 weight=1))
    # the same with a socket path longer than 64 bytes (a pod's volume, a
    # deep run directory): the counters' labels must still be the path
    PL = f"unix:{e.long_sock}"
    add(Scenario("fpm-gone-long-path", "/fpm-gone-long/x.php", [fail(502, CR)], [str(e.long_sock)], [{PL}],
                 kind="php-fpm", weight=0.5))

    # error_page: to a static page (the location that finishes the request
    # still reports), and to a named location that proxies again
    d8, d9 = e.a(D[8]), e.a(D[9])
    add(Scenario("ep-static", "/ep-static/", [fail(502, CR, body=b"custom 50x page\n")], [d8], [{d8}],
                 kind="error-page", weight=1.5))
    add(Scenario("ep-static-head", "/ep-static/", [fail(502, CR)], [d8], [{d8}], kind="error-page", method="HEAD",
                 weight=0.5))
    # the upstream's own 502, intercepted and rendered by error_page
    add(Scenario("intercept-own502", "/intercept/bad-gateway", [fail(502, VIA, body=b"custom 50x page\n")], [G],
                 [{G}], kind="error-page", weight=1))
    # upstream_cause off: empty variables, no header (the forged one still
    # stripped), nothing counted
    add(Scenario("off-own502", "/off/own502", [Out(502, "", "", header=None)], [], None, kind="cause-off",
                 weight=0.7)._off())
    add(Scenario("off-refused", "/off-gone/x", [Out(502, "", "", header=None)], [], None, kind="cause-off",
                 weight=0.7)._off())
    add(Scenario("ep-named-ok", "/ep-named/", [ok(f"{UPC} : -")], [F, G], [{F}, {G}], kind="error-page", weight=1.5))
    add(Scenario("ep-named-dead", "/ep-named-dead/", [fail(502, CR, f"{CR} : {CR}")], [d8, d9], [{d8}, {d9}],
                 kind="error-page", weight=1))

    # auth_request: the subrequest's attempts are its own (not in the main
    # request's variables, not counted); a failing auth makes a 500
    d7 = e.a(D[7])
    if auth:
        auth_scenarios(S, e, d7, G)
    body_and_client_scenarios(S, e, F, SELF, fa)
    return S


def auth_scenarios(S, e, d7, G):
    add = S.append
    add(Scenario("auth-ok-main-refused", "/auth-ok/x", [fail(502, CR)], [d7], [{d7}], kind="auth-request",
                 weight=1))
    add(Scenario("auth-ok-main-ok", "/auth-ok-go/ok", [ok()], [G], [{G}], kind="auth-request", weight=1))
    add(Scenario("auth-fails", "/auth-fail/ok", [Out(500, "", "", header=None)], [], None, kind="auth-request",
                 weight=1))


def body_and_client_scenarios(S, e, F, SELF, fa):
    add = S.append
    D = e.dead

    # bodies and big responses (nginx's own second server as the upstream)
    add(Scenario("bigbody", "/bigbody/big.bin", [ok()], [SELF], [{SELF}], kind="big-response", weight=0.3,
                 rcheck=lambda r: None if r.body_len == BIG_FILE else f"body of {r.body_len} bytes, not {BIG_FILE}"))
    add(Scenario("post-sink", "/sink/", [ok()], [SELF], [{SELF}], kind="post-body", method="POST", body="any",
                 weight=2))
    add(Scenario("post-gone", "/gone/post", [fail(502, CR)], [e.a(D[7])], [{e.a(D[7])}], kind="post-body",
                 method="POST", body="any", weight=1))
    add(Scenario("post-silent", "/f/silent", [fail(504, RT)], [F], fa, kind="post-body", method="POST", body="small",
                 weight=0.3))

    # clients that leave
    # nginx reads the whole body before it proxies: the client's reset while
    # it reads is its 400 (client prematurely closed connection)
    add(Scenario("abort-mid-request", "/sink/", [Out(400, "", "", header=None)],
                 [], None, kind="client-abort", method="POST", body="abort", client=ABORT_REQ, weight=0.8))
    add(Scenario("abort-mid-response", "/bigbody/big.bin", [ok(header=None)], [SELF], [{SELF}], kind="client-abort",
                 client=ABORT_RESP, weight=0.5))
    # (through /fslow/, whose read timeout is long: the client always
    # leaves first)
    add(Scenario("abort-while-silent", "/fslow/silent", [fail(499, CC, header=None)], [F], fa, kind="client-abort",
                 client=ABORT_WAIT, weight=0.6))
    add(Scenario("h2-cancel-while-silent", "/fslow/silent", [fail(499, CC, header=None)], [F], fa,
                 kind="client-abort", client=H2_CANCEL, weight=0.4))


# --- the configuration -----------------------------------------------------

BALANCERS = ["", "least_conn;", "hash $request_uri;", "hash $request_uri consistent;", "ip_hash;", "random;",
             "random two;", "random two least_conn;"]

KA = 'proxy_http_version 1.1; proxy_set_header Connection "";'

LOG_FORMAT = (
    "log_format storm escape=json '{"
    '"s":"$status","u":"$request_uri","a":"$upstream_addr","us":"$upstream_status",'
    '"c":"$upstream_cause","l":"$upstream_cause_list","d":"$upstream_cause_detail","p":"$pid",'
    '"k":"$connection","m":"$request_method"'
    "}';"
)


class DynGroup:
    """An upstream group (and its location) that a reload adds and a later
    one removes."""

    def __init__(self, rng, serial, dead_pool, go):
        self.name = f"dyn{serial}"
        self.balancer = rng.choice(BALANCERS)
        self.keepalive = rng.choice([0, 0, 4, 8])
        self.zone = rng.random() < 0.4
        self.kind = rng.choice(["dead", "mixed", "down"])
        n = rng.randint(1, 3)
        self.dead = rng.sample(dead_pool, n)
        self.go = go

    def conf(self):
        if self.kind == "down":
            servers = "".join(f" server 127.0.0.1:{p} down;" for p in self.dead)
        elif self.kind == "dead":
            servers = "".join(f" server 127.0.0.1:{p} max_fails=0;" for p in self.dead)
        else:
            servers = "".join(f" server 127.0.0.1:{p} max_fails=0;" for p in self.dead[:2])
            servers += f" server 127.0.0.1:{self.go} max_fails=0;"
        zone = f" zone {self.name} 64k;" if self.zone else ""
        ka = f" keepalive {self.keepalive};" if self.keepalive else ""
        up = f"    upstream {self.name} {{ {self.balancer}{servers}{zone}{ka} }}\n"
        loc = (f"        location /dyn/{self.name}/ {{ proxy_pass http://{self.name}/; "
               f"{KA if self.keepalive else ''} }}\n")
        return up, loc

    def scenarios(self):
        name = self.name
        kind = f"balancer-{self.kind}"
        dead = {f"127.0.0.1:{p}" for p in self.dead}
        if self.kind == "down":
            return [Scenario(f"{name}-down", f"/dyn/{name}/x", [fail(502, NLU)], [name], [{name}],
                             kind="no-live-upstreams", weight=1)]
        if self.kind == "dead":
            n = len(self.dead)

            def distinct(entry, n=n):
                a = entry["a"].split(", ")
                return None if len(set(a)) == n else f"each server once expected: {entry['a']}"
            return [Scenario(f"{name}-dead", f"/dyn/{name}/x", [fail(502, CR, first(CR, n - 1, n - 1) + CR)],
                             [name], [dead], kind=kind, weight=1.5, check=distinct)]
        k = len(self.dead[:2])
        go = f"127.0.0.1:{self.go}"

        def order(entry):
            a = entry["a"].split(", ")
            if a[-1] != go or len(set(a)) != len(a):
                return f"refused servers, each at most once, then the Go service expected: {entry['a']}"
            return None
        # the balancer picks the Go service first or after 1..k refusals
        return [Scenario(f"{name}-mixed", f"/dyn/{name}/ok", [ok(first(CR, 0, k) + "-")], [name],
                         [dead | {go}], kind=kind, weight=2, check=order)]


class ConfigGen:
    """Generations of the configuration: the fixed part, the dynamic groups
    and locations, the zone's size."""

    def __init__(self, e, rng, prefix, module, workers, user_root, auth=True, http2=None):
        """http2: "on" (nginx 1.25.1+: `http2 on`, HTTP/1 and HTTP/2 on the
        same port), "listen" (older: a second listener, `listen ... http2`,
        prior knowledge only) or None (no HTTP/2 module)."""
        self.auth = auth
        self.http2 = http2
        self.e = e
        self.rng = rng
        self.prefix = prefix
        self.module = module
        self.workers = workers
        self.user_root = user_root
        self.groups = []
        self.extra_locs = []  # (name, fault)
        self.serial = 0
        self.zone_size = "1m"
        # (nginx's own stream module where it is dynamic, ours, the stream
        # block for a zone size), set by the storm when it runs sessions
        self.stream = None
        self.go_ka_keepalive = 8

    def mutate(self):
        """The next generation: some groups and locations go, some come."""
        rng = self.rng
        removed = []
        if self.groups and rng.random() < 0.7:
            for g in rng.sample(self.groups, rng.randint(1, min(2, len(self.groups)))):
                self.groups.remove(g)
                removed.append(g.name)
        for _ in range(rng.randint(1, 3)):
            if len(self.groups) >= 8:
                break
            self.serial += 1
            self.groups.append(DynGroup(rng, self.serial, self.e.dyn_dead, self.e.go))
        if self.extra_locs and rng.random() < 0.5:
            gone = rng.choice(self.extra_locs)
            self.extra_locs.remove(gone)
            removed.append(gone[0])
        if len(self.extra_locs) < 4 and rng.random() < 0.6:
            self.serial += 1
            self.extra_locs.append((f"dl{self.serial}", rng.choice(["close", "reset", "own502", "invalid", "ok"])))
        self.go_ka_keepalive = rng.choice([4, 8, 16])
        return removed

    def dynamic_scenarios(self):
        out = []
        for g in self.groups:
            for sc in g.scenarios():
                sc.group = g.name
                out.append(sc)
        F = self.e.a(self.e.faults)
        for name, fault in self.extra_locs:
            if fault == "ok":
                outs = [ok()]
            else:
                outs = [{"close": fail(502, UPC), "reset": fail(502, RESET), "own502": fail(502, VIA),
                         "invalid": fail(502, INV)}[fault]]
            sc = Scenario(f"{name}-{fault}", f"/{name}/{'anything' if fault == 'ok' else fault}", outs,
                          [F], [{F}], kind="added-location", weight=1)
            sc.group = name
            out.append(sc)
        return out

    def render(self):
        e = self.e
        D = e.dead
        p = self.prefix
        dyn_up, dyn_loc = "", ""
        for g in self.groups:
            up, loc = g.conf()
            dyn_up += up
            dyn_loc += loc
        for name, fault in self.extra_locs:
            dyn_loc += (f"        location /{name}/ {{ proxy_pass http://127.0.0.1:{e.faults}/; "
                        f"proxy_read_timeout {READ_TIMEOUT}; }}\n")
        fcgi = fastcgi_params(e.fpm_docroot, script="/$script", indent=12)
        auth = f"""\
        location /auth-ok/ {{ auth_request /_auth_go; proxy_pass http://127.0.0.1:{D[7]}/; }}
        location /auth-ok-go/ {{ auth_request /_auth_go; proxy_pass http://127.0.0.1:{e.go}/; }}
        location /auth-fail/ {{ auth_request /_auth_dead; proxy_pass http://127.0.0.1:{e.go}/; }}
        location = /_auth_go {{ internal; proxy_pass http://127.0.0.1:{e.go}/ok;
                               proxy_pass_request_body off; proxy_set_header Content-Length ""; }}
        location = /_auth_dead {{ internal; proxy_pass http://127.0.0.1:{D[10]}/;
                                 proxy_pass_request_body off; proxy_set_header Content-Length ""; }}
""" if self.auth else ""
        listen_h2 = {"on": "        http2 on;", "listen": f"        listen 127.0.0.1:{e.h2_port} http2;",
                     None: ""}[self.http2]
        stream_load, stream_block = "", ""
        if self.stream:
            core, module, block = self.stream
            stream_load = (f"load_module {core};\n" if core else "") + f"load_module {module};\n"
            stream_block = block(self.zone_size)
        return f"""load_module {self.module};
{stream_load}daemon on;
master_process on;
worker_processes {self.workers};
{"user root;" if self.user_root else ""}
pid {p}/logs/nginx.pid;
error_log {p}/logs/error.log notice;
events {{ worker_connections 1024; }}
http {{
    {LOG_FORMAT}
    access_log {p}/logs/access.log storm;
    client_body_temp_path {p}/tmp/body; proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi; uwsgi_temp_path {p}/tmp/uwsgi; scgi_temp_path {p}/tmp/scgi;
    client_max_body_size 16m;
    upstream_cause_header {HEADER};
    upstream_cause_zone {ZONE} {self.zone_size};

    upstream go_ka {{ server 127.0.0.1:{e.go}; keepalive {self.go_ka_keepalive}; }}
    upstream faults_ka {{ server 127.0.0.1:{e.faults}; keepalive 8; }}
    upstream dead_ka {{ least_conn; server 127.0.0.1:{D[6]}; keepalive 8; }}
    upstream retry_faults {{ server 127.0.0.1:{e.faults} max_fails=0; server 127.0.0.1:{e.go} backup max_fails=0; }}
    upstream retry_dead {{ server 127.0.0.1:{D[0]} max_fails=0; server 127.0.0.1:{e.go} backup max_fails=0; }}
    upstream both_dead {{ server 127.0.0.1:{D[1]} max_fails=0; server 127.0.0.1:{D[2]} max_fails=0; }}
    upstream all_down {{ server 127.0.0.1:{D[3]} down; }}
    upstream failing {{ server 127.0.0.1:{D[4]} max_fails=1 fail_timeout=60s;
                       server 127.0.0.1:{D[5]} max_fails=1 fail_timeout=60s; }}
{dyn_up}
    server {{
        listen 127.0.0.1:{e.port};
{listen_h2}
        location /go/ {{ proxy_pass http://127.0.0.1:{e.go}/; }}
        location /crashy/ {{ proxy_pass http://127.0.0.1:{e.crashy}/; }}
        location /f/ {{ proxy_pass http://127.0.0.1:{e.faults}/; proxy_read_timeout {READ_TIMEOUT}; }}
        location /fslow/ {{ proxy_pass http://127.0.0.1:{e.faults}/; proxy_read_timeout 30s; }}
        location /gone/ {{ proxy_pass http://127.0.0.1:{D[7]}/; }}
        location /ka/ {{ proxy_pass http://go_ka/; {KA} }}
        location /fka/ {{ proxy_pass http://faults_ka/; {KA} }}
        location /deadka/ {{ proxy_pass http://dead_ka/; {KA} }}
        location /retry/ {{ proxy_pass http://retry_faults/; proxy_read_timeout {READ_TIMEOUT};
                           proxy_next_upstream error timeout invalid_header http_502 http_504; }}
        location /retry-dead/ {{ proxy_pass http://retry_dead/; }}
        location /both-dead/ {{ proxy_pass http://both_dead/; }}
        location /down/ {{ proxy_pass http://all_down/; }}
        location /failing/ {{ proxy_pass http://failing/; }}
        location /h2/ {{ rewrite ^/h2(/.*)$ $1 break; grpc_pass grpc://127.0.0.1:{e.h2}; }}
        location ~ ^/fpm/(?<script>[a-z]+\\.php)$ {{ fastcgi_pass unix:{e.fpm_sock};{fcgi}
        }}
        location ~ ^/fpm-gone/(?<script>[a-z]+\\.php)$ {{ fastcgi_pass unix:{e.gone_sock};{fcgi}
        }}
        location ~ ^/fpm-gone-long/(?<script>[a-z]+\\.php)$ {{ fastcgi_pass unix:{e.long_sock};{fcgi}
        }}
        location /ep-static/ {{ proxy_pass http://127.0.0.1:{D[8]}/; error_page 502 /50x.html; }}
        location = /50x.html {{ root {p}/html; }}
        location /intercept/ {{ proxy_pass http://127.0.0.1:{e.go}/; proxy_intercept_errors on;
                               error_page 502 /50x.html; }}
        location /off/ {{ upstream_cause off; proxy_pass http://127.0.0.1:{e.faults}/; }}
        location /off-gone/ {{ upstream_cause off; proxy_pass http://127.0.0.1:{D[7]}/; }}
        location /ep-named/ {{ proxy_pass http://127.0.0.1:{e.faults}/close; error_page 502 = @fallback_go; }}
        location @fallback_go {{ rewrite ^ /ok break; proxy_pass http://127.0.0.1:{e.go}; }}
        location /ep-named-dead/ {{ proxy_pass http://127.0.0.1:{D[8]}/; error_page 502 = @fallback_dead; }}
        location @fallback_dead {{ proxy_pass http://127.0.0.1:{D[9]}; }}
{auth}        location /bigbody/ {{ proxy_pass http://127.0.0.1:{e.self_port}/static/; }}
        location /sink/ {{ proxy_pass http://127.0.0.1:{e.self_port}/sink/; }}
{dyn_loc}    }}
    server {{
        listen 127.0.0.1:{e.self_port};
        access_log off;
        location /static/ {{ alias {p}/html/static/; }}
        location /sink/ {{ return 200 "sunk\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{e.metrics_port};
        access_log off;
        location = /metrics {{ upstream_cause_metrics; }}
        location = /status {{ upstream_cause_status; }}
    }}
}}
{stream_block}"""
