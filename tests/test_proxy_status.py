"""upstream_cause_proxy_status: the `Proxy-Status` field (RFC 9209), parsed
as clients parse it, by a Structured Fields parser no one here wrote
(http-sf, from PyPI; scripts/test.sh installs it under .work/pylib)."""
import random
import socket
import subprocess

import pytest

from conftest import HTTP2_LISTEN, HTTP2_ON, dead_port
from test_taxonomy import certs, nxdomain_resolver, serving, tls_server  # noqa: F401 (fixtures)

http_sf = pytest.importorskip("http_sf", reason="http-sf is not installed (scripts/test.sh installs it)")


def members(value):
    """The field as a client sees it: (name, params) per member."""
    parsed = http_sf.parse(value.encode("latin-1"), tltype="list")
    return [(str(item), dict(params)) for item, params in parsed]


def ours(value, name="nginx"):
    """nginx's member: the last one."""
    ms = members(value)
    assert ms and ms[-1][0] == name, ms
    return ms[-1][1]


@pytest.fixture
def upstream_ps():
    """An upstream that answers 503 with the Proxy-Status bytes the request
    path carries in hex (`/ps/<hex>`), or none."""

    def handle(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        path = data.split(b" ", 2)[1]
        value = bytes.fromhex(path.rsplit(b"/", 1)[1].decode()) if b"/ps/" in path else None
        head = b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n"
        if value is not None:
            head += b"Proxy-Status: " + value + b"\r\n"
        conn.sendall(head + b"\r\n")

    yield from serving(handle)


@pytest.fixture
def nginx(nginx_factory, faults, go_service, upstream_ps):
    refused = dead_port()
    return nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    upstream_cause_proxy_status on;
    upstream app {{ server 127.0.0.1:{refused}; }}
    server {{ listen 127.0.0.1:@PORT@;
        proxy_read_timeout 300ms;
        location /refused/ {{ proxy_pass http://app; }}
        location /named/ {{ upstream_cause_proxy_status gw-1.example; proxy_pass http://app; }}
        location /off/ {{ upstream_cause_proxy_status off; proxy_pass http://127.0.0.1:{upstream_ps}; }}
        location /faults/ {{ proxy_pass http://127.0.0.1:{faults}/; }}
        location /go/ {{ proxy_pass http://127.0.0.1:{go_service.port}/; }}
        location /ps/ {{ proxy_pass http://127.0.0.1:{upstream_ps}; }}
        location /intercepted/ {{ proxy_intercept_errors on; error_page 502 503 /oops.html;
                                  proxy_pass http://127.0.0.1:{upstream_ps}/ps/; }}
        location /paged/ {{ error_page 502 /oops.html; proxy_pass http://app; }}
        location = /oops.html {{ return 200 "sorry\\n"; }}
    }}""")


def field(r):
    v = r.header("Proxy-Status")
    assert isinstance(v, str), (r.status, r.headers)  # exactly one field line
    return v


CASES = [
    # uri, status, cause, error type
    ("/refused/x", 502, "connect_refused", "connection_refused"),
    ("/faults/close", 502, "upstream_prematurely_closed", "connection_terminated"),
    ("/faults/reset", 502, "upstream_reset", "connection_terminated"),
    ("/faults/silent", 504, "read_timeout", "http_response_timeout"),
    ("/faults/invalid", 502, "invalid_header", "http_protocol_error"),
    ("/faults/big", 502, "header_too_big", "http_response_header_section_size"),
]


@pytest.mark.parametrize("uri,status,cause,error", CASES, ids=[c[2] for c in CASES])
def test_one_member_per_cause_family(nginx, faults, uri, status, cause, error):
    r = nginx.get(uri)
    assert r.status == status and r.header("X-Upstream-Cause") == cause
    value = field(r)
    print(f"{uri}: Proxy-Status: {value}\n  parsed: {members(value)}")
    params = ours(value)
    assert params["error"] == error and params["details"] == cause, params
    assert "received-status" not in params
    (e,) = nginx.access_for(uri)
    assert params["next-hop"] == e["upstream_addr"]


def test_tls_resolver_and_balancer_families(nginx_factory, tls_server, certs, nxdomain_resolver):  # noqa: F811
    """A certificate nginx rejects, a name that does not resolve, a resolver
    that does not answer, and a group with no live server."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a resolver that never answers
    silent.bind(("127.0.0.1", 0))
    down = dead_port()
    try:
        nginx = nginx_factory(f"""
        upstream_cause_proxy_status on;
        upstream all_down {{ server 127.0.0.1:{down} down; }}
        server {{ listen 127.0.0.1:@PORT@;
            location /verify/ {{ proxy_ssl_protocols TLSv1.2 TLSv1.3; proxy_ssl_verify on;
                                 proxy_ssl_name server.test; proxy_ssl_trusted_certificate {certs}/other.crt;
                                 proxy_pass https://127.0.0.1:{tls_server}; }}
            location /nx/ {{ resolver 127.0.0.1:{nxdomain_resolver} ipv6=off;
                             set $backend nosuch.test; proxy_pass http://$backend:{down}; }}
            location /slowdns/ {{ resolver 127.0.0.1:{silent.getsockname()[1]} ipv6=off; resolver_timeout 300ms;
                                  set $backend slow.test; proxy_pass http://$backend:{down}; }}
            location /down/ {{ proxy_pass http://all_down; }}
        }}""")
        for uri, status, error, cause, hop in (
            ("/verify/x", 502, "tls_certificate_error", "tls_verify_failed", f"127.0.0.1:{tls_server}"),
            ("/nx/x", 502, "dns_error", "resolve_failed", None),
            ("/slowdns/x", 502, "dns_timeout", "resolve_failed", None),
            ("/down/x", 502, "destination_unavailable", "no_live_upstreams", "all_down"),
        ):
            r = nginx.get(uri)
            assert r.status == status, (uri, r.status)
            value = field(r)
            print(f"{cause}: Proxy-Status: {value}\n  parsed: {members(value)}")
            params = ours(value)
            assert (params["error"], params["details"], params.get("next-hop")) == (error, cause, hop), (uri, params)
    finally:
        silent.close()


def test_an_upstreams_own_5xx_has_received_status_and_no_error(nginx, go_service):
    r = nginx.get("/go/bad-gateway")
    assert r.status == 502
    value = field(r)
    print(f"via_upstream: Proxy-Status: {value}\n  parsed: {members(value)}")
    assert ours(value) == {"next-hop": f"127.0.0.1:{go_service.port}", "received-status": 502,
                           "details": "via_upstream"}


def test_the_member_name_is_configurable(nginx):
    value = field(nginx.get("/named/x"))
    assert members(value)[-1][0] == "gw-1.example"
    assert ours(value, "gw-1.example")["details"] == "connect_refused"


def test_an_upstream_proxys_member_is_kept_before_ours(nginx, upstream_ps):
    theirs = b'cdn.example; error=http_request_error; details="quota", edge-2'
    r = nginx.get("/ps/" + theirs.hex())
    assert r.status == 503
    value = field(r)
    print(f"kept: Proxy-Status: {value}\n  parsed: {members(value)}")
    ms = members(value)
    assert [m[0] for m in ms] == ["cdn.example", "edge-2", "nginx"], ms
    assert ms[0][1] == {"error": "http_request_error", "details": "quota"}
    assert ms[2][1]["received-status"] == 503 and ms[2][1]["details"] == "via_upstream"


def test_a_malformed_upstream_value_is_dropped_and_noted(nginx, upstream_ps):
    r = nginx.get("/ps/" + b"broken;;, (unclosed".hex())
    value = field(r)
    print(f"malformed: Proxy-Status: {value}\n  parsed: {members(value)}")
    assert [m[0] for m in members(value)] == ["nginx"]
    nginx.wait_error(r"\[info\] .*upstream_cause: the upstream's Proxy-Status is not a valid Structured Fields list: dropped")


def test_error_page_and_intercepted_errors_carry_it(nginx):
    r = nginx.get("/paged/x")
    assert r.status == 502 and r.body == b"sorry\n"
    assert ours(field(r))["details"] == "connect_refused"
    r = nginx.get("/intercepted/" + b"a".hex())
    assert r.status == 503 and r.body == b"sorry\n"
    assert ours(field(r))["details"] == "via_upstream"


def test_head_requests_carry_it(nginx):
    r = nginx.get("/refused/head", method="HEAD")
    assert r.status == 502 and r.body == b""
    assert ours(field(r))["error"] == "connection_refused"


def test_http2_clients_get_it(nginx_factory):
    # a listener of its own: before 1.25.1, `listen ... http2` takes HTTP/2 only
    nginx = nginx_factory(f"""
    upstream_cause_proxy_status on;
    server {{ listen 127.0.0.1:@PORT@{HTTP2_LISTEN}; {HTTP2_ON}
        location /refused/ {{ proxy_pass http://127.0.0.1:{dead_port()}; }}
    }}""")
    res = subprocess.run(["curl", "-s", "-o", "/dev/null", "--http2-prior-knowledge", "-w",
                          "%{http_version} %{http_code} %header{proxy-status}",
                          f"http://127.0.0.1:{nginx.port}/refused/h2"], capture_output=True, text=True, timeout=30)
    version, status, value = res.stdout.split(" ", 2)
    assert (version, status) == ("2", "502"), res
    print(f"HTTP/2: Proxy-Status: {value}\n  parsed: {members(value)}")
    assert ours(value)["details"] == "connect_refused"


def test_off_adds_nothing_and_leaves_the_upstreams_field_alone(nginx, upstream_ps):
    theirs = b"broken;;"
    r = nginx.get("/off/ps/" + theirs.hex())
    assert r.status == 503
    assert r.header("Proxy-Status") == "broken;;"
    assert r.header("X-Upstream-Cause") == "via_upstream"


def test_a_success_is_left_alone(nginx):
    r = nginx.get("/go/ok")
    assert r.status == 200 and r.header("Proxy-Status") is None


FUZZ_ALPHABET = b" \t!\"#$%&'()*+,-./0123456789:;<=>?@ABCXYZabcxyz[\\]^_`{|}~" + bytes(range(0x80, 0x86))


def test_fuzzed_upstream_values_always_parse_with_ours_last(nginx, upstream_ps):
    """Whatever the upstream sends in Proxy-Status, the field a client gets
    parses, and nginx's member is the last. Seeded."""
    seed = random.randrange(1 << 30)
    print(f"fuzz seed {seed}")
    rnd = random.Random(seed)
    pieces = [b"a", b"b;x=1", b"c;y=\"s\"", b"(d e)", b"f;z=?1", b"g;w=:aGk=:", b",", b";", b"=", b"\"", b" ",
              b"1.5", b"-2", b"@1", b"%\"x\"", b"*", b"(", b")"]
    kept = dropped = 0
    for i in range(150):
        if rnd.random() < 0.5:
            value = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 6)))
        else:
            value = bytes(rnd.choice(FUZZ_ALPHABET) for _ in range(rnd.randint(1, 40)))
        value = value.strip(b" \t")
        if not value:
            continue
        r = nginx.get("/ps/" + value.hex())
        v = r.header("Proxy-Status")
        if r.status == 502:
            # nginx refused the upstream's header line itself (a byte it
            # does not take in a field): invalid_header, ours alone
            assert ours(v)["details"] == "invalid_header", (seed, value, v)
            continue
        assert r.status == 503, (seed, value, r.status)
        assert isinstance(v, str), (seed, value, r.headers)
        ms = members(v)
        assert ms[-1][0] == "nginx" and ms[-1][1]["details"] == "via_upstream", (seed, value, v)
        if len(ms) > 1:
            kept += 1
            assert v.startswith(value.decode("latin-1")), (seed, value, v)
        else:
            dropped += 1
            # dropped only what a client's parser refuses too
            with pytest.raises(Exception):
                http_sf.parse(value, tltype="list")
    print(f"kept {kept}, dropped {dropped}")
    assert kept > 0 and dropped > 0
