"""contrib/: the alert rules and the Grafana dashboard, checked by
Prometheus's own tools, then evaluated by a real Prometheus (Debian's, on
loopback) that scrapes the module during a burst of failures."""
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import WRAPPER_SLOWDOWN, dead_port, free_port, stop, wait_port
from test_saturation import wait_for_text
from test_taxonomy import certs, serving, tls_server  # noqa: F401 (fixtures)

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
RULES = CONTRIB / "prometheus" / "upstream-cause.rules.yml"
RULES_TEST = CONTRIB / "prometheus" / "upstream-cause.rules.test.yml"
DASHBOARD = CONTRIB / "grafana" / "upstream-cause.json"

pytestmark = pytest.mark.skipif(not shutil.which("promtool") or not shutil.which("prometheus"),
                                reason="Prometheus is not installed (scripts/test.sh installs Debian's prometheus)")


def promtool(*args):
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_rules_are_valid():
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 5 rules found" in r.stdout, r.stdout


def test_rules_unit_tests_pass():
    """Each alert fires on the series it is for, and not on the ones next
    to it (the test file says which)."""
    r = promtool("test", "rules", str(RULES_TEST))
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def alert_rules():
    """(name, expr) of every alert, read from the rules file (plain YAML of
    a known shape: no YAML parser needed)."""
    text = RULES.read_text()
    return re.findall(r"- alert: (\S+)\n(?:\s+#.*\n)*\s+expr: (.+)\n", text)


def dashboard_exprs():
    d = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in d["panels"] for t in p["targets"]]


def test_the_files_have_what_the_readme_says():
    assert [n for n, _ in alert_rules()] == [
        "NginxUpstreamBackendDown", "NginxUpstreamSaturated", "NginxUpstreamCertificateRejected",
        "NginxUpstreamReadTimeouts", "NginxUpstreamCauseZoneDropping"]
    assert len(dashboard_exprs()) == 6


class Prometheus:
    def __init__(self, tmp_path, target_port):
        self.port = free_port()
        self.dir = tmp_path / "prometheus"
        self.dir.mkdir()
        conf = self.dir / "prometheus.yml"
        conf.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: nginx
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
""")
        self.log = open(self.dir / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={conf}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, timeout=30, proc=self.proc)
        self.url = f"http://127.0.0.1:{self.port}"
        # the port opens before the storage: ready says when queries work
        deadline = time.monotonic() + 30 * WRAPPER_SLOWDOWN
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (self.dir / "prometheus.log").read_text()[-2000:]
            time.sleep(0.1)

    def query(self, expr):
        """The instant vector of `expr` through the HTTP API: a list of
        (labels, value)."""
        q = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        return [(s["metric"], float(s["value"][1])) for s in body["data"]["result"]]

    def wait_for(self, expr, want, timeout=30.0):
        """Waits (bounded) until `expr` has the single value `want`."""
        deadline = time.monotonic() + timeout * WRAPPER_SLOWDOWN
        while True:
            got = self.query(expr)
            if [v for _, v in got] == [want] or time.monotonic() > deadline:
                assert [v for _, v in got] == [want], (expr, got)
                return
            time.sleep(0.2)

    def close(self):
        stop(self.proc)
        self.log.close()


def promtool_instant(url, expr):
    """`promtool query instant`: what an operator runs by hand."""
    r = promtool("query", "instant", url, expr)
    assert r.returncode == 0, (expr, r.stdout, r.stderr)
    return r.stdout.strip()


@pytest.fixture
def burst(nginx_factory, faults, go_service, tls_server, certs, tmp_path):  # noqa: F811
    refused = dead_port()
    nginx = nginx_factory(f"""
    upstream_cause_zone uc 1m;
    upstream backend {{ server 127.0.0.1:{refused}; }}
    upstream slow {{ server 127.0.0.1:{faults}; }}
    upstream one {{ server 127.0.0.1:{faults} max_conns=1; }}
    upstream go {{ server 127.0.0.1:{go_service.port}; }}
    upstream pay {{ server 127.0.0.1:{tls_server}; }}
    server {{ listen 127.0.0.1:@PORT@;
        location = /metrics {{ upstream_cause_metrics; }}
        location /refused/ {{ proxy_pass http://backend; }}
        location /slow/ {{ proxy_read_timeout 200ms; rewrite ^ /silent break; proxy_pass http://slow; }}
        location /one/ {{ proxy_read_timeout 8s; rewrite ^ /silent break; proxy_pass http://one; }}
        location /own502/ {{ rewrite ^ /bad-gateway break; proxy_pass http://go; }}
        location /ok/ {{ rewrite ^ /ok break; proxy_pass http://go; }}
        location /pay/ {{ proxy_ssl_protocols TLSv1.2 TLSv1.3;  # 1.22's default has no TLSv1.3
                          proxy_ssl_verify on; proxy_ssl_name server.test;
                          proxy_ssl_trusted_certificate {certs}/other.crt; proxy_pass https://pay; }}
    }}""")
    prom = Prometheus(tmp_path, nginx.port)
    held = threading.Thread(target=lambda: nginx.get("/one/held"))
    try:
        prom.wait_for('up{job="nginx"}', 1.0)
        # The one connection group "one" may have, held by a request the
        # fault upstream never answers (until nginx's read timeout).
        held.start()
        wait_for_text(tmp_path / "faults.log", "request /silent")
        # One of each first, so that every series exists before the burst
        # (an increase needs two samples).
        for path, status in (("/refused/0", 502), ("/one/0", 502), ("/pay/0", 502), ("/own502/0", 502),
                             ("/ok/0", 200), ("/slow/0", 504)):
            assert nginx.get(path).status == status, path
        for cause in ("connect_refused", "max_conns_reached", "tls_verify_failed", "read_timeout"):
            prom.wait_for(f'nginx_upstream_cause_total{{cause="{cause}"}}', 1.0)
        # The burst: 12 refused, 5 saturated, 10 read timeouts, 3 certificate
        # rejections, 3 of the upstream's own 502.
        for i in range(1, 13):
            assert nginx.get(f"/refused/{i}").status == 502
        for i in range(1, 6):
            assert nginx.get(f"/one/{i}").status == 502
        slow = [threading.Thread(target=nginx.get, args=(f"/slow/{i}",)) for i in range(1, 11)]
        for t in slow:
            t.start()
        for t in slow:
            t.join(30)
        for i in range(1, 4):
            assert nginx.get(f"/pay/{i}").status == 502
            assert nginx.get(f"/own502/{i}").status == 502
        prom.wait_for('nginx_upstream_cause_total{cause="connect_refused"}', 13.0)
        prom.wait_for('nginx_upstream_cause_total{cause="max_conns_reached"}', 6.0)
        prom.wait_for('nginx_upstream_cause_total{upstream="slow",cause="read_timeout"}', 11.0)
        prom.wait_for('nginx_upstream_cause_total{cause="tls_verify_failed"}', 4.0)
        prom.wait_for('sum(nginx_upstream_cause_responses_total{cause="via_upstream"})', 4.0)
        yield nginx, prom
    finally:
        prom.close()
        if held.ident is not None:
            held.join(30)


def labels(series, *names):
    return sorted(tuple(m.get(n) for n in names) for m, _ in series)


def test_a_real_prometheus_evaluates_every_rule_and_panel(burst, faults, go_service):
    """Every rule's expression and every panel's expression, evaluated by
    Prometheus over the module's scrape: no error, and the series the burst
    must give."""
    nginx, prom = burst
    rules = dict(alert_rules())
    results = {}
    for name, expr in rules.items():
        results[name] = prom.query(expr)
        print(f"rule {name}: {expr}\n  -> {results[name]}")
    assert labels(results["NginxUpstreamBackendDown"], "upstream", "peer") == [("backend", f"127.0.0.1:{dead_port_of(nginx)}")]
    assert results["NginxUpstreamBackendDown"][0][1] >= 10
    assert labels(results["NginxUpstreamSaturated"], "upstream", "cause") == [("one", "max_conns_reached")]
    assert labels(results["NginxUpstreamCertificateRejected"], "upstream", "peer") == [("pay", "127.0.0.1:" + pay_port(nginx))]
    assert labels(results["NginxUpstreamReadTimeouts"], "upstream") == [("slow",)]
    # the zone has room: nothing dropped, nothing fires
    assert results["NginxUpstreamCauseZoneDropping"] == []

    panels = {}
    for title, expr in dashboard_exprs():
        # Grafana's variables, as Grafana would fill them for "All"
        q = expr.replace("$__rate_interval", "1m").replace('upstream=~"$upstream"', 'upstream=~".*"')
        panels[title] = prom.query(q)
        print(f"panel {title!r}: {q}\n  -> {panels[title]}")
    causes = labels(panels["Failed attempts by cause"], "cause")
    assert causes == [("connect_refused",), ("max_conns_reached",), ("read_timeout",), ("tls_verify_failed",),
                      ("via_upstream",)], causes
    by_peer = labels(panels["Failed attempts by upstream and peer"], "upstream")
    assert by_peer == [("backend",), ("go",), ("one",), ("pay",), ("slow",)], by_peer
    responses = labels(panels["Responses made from upstream failures, by cause and status"], "cause", "status")
    assert responses == [("connect_refused", "502"), ("max_conns_reached", "502"), ("read_timeout", "504"),
                         ("tls_verify_failed", "502"), ("via_upstream", "502")], responses
    (share,) = panels["Share of these 5xx made by the gateway"]
    assert 0.5 < share[1] < 1.0, share  # most made by nginx, 3 passed on
    (fill,) = panels["Counters' zone fill"]
    assert 0 < fill[1] < 0.01, fill
    (dropped,) = panels["Counters' zone: increments dropped"]
    assert dropped[1] == 0, dropped
    # the dashboard's variable: the upstreams Prometheus knows
    assert labels(prom.query("group by (upstream) (nginx_upstream_cause_total)"), "upstream") == \
        [("backend",), ("go",), ("one",), ("pay",), ("slow",)]
    # and by hand, as an operator would
    out = promtool_instant(prom.url, rules["NginxUpstreamBackendDown"])
    assert 'upstream="backend"' in out and "=>" in out, out


def dead_port_of(nginx):
    return re.search(r"server 127\.0\.0\.1:(\d+);", nginx.conf.read_text().split("upstream backend")[1]).group(1)


def pay_port(nginx):
    return re.search(r"server 127\.0\.0\.1:(\d+);", nginx.conf.read_text().split("upstream pay")[1]).group(1)
