"""Across nginx's upstream machinery: every *_pass module, retries and
internal redirects, HTTP/2 clients, subrequests."""
import subprocess

import pytest

from conftest import HTTP2_LISTEN, HTTP2_ON, REFUSED_DETAIL, dead_port

CLOSED = "upstream prematurely closed connection while reading response header from upstream"


@pytest.fixture
def protocols(nginx_factory, raw_faults):
    refused = dead_port()
    locations = []
    for proto, directive in (("grpc", "grpc_pass"), ("fastcgi", "fastcgi_pass"), ("uwsgi", "uwsgi_pass"),
                             ("scgi", "scgi_pass")):
        for name, port in (("refused", refused), ("close", raw_faults["close"]), ("invalid", raw_faults["invalid"])):
            locations.append(f"location /{proto}/{name} {{ {directive} 127.0.0.1:{port}; }}")
    body = "upstream_cause_header X-Upstream-Cause;\n" \
           "server { listen 127.0.0.1:@PORT@;\n" + "\n".join(locations) + "\n}"
    return nginx_factory(body)


@pytest.mark.parametrize("proto", ["grpc", "fastcgi", "uwsgi", "scgi"])
def test_every_pass_module(protocols, proto):
    nginx = protocols
    for name, cause, detail in (
        ("refused", "connect_refused", REFUSED_DETAIL),
        ("close", "upstream_prematurely_closed", None),
        ("invalid", "invalid_header", None),
    ):
        uri = f"/{proto}/{name}"
        e, _ = nginx.check_failure(uri, nginx.get(uri), 502, cause, listed=cause, detail=detail)
        if detail is None:
            assert e["upstream_cause_detail"].endswith(" while reading response header from upstream"), e


@pytest.fixture
def retries(nginx_factory, go_service, faults):
    refused, go = dead_port(), go_service.port
    return nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    upstream own502_then_go {{ server 127.0.0.1:{faults}; server 127.0.0.1:{go}; }}
    upstream close_then_go {{ server 127.0.0.1:{faults}; server 127.0.0.1:{go}; }}
    upstream close_then_go_2 {{ server 127.0.0.1:{faults}; server 127.0.0.1:{go}; }}
    upstream silent_then_go {{ server 127.0.0.1:{faults}; server 127.0.0.1:{go}; }}
    upstream refused_then_go {{ server 127.0.0.1:{refused}; server 127.0.0.1:{go}; }}
    server {{ listen 127.0.0.1:@PORT@;
        location /http502/ {{ proxy_next_upstream error http_502; proxy_pass http://own502_then_go/own502; }}
        location /post/ {{ proxy_pass http://close_then_go/close; }}
        location /post-retried/ {{ proxy_next_upstream error non_idempotent; proxy_pass http://close_then_go_2/close; }}
        location /timeout/ {{ proxy_next_upstream error timeout; proxy_read_timeout 1s;
                              proxy_pass http://silent_then_go/silent; }}
        location /redirect/ {{ proxy_pass http://127.0.0.1:{refused}; proxy_intercept_errors on;
                               error_page 502 = @second; }}
        location @second {{ rewrite ^ /ok break; proxy_pass http://refused_then_go; }}
    }}""")


def test_next_upstream_http_502(retries):
    r = retries.get("/http502/")
    assert r.status == 404  # the Go service has no /own502
    (e,) = retries.access_for("/http502/")
    assert e["upstream_status"] == "502, 404"
    assert e["upstream_cause_list"] == "via_upstream, -"
    assert e["upstream_cause"] == ""


def test_next_upstream_timeout(retries):
    r = retries.get("/timeout/")
    assert r.status == 404 and r.header("X-Upstream-Cause") is None  # the Go service has no /silent
    (e,) = retries.access_for("/timeout/")
    assert e["upstream_status"] == "504, 404"
    assert e["upstream_cause_list"] == "read_timeout, -"


def test_non_idempotent(retries):
    r = retries.get("/post/", method="POST", body=b"x")
    assert r.status == 502 and r.header("X-Upstream-Cause") == "upstream_prematurely_closed"
    r = retries.get("/post-retried/", method="POST", body=b"x")
    assert r.status == 404 and r.header("X-Upstream-Cause") is None
    (e,) = retries.access_for("/post-retried/")
    assert e["upstream_status"] == "502, 404"
    assert e["upstream_cause_list"] == "upstream_prematurely_closed, -"


def test_internal_redirect_to_a_second_upstream(retries):
    r = retries.get("/redirect/x")
    assert r.status == 200 and r.body == b"ok\n" and r.header("X-Upstream-Cause") is None
    (e,) = retries.access_for("/redirect/x")
    addrs = e["upstream_addr"]
    assert addrs.count(" : ") == 1 and addrs.count(", ") == 1, addrs
    assert e["upstream_status"] == "502 : 502, 200"
    assert e["upstream_cause_list"] == "connect_refused : connect_refused, -"
    assert e["upstream_cause"] == ""


def curl(*args):
    res = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code} %header{x-upstream-cause}",
                          *args], capture_output=True, text=True, timeout=30)
    return res.stdout.split(" ", 2)


def test_http2_clients(nginx_factory, go_service):
    refused = dead_port()
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@{HTTP2_LISTEN}; {HTTP2_ON}
        location /gone/ {{ proxy_pass http://127.0.0.1:{refused}/; }}
        location /go/ {{ proxy_pass http://127.0.0.1:{go_service.port}/; }}
    }}""")
    base = f"http://127.0.0.1:{nginx.port}"
    assert curl("--http2-prior-knowledge", f"{base}/gone/x") == ["2", "502", "connect_refused"]
    assert curl("--http2-prior-knowledge", f"{base}/go/ping") == ["2", "502", "upstream_prematurely_closed"]
    assert curl("--http2-prior-knowledge", f"{base}/go/ok") == ["2", "200", ""]
    assert nginx.access_for("/gone/x")[0]["upstream_cause"] == "connect_refused"
    assert nginx.access_for("/go/ping")[0]["upstream_cause_detail"] == CLOSED
    assert len(nginx.cause_lines("/gone/x")) == 1


def test_subrequests_keep_their_causes_to_themselves(nginx_factory, go_service, tmp_path):
    refused, go = dead_port(), go_service.port
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        location /auth-ok/ {{ auth_request /auth-go; proxy_pass http://127.0.0.1:{refused}/; }}
        location /auth-fails/ {{ auth_request /auth-gone; proxy_pass http://127.0.0.1:{go}/; }}
        location = /auth-go {{ internal; proxy_pass http://127.0.0.1:{go}/ok; }}
        location = /auth-gone {{ internal; proxy_pass http://127.0.0.1:{refused}/; }}
        location /ssi/ {{ ssi on; alias {tmp_path}/ssi/; }}
        location /gone/ {{ proxy_pass http://127.0.0.1:{refused}/; }}
    }}""")
    (tmp_path / "ssi").mkdir()
    (tmp_path / "ssi/page.html").write_text('before <!--# include virtual="/gone/part" --> after\n')

    # the main request fails, its auth subrequest succeeded
    r = nginx.get("/auth-ok/x")
    assert r.status == 502 and r.header("X-Upstream-Cause") == "connect_refused"
    (e,) = nginx.access_for("/auth-ok/x")
    assert e["upstream_cause"] == "connect_refused"
    # the auth subrequest fails: auth_request answers 500, the main request
    # itself never reached an upstream
    r = nginx.get("/auth-fails/x")
    assert r.status == 500 and r.header("X-Upstream-Cause") is None
    (e,) = nginx.access_for("/auth-fails/x")
    assert e["upstream_cause"] == ""
    assert nginx.cause_lines("/auth-fails/x") == []
    # an SSI include of a failing location: the page is a 200 without cause
    r = nginx.get("/ssi/page.html")
    assert r.status == 200 and r.body.startswith(b"before ") and r.header("X-Upstream-Cause") is None
    (e,) = nginx.access_for("/ssi/page.html")
    assert e["upstream_cause"] == "" and e["upstream_cause_list"] == ""
