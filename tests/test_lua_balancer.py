"""Beside lua-nginx-module's `balancer_by_lua` (Debian's
libnginx-mod-http-lua, with the distro's own nginx: the distro mode), which
is how ingress-nginx, Kong and APISIX pick every peer: the peer Lua chose
is the one reported, retries granted by `set_more_tries` are attempts of
their own, and the counters count them."""
import re
from pathlib import Path

import pytest

from conftest import NGINX_BIN, REFUSED_DETAIL, dead_port

MODULES = Path("/usr/lib/nginx/modules")
NDK, LUA = MODULES / "ndk_http_module.so", MODULES / "ngx_http_lua_module.so"

pytestmark = pytest.mark.skipif(
    not (NGINX_BIN == "/usr/sbin/nginx" and NDK.exists() and LUA.exists()),
    reason="Debian's Lua module runs in Debian's nginx only (UPSTREAM_CAUSE_NGINX=distro)")

LOAD = f"load_module {NDK};\nload_module {LUA};"


@pytest.fixture
def lua_nginx(nginx_factory, go_service):
    dead = dead_port()
    nginx = nginx_factory(f"""
    upstream_cause_header X-Upstream-Cause;
    upstream_cause_zone uc 1m;
    upstream lua_retry {{
        server 127.0.0.1:1;   # a placeholder: balancer_by_lua picks the peers
        balancer_by_lua_block {{
            local balancer = require "ngx.balancer"
            local tries = (ngx.ctx.tries or 0) + 1
            ngx.ctx.tries = tries
            if tries == 1 then
                balancer.set_more_tries(1)
                assert(balancer.set_current_peer("127.0.0.1", {dead}))
            elseif ngx.var.uri:find("dead") then
                assert(balancer.set_current_peer("127.0.0.1", {dead}))
            else
                assert(balancer.set_current_peer("127.0.0.1", {go_service.port}))
            end
        }}
    }}
    upstream lua_error {{
        server 127.0.0.1:1;
        balancer_by_lua_block {{ error("no peer for you") }}
    }}
    server {{
        listen 127.0.0.1:@PORT@;
        location /retry/ {{ proxy_pass http://lua_retry/; }}
        location /error/ {{ proxy_pass http://lua_error/; }}
        location = /metrics {{ upstream_cause_metrics; }}
    }}""", main_extra=LOAD)
    return nginx, dead, go_service.port


def scrape(nginx):
    r = nginx.get("/metrics")
    assert r.status == 200
    return r.body.decode()


def test_a_retry_set_by_lua_is_an_attempt_of_its_own(lua_nginx):
    nginx, dead, go = lua_nginx
    r = nginx.get("/retry/ok")
    assert r.status == 200 and r.header("X-Upstream-Cause") is None, r.headers
    (e,) = nginx.access_for("/retry/ok")
    assert e["upstream_addr"] == f"127.0.0.1:{dead}, 127.0.0.1:{go}", e
    assert e["upstream_cause_list"] == "connect_refused, -", e
    assert e["upstream_cause"] == "", e
    assert nginx.cause_lines("/retry/ok") == []

    r = nginx.get("/retry/dead")
    e, line = nginx.check_failure("/retry/dead", r, 502, "connect_refused",
                                  listed="connect_refused, connect_refused", detail=REFUSED_DETAIL, attempts=2)
    assert f"peer=127.0.0.1:{dead} " in line, line

    text = scrape(nginx)
    assert (f'nginx_upstream_cause_total{{upstream="lua_retry",peer="127.0.0.1:{dead}",'
            f'cause="connect_refused"}} 3') in text, text
    assert ('nginx_upstream_cause_responses_total{upstream="lua_retry",cause="connect_refused",'
            'status="502"} 1') in text, text


def test_an_error_in_the_lua_balancer_is_not_an_upstream_failure(lua_nginx):
    nginx, _, _ = lua_nginx
    r = nginx.get("/error/ok")
    assert r.status == 500, r.status
    nginx.wait_error(r"failed to run balancer_by_lua\*.*no peer for you")
    (e,) = nginx.access_for("/error/ok")
    assert r.header("X-Upstream-Cause") is None, r.headers
    assert e["upstream_cause"] == "" and e["upstream_cause_detail"] == "", e
    assert nginx.cause_lines("/error/ok") == []
    assert not re.search(r'upstream="lua_error"', scrape(nginx))
    # nothing of the module's own went wrong
    assert not [l for l in nginx.error_lines() if "[alert]" in l or "[crit]" in l]
