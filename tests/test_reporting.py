"""Where the cause is reported, and where it must not be: retries and the
list, error_page, HEAD, an upstream's own 5xx and forged headers, `off`,
log levels, keepalive on both sides, balancers."""
import concurrent.futures
import http.client
import re

import pytest

from conftest import REFUSED_DETAIL, WITH_DEBUG, dead_port



@pytest.fixture
def env(nginx_factory, go_service, faults):
    refused = dead_port()
    go = go_service.port
    body = f"""
    upstream_cause_header X-Upstream-Cause;
    upstream first_refuses {{ server 127.0.0.1:{refused}; server 127.0.0.1:{go}; }}
    upstream both_refuse {{ server 127.0.0.1:{refused}; server 127.0.0.1:{dead_port()}; }}
    upstream go_keepalive {{ server 127.0.0.1:{go}; keepalive 4; }}
    upstream lc {{ least_conn; server 127.0.0.1:{refused}; keepalive 2; }}
    upstream hashed {{ hash $request_uri consistent; server 127.0.0.1:{refused}; }}
    upstream iphashed {{ ip_hash; server 127.0.0.1:{refused}; }}
    upstream randomized {{ random two least_conn; server 127.0.0.1:{refused}; keepalive 2; }}
    server {{
        listen 127.0.0.1:@PORT@;
        proxy_next_upstream error timeout;
        location /retry/ {{ proxy_pass http://first_refuses/; }}
        location /all-refuse/ {{ proxy_pass http://both_refuse/; }}
        location /go/ {{ proxy_pass http://127.0.0.1:{go}/; }}
        location /faults/ {{ proxy_pass http://127.0.0.1:{faults}/; }}
        location /gone/ {{ proxy_pass http://127.0.0.1:{refused}/; }}
        location /pretty/ {{ proxy_pass http://127.0.0.1:{refused}/; error_page 502 /50x.html; }}
        location /intercept/ {{ proxy_pass http://127.0.0.1:{go}/; proxy_intercept_errors on;
                                error_page 502 /50x.html; }}
        location = /50x.html {{ }}
        location /off/ {{ upstream_cause off; proxy_pass http://127.0.0.1:{go}/; }}
        location /off-gone/ {{ upstream_cause off; proxy_pass http://127.0.0.1:{refused}/; }}
        location /off-pretty/ {{ upstream_cause off; proxy_pass http://127.0.0.1:{refused}/;
                                 error_page 502 /50x.html; }}
        location /warn/ {{ upstream_cause_log warn; proxy_pass http://127.0.0.1:{refused}/; }}
        location /nolog/ {{ upstream_cause_log off; proxy_pass http://127.0.0.1:{refused}/; }}
        location /ka/ {{ proxy_pass http://go_keepalive/; proxy_http_version 1.1;
                         proxy_set_header Connection ""; }}
        location /lc/ {{ proxy_pass http://lc/; proxy_http_version 1.1; proxy_set_header Connection ""; }}
        location /hash/ {{ proxy_pass http://hashed/; }}
        location /iphash/ {{ proxy_pass http://iphashed/; }}
        location /random/ {{ proxy_pass http://randomized/; }}
    }}
    """
    return nginx_factory(body), go, refused


def test_retry_to_a_live_peer_lists_the_failed_attempt_only(env):
    nginx, go, refused = env
    r = nginx.get("/retry/ok")
    assert r.status == 200 and r.body == b"ok\n"
    assert r.header("X-Upstream-Cause") is None
    (e,) = nginx.access_for("/retry/ok")
    assert e["upstream_addr"] == f"127.0.0.1:{refused}, 127.0.0.1:{go}"
    assert e["upstream_status"] == "502, 200"
    assert e["upstream_cause_list"] == "connect_refused, -"
    assert e["upstream_cause"] == "" and e["upstream_cause_detail"] == ""
    assert nginx.cause_lines() == []


def test_every_peer_refuses(env):
    nginx, _, _ = env
    r = nginx.get("/all-refuse/x")
    assert r.status == 502 and r.header("X-Upstream-Cause") == "connect_refused"
    (e,) = nginx.access_for("/all-refuse/x")
    assert e["upstream_cause_list"] == "connect_refused, connect_refused"
    (line,) = nginx.cause_lines("/all-refuse/x")
    assert 'attempts=2 ' in line and 'causes="connect_refused, connect_refused"' in line


def test_error_page_keeps_header_and_variables(env):
    nginx, _, refused = env
    r = nginx.get("/pretty/x")
    assert r.status == 502
    assert r.body == b"custom 50x page\n"
    assert r.header("X-Upstream-Cause") == "connect_refused"
    (e,) = nginx.access_for("/pretty/x")
    assert e["upstream_cause"] == "connect_refused"
    assert e["upstream_cause_detail"] == REFUSED_DETAIL
    assert e["upstream_cause_list"] == "connect_refused"
    (line,) = nginx.cause_lines("/pretty/x")
    assert f"upstream_cause=connect_refused status=502 attempts=1 peer=127.0.0.1:{refused} " in line


def test_head_gets_the_header(env):
    nginx, _, _ = env
    r = nginx.get("/gone/x", method="HEAD")
    assert r.status == 502 and r.body == b""
    assert r.header("X-Upstream-Cause") == "connect_refused"
    r = nginx.get("/pretty/y", method="HEAD")
    assert r.status == 502 and r.header("X-Upstream-Cause") == "connect_refused"


def test_upstream_own_502_is_via_upstream_and_forgery_is_stripped(env):
    nginx, _, _ = env
    r = nginx.get("/go/bad-gateway")
    assert r.status == 502
    assert r.body == b"the backend's own 502\n"
    assert r.header("X-Upstream-Cause") == "via_upstream"  # exactly one value, ours
    (e,) = nginx.access_for("/go/bad-gateway")
    assert e["upstream_cause"] == "via_upstream"
    assert e["upstream_cause_list"] == "via_upstream"
    assert e["upstream_cause_detail"] == ""
    assert nginx.cause_lines() == []  # not a gateway failure: no enriched line


def test_intercepted_own_502_is_via_upstream(env):
    nginx, _, _ = env
    r = nginx.get("/intercept/bad-gateway")
    assert r.status == 502 and r.body == b"custom 50x page\n"
    assert r.header("X-Upstream-Cause") == "via_upstream"


def test_forged_header_on_a_success_never_reaches_the_client(env):
    nginx, _, _ = env
    for path in ("/faults/forged-ok", "/faults/own502"):
        r = nginx.get(path)
        values = [v for k, v in r.headers if k.lower() == "x-upstream-cause"]
        assert "forged-by-backend" not in values
    assert nginx.get("/faults/forged-ok").header("X-Upstream-Cause") is None
    assert nginx.get("/faults/own502").header("X-Upstream-Cause") == "via_upstream"


def test_off_location_reports_nothing(env):
    nginx, _, _ = env
    for path in ("/off/ping", "/off-gone/x", "/off/bad-gateway"):
        r = nginx.get(path)
        assert r.status == 502
        assert r.header("X-Upstream-Cause") is None  # ours is off, the forged one still stripped
        (e,) = nginx.access_for(path)
        assert e["upstream_cause"] == e["upstream_cause_list"] == e["upstream_cause_detail"] == ""
    # attempts made where it is off stay unreported where the request ends
    r = nginx.get("/off-pretty/x")
    assert r.status == 502 and r.header("X-Upstream-Cause") is None
    (e,) = nginx.access_for("/off-pretty/x")
    assert e["upstream_status"] == "502"
    assert e["upstream_cause"] == e["upstream_cause_list"] == e["upstream_cause_detail"] == ""
    assert nginx.cause_lines() == []


def test_log_level_is_configurable(env):
    nginx, _, _ = env
    nginx.get("/warn/x")
    (line,) = nginx.wait_error(r"upstream_cause=connect_refused .*/warn/x")
    assert "[warn] " in line
    r = nginx.get("/nolog/x")
    assert r.header("X-Upstream-Cause") == "connect_refused"
    assert nginx.access_for("/nolog/x")[0]["upstream_cause"] == "connect_refused"
    assert nginx.cause_lines("/nolog/x") == []


def test_error_log_above_the_level_gets_no_line(nginx_factory):
    refused = dead_port()
    nginx = nginx_factory(f"""
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ proxy_pass http://127.0.0.1:{refused}; }}
        location /crit/ {{ upstream_cause_log crit; proxy_pass http://127.0.0.1:{refused}; }}
    }}""", error_level="crit")
    assert nginx.get("/x").status == 502
    assert nginx.get("/crit/x").status == 502
    assert nginx.access_for("/x")[0]["upstream_cause"] == "connect_refused"
    nginx.access_for("/crit/x")
    assert nginx.cause_lines("/x") == []
    (line,) = nginx.cause_lines("/crit/x")
    assert "[crit] " in line
    # the tap hears nginx's own [error] lines but never lets them through
    assert not [l for l in nginx.error_lines() if "upstream_cause=" not in l and ("connect() failed" in l or "[error]" in l)]


def test_nginx_own_lines_are_unchanged(nginx_factory, faults):
    """The same failures under `upstream_cause on` and `off` give nginx's
    own error lines identically (the tap forwards, never adds or drops)."""
    refused = dead_port()
    nginx = nginx_factory(f"""
    server {{ listen 127.0.0.1:@PORT@;
        location /on/ {{ upstream_cause_log off; proxy_read_timeout 1s; proxy_pass http://127.0.0.1:{faults}/; }}
        location /off/ {{ upstream_cause off; proxy_read_timeout 1s; proxy_pass http://127.0.0.1:{faults}/; }}
        location /on-gone/ {{ upstream_cause_log off; proxy_pass http://127.0.0.1:{refused}/; }}
        location /off-gone/ {{ upstream_cause off; proxy_pass http://127.0.0.1:{refused}/; }}
        location /off-pretty/ {{ upstream_cause off; proxy_pass http://127.0.0.1:{refused}/;
                                 error_page 502 /50x.html; }}
    }}""", error_level="info")
    paths = ["gone/x", "close", "reset", "invalid", "big", "silent"]
    for p in paths:
        for scope in ("on", "off"):
            uri = f"/{scope}-{p}" if p.startswith("gone") else f"/{scope}/{p}"
            nginx.get(uri)
            nginx.access_for(uri)

    def own(scope):
        out = []
        for l in nginx.error_lines():
            if f'request: "GET /{scope}' not in l:
                continue
            msg = re.sub(r"^\S+ \S+ \[(\w+)\] \d+#\d+: \*\d+ ", r"[\1] ", l)
            out.append(msg.replace(f"/{scope}-", "/S-").replace(f"/{scope}/", "/S/"))
        return out

    on, off = own("on"), own("off")
    assert len(on) >= len(paths)
    assert on == off


def test_keepalive_client_does_not_leak_causes_between_requests(env):
    nginx, _, _ = env
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=15)
    try:
        seen = []
        for path in ("/gone/a", "/go/ok", "/pretty/b", "/go/ok?again"):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            seen.append((r.status, r.getheader("X-Upstream-Cause")))
    finally:
        conn.close()
    assert seen == [(502, "connect_refused"), (200, None), (502, "connect_refused"), (200, None)]
    oks = nginx.access_for("/go/ok") + nginx.access_for("/go/ok?again")
    assert all(e["upstream_cause"] == "" and e["upstream_cause_list"] == "-" for e in oks)


def test_upstream_keepalive_connections_are_reused_cleanly(env):
    nginx, go, _ = env
    for i in range(5):
        r = nginx.get(f"/ka/ok?{i}")
        assert r.status == 200 and r.header("X-Upstream-Cause") is None
    r = nginx.get("/ka/ping")
    assert r.status == 502 and r.header("X-Upstream-Cause") == "upstream_prematurely_closed"
    r = nginx.get("/ka/ok?after")
    assert r.status == 200 and r.header("X-Upstream-Cause") is None


@pytest.mark.parametrize("prefix", ["/lc", "/hash", "/iphash", "/random"])
def test_other_balancers_are_wrapped_too(env, prefix):
    nginx, _, refused = env
    r = nginx.get(f"{prefix}/x")
    assert r.status == 502 and r.header("X-Upstream-Cause") == "connect_refused"
    (e,) = nginx.access_for(f"{prefix}/x")
    assert e["upstream_cause_detail"] == REFUSED_DETAIL
    assert e["upstream_addr"] == f"127.0.0.1:{refused}"


def test_http10_client(env):
    nginx, _, _ = env
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=15)
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
    try:
        conn.request("GET", "/gone/http10")
        r = conn.getresponse()
        r.read()
    finally:
        conn.close()
    assert r.status == 502 and r.getheader("X-Upstream-Cause") == "connect_refused"


@pytest.mark.skipif(not WITH_DEBUG, reason="nginx is built without --with-debug (as nginx.org's packages are)")
def test_classification_is_traced_in_the_debug_log(nginx_factory):
    """The core's decisions reach nginx's debug log (nginx --with-debug,
    error_log at debug), once per attempt however many places render it."""
    refused = dead_port()
    body = f"upstream_cause_header X-C; server {{ listen 127.0.0.1:@PORT@; " \
           f"location / {{ proxy_pass http://127.0.0.1:{refused}; }} }}"
    nginx = nginx_factory(body, error_level="debug")
    assert nginx.get("/x").header("X-C") == "connect_refused"
    nginx.access_for("/x")
    traced = [l for l in nginx.error_lines() if "upstream_cause: classified attempt" in l]
    assert len(traced) == 1, traced
    assert "[debug] " in traced[0] and "cause=Some(ConnectRefused)" in traced[0] and "errno=Some(111)" in traced[0]


@pytest.mark.parametrize("level", ["info", "debug_core"])
def test_no_trace_unless_the_log_debugs_http(nginx_factory, level):
    """The core's trace goes only to a log that debugs http. `debug_core`
    lets lines of debug level through nginx's own level check (it writes
    core debugging), so a trace written without asking for http would
    show there."""
    refused = dead_port()
    body = f"upstream_cause_header X-C; server {{ listen 127.0.0.1:@PORT@; " \
           f"location / {{ proxy_pass http://127.0.0.1:{refused}; }} }}"
    nginx = nginx_factory(body, error_level=level)
    assert nginx.get("/x").header("X-C") == "connect_refused"
    nginx.access_for("/x")
    lines = nginx.error_lines()
    assert [l for l in lines if "upstream_cause=connect_refused" in l], lines
    assert not [l for l in lines if "upstream_cause: classified attempt" in l]


def test_many_failed_requests_at_once_keep_their_own_records(nginx_factory, faults, go_service):
    """40 requests live at once with a failed attempt each (more than the
    32 records a worker keeps for reuse): each reports its own attempts,
    whether its records came from the cache or from its pool. Then 40 more,
    whose second attempt succeeds, on reused records: nothing of the first
    batch shows through."""
    refused = dead_port()
    nginx = nginx_factory(f"""
    upstream refuse_then_silent {{ server 127.0.0.1:{refused} max_fails=0;
                                   server 127.0.0.1:{faults} backup max_fails=0; }}
    upstream refuse_then_go {{ server 127.0.0.1:{refused} max_fails=0;
                               server 127.0.0.1:{go_service.port} backup max_fails=0; }}
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ proxy_read_timeout 1s; proxy_pass http://refuse_then_silent; }}
        location /ok {{ proxy_pass http://refuse_then_go; }}
    }}""")
    silent_detail = "upstream timed out (110: Connection timed out) while reading response header from upstream"
    batches = [
        ("/silent", 504, "connect_refused, read_timeout", "read_timeout", silent_detail),
        ("/ok", 200, "connect_refused, -", "", ""),
    ]
    for path, status, listed, cause, detail in batches:
        uris = [f"{path}?r{i}" for i in range(40)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
            statuses = list(pool.map(lambda u: nginx.get(u).status, uris))
        assert statuses == [status] * 40
        for uri in uris:
            (e,) = nginx.access_for(uri)
            assert e["upstream_cause_list"] == listed, e
            assert e["upstream_cause"] == cause and e["upstream_cause_detail"] == detail, e
