"""upstream_cause_zone / upstream_cause_metrics: exact counts across two
workers, reloads, overflow, the exposition format."""
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import NO_KEEPALIVE, Nginx, dead_port

FAMILIES = {
    "nginx_upstream_cause_total": "counter",
    "nginx_upstream_cause_responses_total": "counter",
    "nginx_upstream_cause_zone_series": "gauge",
    "nginx_upstream_cause_zone_series_max": "gauge",
    "nginx_upstream_cause_zone_dropped_total": "counter",
}


def scrape(nginx):
    r = nginx.get("/metrics")
    assert r.status == 200
    assert r.header("Content-Type") == "text/plain; version=0.0.4"
    text = r.body.decode()
    samples = {}
    seen = {}
    for fam in text_string_to_metric_families(text):
        seen[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    # the parser drops the _total suffix from counter family names
    for name, typ in FAMILIES.items():
        assert f"# TYPE {name} {typ}\n" in text and f"# HELP {name} " in text
    return text, samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def conf(a, b, go, zone="upstream_cause_zone uc 1m;"):
    return f"""
    {zone}
    upstream both_refuse {{ server 127.0.0.1:{a} max_fails=0; server 127.0.0.1:{b} max_fails=0; }}
    upstream go {{ server 127.0.0.1:{go}; {NO_KEEPALIVE} }}
    server {{ listen 127.0.0.1:@PORT@;
        location /retry/ {{ proxy_pass http://both_refuse/; }}
        location /gone/ {{ proxy_pass http://127.0.0.1:{a}/; }}
        location /go/ {{ proxy_pass http://go/; }}
        location /off/ {{ upstream_cause off; proxy_pass http://127.0.0.1:{a}/; }}
        location = /metrics {{ upstream_cause_metrics; }}
    }}"""


def traffic(nginx, n):
    """n of each, from 8 concurrent clients (both workers get some)."""
    uris = [f"/retry/{i}" for i in range(n)] + [f"/gone/{i}" for i in range(n)] + \
           [f"/go/ping?{i}" for i in range(n)] + [f"/go/bad-gateway?{i}" for i in range(n)] + \
           [f"/go/ok?{i}" for i in range(n)] + [f"/off/{i}" for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda u: nginx.get(u).status, uris))
    assert statuses.count(200) == n and statuses.count(502) == 5 * n
    for u in uris:
        nginx.access_for(u)


def expected(a, b, go, n):
    A, B, G = f"127.0.0.1:{a}", f"127.0.0.1:{b}", f"127.0.0.1:{go}"
    return [
        ("nginx_upstream_cause_total", dict(upstream="both_refuse", peer=A, cause="connect_refused"), n),
        ("nginx_upstream_cause_total", dict(upstream="both_refuse", peer=B, cause="connect_refused"), n),
        ("nginx_upstream_cause_total", dict(upstream=A, peer=A, cause="connect_refused"), n),
        ("nginx_upstream_cause_total", dict(upstream="go", peer=G, cause="upstream_prematurely_closed"), n),
        ("nginx_upstream_cause_total", dict(upstream="go", peer=G, cause="via_upstream"), n),
        ("nginx_upstream_cause_responses_total", dict(upstream="both_refuse", cause="connect_refused", status="502"), n),
        ("nginx_upstream_cause_responses_total", dict(upstream=A, cause="connect_refused", status="502"), n),
        ("nginx_upstream_cause_responses_total", dict(upstream="go", cause="upstream_prematurely_closed", status="502"), n),
        ("nginx_upstream_cause_responses_total", dict(upstream="go", cause="via_upstream", status="502"), n),
    ]


def check_counts(samples, want):
    got = {k: v for k, v in samples.items()
           if k[0] in ("nginx_upstream_cause_total", "nginx_upstream_cause_responses_total")}
    assert got == {(n, tuple(sorted(l.items()))): v for n, l, v in want}


@pytest.fixture
def counted(nginx_factory, go_service):
    a, b = dead_port(), dead_port()
    nginx = nginx_factory(conf(a, b, go_service.port), workers=2)
    return nginx, a, b, go_service.port


def test_exact_counts_across_two_workers(counted):
    nginx, a, b, go = counted
    n = 15
    traffic(nginx, n)
    pids = {int(m) for m in re.findall(r"\] (\d+)#\d+: \*\d+ upstream_cause=", "\n".join(nginx.error_lines()))}
    assert len(pids) == 2, "both workers served failing requests"
    text, samples = scrape(nginx)
    check_counts(samples, expected(a, b, go, n))
    assert value(samples, "nginx_upstream_cause_zone_series") == 9
    assert value(samples, "nginx_upstream_cause_zone_series_max") == 1985  # 3/4 of (1m - 1m/64 - 16k) at 384 bytes a series (src/zone.rs, layout)
    # a stable order: the same scrape twice
    assert scrape(nginx)[0].split("# HELP nginx_upstream_cause_zone_series ")[0] == \
        text.split("# HELP nginx_upstream_cause_zone_series ")[0]


def workers(nginx):
    pid = nginx.proc.pid
    return set(open(f"/proc/{pid}/task/{pid}/children").read().split())


def reload(nginx, new_conf=None):
    """SIGHUP, then wait (bounded) until every old worker has exited."""
    if new_conf is not None:
        nginx.conf.write_text(new_conf)
    old = workers(nginx)
    os.kill(nginx.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 15
    while True:
        now = workers(nginx)
        if not (old & now) and len(now) == 2:
            return
        assert time.monotonic() < deadline, f"old workers {old & now} still there"
        time.sleep(0.05)


def test_counts_survive_a_reload_and_go_on(counted):
    nginx, a, b, go = counted
    traffic(nginx, 5)
    reload(nginx)
    _, samples = scrape(nginx)
    check_counts(samples, expected(a, b, go, 5))
    # after the reload, the access log entries are new lines for new URIs
    for i in range(5):
        assert nginx.get(f"/retry/again{i}").status == 502
        nginx.access_for(f"/retry/again{i}")
    _, samples = scrape(nginx)
    A = f"127.0.0.1:{a}"
    assert value(samples, "nginx_upstream_cause_total", upstream="both_refuse", peer=A, cause="connect_refused") == 10
    assert value(samples, "nginx_upstream_cause_responses_total", upstream="both_refuse",
                 cause="connect_refused", status="502") == 10


def test_a_new_size_starts_afresh_and_says_so(counted):
    nginx, a, b, go = counted
    traffic(nginx, 2)
    text = nginx.conf.read_text().replace("upstream_cause_zone uc 1m;", "upstream_cause_zone uc 2m;")
    reload(nginx, text)
    assert nginx.wait_error(r"\[notice\] .*upstream_cause_zone \"uc\" size changed from 1048576 to 2097152: "
                            r"its counters start from zero")
    _, samples = scrape(nginx)
    assert value(samples, "nginx_upstream_cause_zone_series") == 0


def test_overflow_goes_to_peer_other_with_one_warning(nginx_factory):
    ports = [dead_port() for _ in range(80)]
    nginx = nginx_factory("""
    upstream_cause_zone tiny 32k;
    server { listen 127.0.0.1:@PORT@;
        location /p/ { proxy_pass http://127.0.0.1:$arg_port; }
        location = /metrics { upstream_cause_metrics; }
    }""", workers=2)
    for p in ports:
        assert nginx.get(f"/p/?port={p}").status == 502
        nginx.access_for(f"/p/?port={p}")
    text, samples = scrape(nginx)
    cap = value(samples, "nginx_upstream_cause_zone_series_max")
    assert 0 < cap < 2 * len(ports)
    other = [k for k in samples if dict(k[1]).get("peer") == "other" or dict(k[1]).get("upstream") == "other"]
    assert other, text
    attempts = sum(v for (n, _), v in samples.items() if n == "nginx_upstream_cause_total")
    responses = sum(v for (n, _), v in samples.items() if n == "nginx_upstream_cause_responses_total")
    assert attempts == len(ports) and responses == len(ports), "no increment lost"
    assert value(samples, "nginx_upstream_cause_zone_dropped_total") == 0
    warnings = [l for l in nginx.error_lines() if "is full" in l]
    assert len(warnings) == 1 and "[warn]" in warnings[0] and 'upstream_cause_zone "tiny"' in warnings[0]


def test_label_values_are_escaped(nginx_factory):
    refused = dead_port()
    nginx = nginx_factory(f"""
    upstream_cause_zone uc 1m;
    upstream "we\\"ird\\\\name" {{ server 127.0.0.1:{refused}; }}
    server {{ listen 127.0.0.1:@PORT@;
        location / {{ proxy_pass "http://we\\"ird\\\\name"; }}
        location = /metrics {{ upstream_cause_metrics; }}
    }}""")
    assert nginx.get("/x").status == 502
    nginx.access_for("/x")
    text, samples = scrape(nginx)
    assert 'upstream="we\\"ird\\\\name"' in text
    assert value(samples, "nginx_upstream_cause_total", upstream='we"ird\\name', peer=f"127.0.0.1:{refused}",
                 cause="connect_refused") == 1


def test_scrape_methods(counted):
    nginx, *_ = counted
    assert nginx.get("/metrics", method="HEAD").status == 200
    assert nginx.get("/metrics", method="POST", body=b"x").status == 405
    assert nginx.get("/metrics", method="DELETE").status == 405


@pytest.mark.parametrize("body,message", [
    ("upstream_cause_zone uc 4k;", 'zone size "4k" in "upstream_cause_zone" directive is too small, the least is 32k'),
    ("upstream_cause_zone uc lots;", 'invalid zone size "lots" in "upstream_cause_zone" directive'),
    ("upstream_cause_zone uc 1m; upstream_cause_zone ud 1m;", '"upstream_cause_zone" directive is duplicate'),
    ("upstream_cause_zone uc " + "9" * 1000 + ";",
     'invalid zone size "' + "9" * 64 + '..." in "upstream_cause_zone" directive'),
    ("server { listen 127.0.0.1:@PORT@; upstream_cause_zone uc 1m; }", '"upstream_cause_zone" directive is not allowed here'),
    ("server { listen 127.0.0.1:@PORT@; location /m { upstream_cause_metrics on; } }",
     'invalid number of arguments in "upstream_cause_metrics" directive'),
])
def test_bad_zone_directives_fail_nginx_t(tmp_path, body, message):
    n = Nginx(tmp_path / "conf", body)
    res = n.test_config()
    assert res.returncode != 0
    assert f"[emerg] {message}" in res.stderr, res.stderr


def test_metrics_without_a_zone_is_said_at_the_metrics_line(tmp_path):
    # checked at the end of the http block, said where the directive is
    n = Nginx(tmp_path / "conf", "server { listen 127.0.0.1:@PORT@;\n location /m {\n"
              " upstream_cause_metrics;\n }\n location /n { upstream_cause_metrics; }\n }")
    res = n.test_config()
    assert res.returncode != 0
    line = next(i for i, l in enumerate(n.conf.read_text().splitlines(), 1) if "upstream_cause_metrics" in l)
    expected = f'[emerg] "upstream_cause_metrics" requires an "upstream_cause_zone" in {n.conf}:{line}\n'
    assert expected in res.stderr, res.stderr


def test_labels_are_the_access_logs_up_to_128_bytes(nginx_factory):
    # two groups whose names share their first 64 bytes, and a unix peer
    # whose path is longer than 64 bytes (and within the 107 a unix socket
    # path may have): each its own series, labels whole
    a, b = dead_port(), dead_port()
    long = "backend_" + "x" * 60
    sock = f"/tmp/uc-{os.getpid()}-no-such-directory-{'d' * 50}/gone.sock"
    nginx = nginx_factory(f"""
    upstream_cause_zone uc 1m;
    upstream {long}_one {{ server 127.0.0.1:{a}; }}
    upstream {long}_two {{ server 127.0.0.1:{b}; }}
    server {{ listen 127.0.0.1:@PORT@;
        location /one {{ proxy_pass http://{long}_one; }}
        location /two {{ proxy_pass http://{long}_two; }}
        location /fcgi {{ fastcgi_pass unix:{sock}; }}
        location = /metrics {{ upstream_cause_metrics; }}
    }}""", error_level="error")
    for uri in ("/one", "/two", "/fcgi"):
        assert nginx.get(uri).status == 502
    entries = {uri: nginx.access_for(uri)[0] for uri in ("/one", "/two", "/fcgi")}
    _, samples = scrape(nginx)
    assert len(f"unix:{sock}") > 64
    for uri, up in (("/one", f"{long}_one"), ("/two", f"{long}_two")):
        e = entries[uri]
        assert value(samples, "nginx_upstream_cause_total", upstream=up, peer=e["upstream_addr"],
                     cause=e["upstream_cause"]) == 1, samples
        assert value(samples, "nginx_upstream_cause_responses_total", upstream=up, cause=e["upstream_cause"],
                     status="502") == 1, samples
    # the implicit group of `fastcgi_pass unix:PATH` is named PATH
    fcgi = [(labels, v) for (n, labels), v in samples.items()
            if n == "nginx_upstream_cause_total" and dict(labels)["peer"] == entries["/fcgi"]["upstream_addr"]]
    assert fcgi == [((("cause", "connect_refused"), ("peer", f"unix:{sock}"), ("upstream", sock)), 1)], samples
