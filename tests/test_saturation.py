"""max_conns: a group whose live servers are all at their limit is saturated
(`max_conns_reached`), not down (`no_live_upstreams`), although nginx logs
`no live upstreams` for both."""
import threading
import time

import pytest

from conftest import dead_port
from test_taxonomy import failure

NO_LIVE = "no live upstreams while connecting to upstream"
SATURATED_HINT = "every live server of the group is at its max_conns limit"


def wait_for_text(path, text, count=1, timeout=10.0):
    """Waits (bounded) until `text` appears `count` times in the file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} x{count} not in {path} after {timeout}s")


@pytest.fixture
def saturated_nginx(nginx_factory, faults):
    refused = dead_port()
    return nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    upstream one {{ server 127.0.0.1:{faults} max_conns=1; }}
    upstream one_zone {{ zone one_zone 64k; server 127.0.0.1:{faults} max_conns=1; }}
    upstream one_hash {{ hash $request_uri consistent; server 127.0.0.1:{faults} max_conns=1; }}
    upstream one_least {{ least_conn; keepalive 4; server 127.0.0.1:{faults} max_conns=1; }}
    upstream full_and_failed {{ server 127.0.0.1:{faults} max_conns=1;
                               server 127.0.0.1:{refused} max_fails=1 fail_timeout=60s; }}
    server {{ listen 127.0.0.1:@PORT@;
        proxy_read_timeout 3s;
        proxy_next_upstream error timeout;
        location /one/ {{ rewrite ^ /silent break; proxy_pass http://one; }}
        location /one_zone/ {{ rewrite ^ /silent break; proxy_pass http://one_zone; }}
        location /one_hash/ {{ rewrite ^ /silent break; proxy_pass http://one_hash; }}
        location /one_least/ {{ proxy_http_version 1.1; proxy_set_header Connection "";
                               rewrite ^ /silent break; proxy_pass http://one_least; }}
        location /full_and_failed/ {{ rewrite ^ /silent break; proxy_pass http://full_and_failed; }}
    }}""")


@pytest.mark.parametrize("group", ["one", "one_zone", "one_hash", "one_least"])
def test_max_conns_reached(saturated_nginx, group, tmp_path):
    nginx = saturated_nginx
    # The first request holds the group's one connection: the fault upstream
    # takes it and stays silent until nginx's read timeout.
    held = {}
    t = threading.Thread(target=lambda: held.setdefault("r", nginx.get(f"/{group}/held")))
    t.start()
    wait_for_text(tmp_path / "faults.log", "request /silent")
    try:
        # Two more find the one server at its limit: 502 at once.
        for n in (1, 2):
            e = failure(nginx, f"/{group}/{n}", 502, "max_conns_reached")
            assert e["upstream_cause_list"] == "max_conns_reached"
            assert e["upstream_cause_detail"] == NO_LIVE
            (line,) = nginx.cause_lines(f"/{group}/{n}")
            assert f'hint="{SATURATED_HINT}' in line
            # nginx's own line is still written, once
            own = [l for l in nginx.error_lines() if NO_LIVE in l and f"/{group}/{n} HTTP" in l
                   and "upstream_cause=" not in l]
            assert len(own) == 1 and "[error]" in own[0], own
    finally:
        t.join(15)
    # the held request ended with the read timeout, as without the module
    assert held["r"].status == 504
    (e,) = nginx.access_for(f"/{group}/held")
    assert e["upstream_cause"] == "read_timeout"


def test_one_full_server_and_one_failed_is_saturation(saturated_nginx, tmp_path):
    nginx = saturated_nginx
    held = {}
    t = threading.Thread(target=lambda: held.setdefault("r", nginx.get("/full_and_failed/held")))
    t.start()
    wait_for_text(tmp_path / "faults.log", "request /silent")
    try:
        # Round robin may try the refused server first for the held request;
        # either way, once it has failed (max_fails=1) and the other is full,
        # nothing is left but a full server.
        for n in range(1, 4):
            r = nginx.get(f"/full_and_failed/{n}")
            (e,) = nginx.access_for(f"/full_and_failed/{n}")
            if e["upstream_cause"] == "max_conns_reached":
                break
            # the refused server had not failed yet: this request made it fail
            assert e["upstream_cause_list"].startswith("connect_refused"), e
        assert r.status == 502 and r.header("X-Upstream-Cause") == "max_conns_reached", e
        assert e["upstream_cause_detail"] == NO_LIVE
    finally:
        t.join(15)


def test_all_failed_is_still_no_live_upstreams(nginx_factory):
    """Failures, not limits: every server failed with max_fails=1 (and one
    of them has a max_conns it never reached)."""
    a, b = dead_port(), dead_port()
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    upstream failing {{ zone failing 64k;
                       server 127.0.0.1:{a} max_fails=1 fail_timeout=60s max_conns=1;
                       server 127.0.0.1:{b} max_fails=1 fail_timeout=60s; }}
    upstream down {{ server 127.0.0.1:{a} down max_conns=1; }}
    server {{ listen 127.0.0.1:@PORT@;
        location /failing/ {{ proxy_pass http://failing/; }}
        location /down/ {{ proxy_pass http://down/; }}
    }}""")
    failure(nginx, "/failing/1", 502, "connect_refused")
    e = failure(nginx, "/failing/2", 502, "no_live_upstreams")
    assert e["upstream_cause_detail"] == NO_LIVE
    failure(nginx, "/down/1", 502, "no_live_upstreams")
