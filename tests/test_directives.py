"""The directives: values, inheritance and `nginx -t` errors in nginx's own
style ([emerg], directive name, file:line)."""
import pytest

from conftest import Nginx, dead_port, free_port, request


def line_of(conf_path, needle):
    for n, line in enumerate(conf_path.read_text().splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {conf_path}")


def check_fails(tmp_path, body, needle, message, main_extra=""):
    n = Nginx(tmp_path / "conf", body, main_extra=main_extra)
    res = n.test_config()
    assert res.returncode != 0, res.stderr
    where = f"in {n.conf}:{line_of(n.conf, needle)}"
    expected = f"[emerg] {message} {where}"
    assert expected in res.stderr, f"{expected!r} not in:\n{res.stderr}"


BAD_VALUES = [
    ("upstream_cause maybe;", 'invalid value "maybe" in "upstream_cause" directive, it must be "on" or "off"'),
    ("upstream_cause_header X-Bad:Name;",
     'invalid value "X-Bad:Name" in "upstream_cause_header" directive, it must be "off" or a header name'),
    ('upstream_cause_header "";',
     'invalid value "" in "upstream_cause_header" directive, it must be "off" or a header name'),
    ("upstream_cause_log loud;",
     'invalid value "loud" in "upstream_cause_log" directive, it must be "off", "emerg", "alert", "crit", '
     '"error", "warn", "notice" or "info"'),
    ("upstream_cause_log debug;",
     'invalid value "debug" in "upstream_cause_log" directive, it must be "off", "emerg", "alert", "crit", '
     '"error", "warn", "notice" or "info"'),
    ('upstream_cause_proxy_status "my proxy";',
     'invalid value "my proxy" in "upstream_cause_proxy_status" directive, it must be "off", "on" or a name '
     '(a Structured Fields token of at most 64 bytes)'),
    ("upstream_cause_proxy_status 1gw;",
     'invalid value "1gw" in "upstream_cause_proxy_status" directive, it must be "off", "on" or a name '
     '(a Structured Fields token of at most 64 bytes)'),
    (f"upstream_cause_proxy_status {'g' * 65};",
     f'invalid value "{"g" * 64}..." in "upstream_cause_proxy_status" directive, it must be "off", "on" or a name '
     '(a Structured Fields token of at most 64 bytes)'),
    ("upstream_cause_proxy_status;", 'invalid number of arguments in "upstream_cause_proxy_status" directive'),
    ("upstream_cause on off;", 'invalid number of arguments in "upstream_cause" directive'),
    ("upstream_cause_header;", 'invalid number of arguments in "upstream_cause_header" directive'),
    ("upstream_cause_log error warn;", 'invalid number of arguments in "upstream_cause_log" directive'),
]


LONG = "A" * 1000
# nginx cuts an [emerg] message at 1024 bytes: a long wrong value is quoted
# cut, so that the directive's name stays in the message.
BAD_VALUES += [
    (f"upstream_cause {LONG};",
     f'invalid value "{LONG[:64]}..." in "upstream_cause" directive, it must be "on" or "off"'),
    (f"upstream_cause_header {LONG};",
     f'invalid value "{LONG[:64]}..." in "upstream_cause_header" directive, it must be "off" or a header name'),
    (f"upstream_cause_log {LONG};",
     f'invalid value "{LONG[:64]}..." in "upstream_cause_log" directive, it must be "off", "emerg", "alert", '
     '"crit", "error", "warn", "notice" or "info"'),
]


@pytest.mark.parametrize("directive,message", BAD_VALUES, ids=[d[:40] for d, _ in BAD_VALUES])
@pytest.mark.parametrize("level", ["http", "server", "location"])
def test_a_wrong_value_fails_nginx_t(tmp_path, directive, message, level):
    placed = {
        "http": f"{directive}\n server {{ listen 127.0.0.1:@PORT@; }}",
        "server": f"server {{ listen 127.0.0.1:@PORT@;\n {directive}\n }}",
        "location": f"server {{ listen 127.0.0.1:@PORT@;\n location / {{\n {directive}\n }} }}",
    }[level]
    check_fails(tmp_path, placed, directive, message)


@pytest.mark.parametrize("directive", ["upstream_cause on;", "upstream_cause_header X-A;", "upstream_cause_log warn;",
                                       "upstream_cause_proxy_status on;"])
def test_a_duplicate_fails_nginx_t(tmp_path, directive):
    name = directive.split()[0]
    body = f"server {{ listen 127.0.0.1:@PORT@;\n location / {{\n {directive}\n {directive} # again\n }} }}"
    check_fails(tmp_path, body, "# again", f'"{name}" directive is duplicate')


@pytest.mark.parametrize("directive", ["upstream_cause on;", "upstream_cause_header X-A;", "upstream_cause_log warn;",
                                       "upstream_cause_proxy_status on;"])
def test_outside_http_is_not_allowed(tmp_path, directive):
    name = directive.split()[0]
    check_fails(tmp_path, "server { listen 127.0.0.1:@PORT@; }", directive,
                f'"{name}" directive is not allowed here', main_extra=directive)


def test_inside_upstream_block_is_not_allowed(tmp_path):
    body = f"upstream b {{ server 127.0.0.1:{dead_port()};\n upstream_cause off;\n }}\n" \
           "server { listen 127.0.0.1:@PORT@; }"
    check_fails(tmp_path, body, "upstream_cause off;", '"upstream_cause" directive is not allowed here')


def test_every_valid_value_passes_nginx_t(tmp_path):
    levels = ["off", "emerg", "alert", "crit", "error", "warn", "notice", "info"]
    locs = "\n".join(f"location /{l} {{ upstream_cause_log {l}; upstream_cause_header X-Cause-{l}; }}"
                     for l in levels)
    body = ("upstream_cause on; upstream_cause_header off; upstream_cause_log error;\n"
            "server { listen 127.0.0.1:@PORT@; upstream_cause off; upstream_cause_header x_underscore_ok;\n"
            f"{locs}\n location /h {{ upstream_cause_header off; }}\n"
            " location /p1 { upstream_cause_proxy_status on; } location /p2 { upstream_cause_proxy_status off; }\n"
            " location /p3 { upstream_cause_proxy_status gw-1.example:8443/x; } }")
    res = Nginx(tmp_path / "conf", body).test_config()
    assert res.returncode == 0, res.stderr
    assert "test is successful" in res.stderr


def test_inheritance_http_server_location(nginx_factory, tmp_path):
    """http sets, server overrides, location overrides again; an unset
    level inherits from the nearest enclosing one."""
    refused = dead_port()
    other = free_port()
    body = f"""
    upstream_cause_header X-Http-Level;
    upstream_cause_log warn;
    server {{
        listen 127.0.0.1:@PORT@;
        location /inherits/ {{ proxy_pass http://127.0.0.1:{refused}/; }}
        location /loc/ {{ upstream_cause_header X-Loc-Level; upstream_cause_log crit;
                          proxy_pass http://127.0.0.1:{refused}/; }}
        location /no-header/ {{ upstream_cause_header off; proxy_pass http://127.0.0.1:{refused}/; }}
    }}
    server {{
        listen 127.0.0.1:{other};
        upstream_cause_header X-Srv-Level;
        upstream_cause off;
        location /srv/ {{ proxy_pass http://127.0.0.1:{refused}/; }}
        location /on/ {{ upstream_cause on; proxy_pass http://127.0.0.1:{refused}/; }}
    }}
    """
    nginx = nginx_factory(body)
    r = nginx.get("/inherits/x")
    assert r.status == 502 and r.header("X-Http-Level") == "connect_refused"
    assert nginx.wait_error(r"\[warn\] .*upstream_cause=connect_refused .*/inherits/x")

    r = nginx.get("/loc/x")
    assert r.header("X-Loc-Level") == "connect_refused" and r.header("X-Http-Level") is None
    assert nginx.wait_error(r"\[crit\] .*upstream_cause=connect_refused .*/loc/x")

    r = nginx.get("/no-header/x")
    assert r.status == 502
    assert not [k for k, _ in r.headers if k.lower().startswith("x-") and "level" in k.lower()]

    r = request(other, "/srv/x")
    assert r.status == 502 and r.header("X-Srv-Level") is None
    r = request(other, "/on/x")
    assert r.header("X-Srv-Level") == "connect_refused"
    assert nginx.access_for("/on/x")[0]["upstream_cause"] == "connect_refused"
    assert nginx.access_for("/srv/x")[0]["upstream_cause"] == ""
    assert nginx.cause_lines("/srv/x") == []
