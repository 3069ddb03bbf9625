"""The headline pair, told apart everywhere a user looks: a Go backend whose
process is gone (connect refused) and one whose handler panicked (the
connection closed before any answer)."""
import re

import pytest

from conftest import REFUSED_DETAIL, CLOSED_DETAIL, dead_port, wait_closed

REFUSED_HINT = "nothing listens on the upstream port: the backend process is down or restarting"
CLOSED_HINT = (
    "the upstream closed the connection without answering: its request handler crashed or panicked (see its log)"
)


def expected_line(cause, peer, detail, hint, uri, upstream_url, status=502, attempts=1, causes=None):
    return (
        f'upstream_cause={cause} status={status} attempts={attempts} peer={peer} '
        f'causes="{causes or cause}" detail="{detail}" hint="{hint}", client: 127.0.0.1, server: , '
        f'request: "GET {uri} HTTP/1.1", upstream: "{upstream_url}"'
    )


def conf(go_port, refused_port, extra_loc=""):
    return f"""
    upstream go_group {{ server 127.0.0.1:{go_port}; }}
    upstream gone_group {{ server 127.0.0.1:{refused_port}; }}
    upstream_cause_header X-Upstream-Cause;
    server {{
        listen 127.0.0.1:@PORT@;
        location /literal/ {{ proxy_pass http://127.0.0.1:{go_port}/; {extra_loc} }}
        location /gone/ {{ proxy_pass http://127.0.0.1:{refused_port}/; }}
        location /group/ {{ proxy_pass http://go_group/; }}
        location /gone-group/ {{ proxy_pass http://gone_group/; }}
    }}
    """


@pytest.fixture
def setup(nginx_factory, go_service):
    refused = dead_port()
    return nginx_factory(conf(go_service.port, refused)), go_service, refused


@pytest.mark.parametrize("prefix", ["/literal", "/group"])
def test_request_level_panic_is_upstream_prematurely_closed(setup, prefix):
    nginx, go, _ = setup
    r = nginx.get(f"{prefix}/ping")
    assert r.status == 502
    assert r.header("X-Upstream-Cause") == "upstream_prematurely_closed"
    (e,) = nginx.access_for(f"{prefix}/ping")
    assert e["upstream_cause"] == "upstream_prematurely_closed"
    assert e["upstream_cause_detail"] == CLOSED_DETAIL
    assert e["upstream_cause_list"] == "upstream_prematurely_closed"
    assert e["upstream_addr"] == f"127.0.0.1:{go.port}"
    assert "http: panic serving" in go.output()
    (line,) = nginx.wait_error(r"upstream_cause=upstream_prematurely_closed")
    assert "[error]" in line
    upstream_url = f"http://127.0.0.1:{go.port}/ping"
    assert expected_line("upstream_prematurely_closed", f"127.0.0.1:{go.port}", CLOSED_DETAIL, CLOSED_HINT,
                         f"{prefix}/ping", upstream_url) in line


@pytest.mark.parametrize("prefix", ["/gone", "/gone-group"])
def test_nothing_listening_is_connect_refused(setup, prefix):
    nginx, _, refused = setup
    r = nginx.get(f"{prefix}/ok")
    assert r.status == 502
    assert r.header("X-Upstream-Cause") == "connect_refused"
    (e,) = nginx.access_for(f"{prefix}/ok")
    assert e["upstream_cause"] == "connect_refused"
    assert e["upstream_cause_detail"] == REFUSED_DETAIL
    assert e["upstream_cause_list"] == "connect_refused"
    (line,) = nginx.wait_error(r"upstream_cause=connect_refused")
    assert expected_line("connect_refused", f"127.0.0.1:{refused}", REFUSED_DETAIL, REFUSED_HINT, f"{prefix}/ok",
                         f"http://127.0.0.1:{refused}/ok") in line


def test_service_level_panic_then_connect_refused(setup):
    """/crash kills the Go process; the next request finds nothing listening."""
    nginx, go, _ = setup
    assert nginx.get("/literal/ok").status == 200
    crash = nginx.get("/literal/crash")
    assert crash.status == 502
    go.proc.wait(10)
    assert go.proc.returncode != 0
    assert "panic: runtime error: invalid memory address or nil pointer dereference" in go.output()
    wait_closed(go.port)
    r = nginx.get("/literal/ok")
    assert r.status == 502
    assert r.header("X-Upstream-Cause") == "connect_refused"
    entries = nginx.access_for("/literal/ok", count=2)
    assert entries[0]["upstream_cause"] == ""
    assert entries[1]["upstream_cause"] == "connect_refused"
    assert "(111: Connection refused)" in entries[1]["upstream_cause_detail"]
    # and the pair is told apart in every place
    assert nginx.access_for("/literal/crash")[0]["upstream_cause"] in ("upstream_prematurely_closed", "upstream_reset")


def test_both_502s_look_identical_without_the_module_but_not_with_it(setup):
    nginx, _, _ = setup
    a, b = nginx.get("/literal/ping"), nginx.get("/gone/ping")
    assert a.status == b.status == 502
    assert a.body == b.body
    assert {a.header("X-Upstream-Cause"), b.header("X-Upstream-Cause")} == {
        "upstream_prematurely_closed", "connect_refused"}


def test_success_has_no_cause(setup):
    nginx, go, _ = setup
    r = nginx.get("/group/ok")
    assert r.status == 200 and r.body == b"ok\n"
    assert r.header("X-Upstream-Cause") is None
    (e,) = nginx.access_for("/group/ok")
    assert e["upstream_cause"] == "" and e["upstream_cause_detail"] == ""
    assert e["upstream_cause_list"] == "-"
    assert nginx.cause_lines() == []


def test_plain_log_format(setup):
    nginx, _, _ = setup
    nginx.get("/gone/x")
    nginx.get("/literal/ok")
    nginx.access_for("/literal/ok")
    lines = nginx.plain_log.read_text().splitlines()
    assert f'502 /gone/x cause=connect_refused list="connect_refused" detail="{REFUSED_DETAIL}"' in lines
    assert '200 /literal/ok cause= list="-" detail=""' in lines


def test_one_enriched_line_per_failed_request(setup):
    nginx, _, _ = setup
    for _ in range(3):
        nginx.get("/gone/x")
    nginx.access_for("/gone/x", count=3)
    assert len(nginx.cause_lines("/gone/x")) == 3
    assert all(re.search(r"\[error\] \d+#\d+: \*\d+ upstream_cause=connect_refused status=502 ", l)
               for l in nginx.cause_lines("/gone/x"))
