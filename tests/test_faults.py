"""The fault upstream's broken answers, as the module classifies them."""
import http.client

import pytest

FAULTS = [
    # path, status, cause, detail
    ("/close", 502, "upstream_prematurely_closed",
     "upstream prematurely closed connection while reading response header from upstream"),
    ("/half", 502, "upstream_prematurely_closed",
     "upstream prematurely closed connection while reading response header from upstream"),
    ("/reset", 502, "upstream_reset",
     "recv() failed (104: Connection reset by peer) while reading response header from upstream"),
    ("/silent", 504, "read_timeout",
     "upstream timed out (110: Connection timed out) while reading response header from upstream"),
    ("/invalid", 502, "invalid_header",
     'upstream sent invalid header: "X-Bad\\x01..." while reading response header from upstream'),
    ("/big", 502, "header_too_big", "upstream sent too big header while reading response header from upstream"),
]


@pytest.fixture
def nginx(nginx_factory, faults):
    return nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ proxy_pass http://127.0.0.1:{faults}; proxy_read_timeout 1s; }}
    }}""")


@pytest.mark.parametrize("path,status,cause,detail", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_is_classified(nginx, path, status, cause, detail):
    nginx.check_failure(path, nginx.get(path), status, cause, listed=cause, detail=detail)


def test_truncated_body_after_the_header(nginx):
    """The 200 header went out, then the upstream closed: no header can be
    added any more, the variables and the line say it."""
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=15)
    try:
        conn.request("GET", "/truncate")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("X-Upstream-Cause") is None
        with pytest.raises(http.client.IncompleteRead):
            r.read()
    finally:
        conn.close()
    (e,) = nginx.access_for("/truncate")
    assert e["upstream_cause"] == "response_truncated"
    assert e["upstream_cause_detail"] == "upstream prematurely closed connection while reading upstream"
    (line,) = nginx.cause_lines("/truncate")
    assert "upstream_cause=response_truncated status=200 " in line
