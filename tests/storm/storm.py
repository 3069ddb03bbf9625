#!/usr/bin/env python3
"""A storm of failing (and succeeding) upstream requests through nginx with
the module, across reloads, one zone-size change and one binary upgrade;
every request is held to what its fault must produce, and the zone's
counters to the access log, exactly.

    /usr/bin/python3 tests/storm/storm.py --requests N [--seconds T] [--seed S]
        [--no-reloads] [--no-upgrade] [--workers 2] [--nginx PATH] [--module PATH]
        [--wrapper "valgrind ..."] [--threads 12] [--dir DIR] [--keep]

It prints its seed first; every random choice (traffic mix, clients, bodies,
the configurations of the reloads) flows from it (which thread sends which
request when is up to the scheduler). Exit status 0 when every assertion
held, 1 otherwise; the report goes to stdout either way.

Traffic goes to 127.0.0.1 only. Every loop is bounded in count and time.
Everything it starts (nginx's masters and workers, the Go services, the
fault upstreams, PHP-FPM) is stopped before it exits.

Counters and zone epochs. The zone's counters are compared with the access
log exactly, per zone lifetime ("epoch"): reloads keep the zone (same name
and size) and its counters; the one reload that changes its size starts it
from zero (docs/reference.md, with a `notice` line we check); a binary
upgrade starts a new master, whose zone is new (shared memory is not
inherited across exec), so its counters start from zero too. Each access-log
entry carries the worker's $pid, and each worker belongs to one epoch. At
each epoch's end the traffic is paused (every client's request finished and
logged), /metrics is scraped and compared with that epoch's entries: at the
size change, just before the upgrade's USR2 (traffic then resumes and goes
on across the upgrade: the old workers' requests after that scrape are
checked one by one, but no scrape can reach the old zone any more), and at
the end.
"""
import argparse
import itertools
import json
import os
import random
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import check  # noqa: E402
import clients  # noqa: E402
import scenarios as scn  # noqa: E402
import sessions  # noqa: E402
import world  # noqa: E402

ROOT = world.ROOT
DEFAULT_NGINX = os.environ.get("NGINX_BIN", str(ROOT / ".work/bin/nginx"))
DEFAULT_MODULE = os.environ.get("UPSTREAM_CAUSE_MODULE", str(ROOT / ".work/modules/ngx_http_upstream_cause_module.so"))
DEFAULT_STREAM_MODULE = os.environ.get("UPSTREAM_CAUSE_STREAM_MODULE",
                                       str(ROOT / ".work/modules/ngx_stream_upstream_cause_module.so"))
DEFAULT_GO = os.environ.get("GO_SERVICE", str(ROOT / ".work/bin/go-service"))

BODY = b"x" * (4 * 1024 * 1024)
MAX_LOST_RETRIES = 5

# error-log lines that fail the run
BAD_LINES = re.compile(r"\[alert\]|\[emerg\]|exited on signal|upstream_cause: internal error|panicked at")
# [crit] lines nginx writes for the faults we cause on purpose
EXPECTED_CRIT = re.compile(r"connect\(\) to unix:\S+ failed \(2: No such file or directory\)")


def nginx_features(binary):
    """(version, configure arguments) of the nginx under test."""
    import subprocess
    out = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10).stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    return (tuple(int(x) for x in m.groups()) if m else (0, 0, 0)), out


class Storm:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(f"storm-{self.seed}")
        self.errors = []
        self.err_lock = threading.Lock()
        self.events = []  # (time, text)
        self.t_start = time.monotonic()
        # traffic state shared with the client threads
        self.gate = threading.Event()
        self.gate.set()
        self.stop = threading.Event()
        self.rid_counter = itertools.count(1)
        self.sent = 0
        self.table = ((), (), 0)  # scenarios, cumulative weights, epoch
        self.epoch = 0
        self.busy = []
        self.results = []
        self.lost = []
        self.body_bytes = 0
        self.body_budget = min(args.requests * 24 * 1024, 768 * 1024 * 1024)
        self.paused = 0.0
        self.t0 = None
        self.rate = args.requests / args.seconds if args.seconds else None
        # zones: worker pid -> zone epoch
        self.zone = 0
        # when the current zone epoch began (its windows hold it all for 15 minutes)
        self.zone_started = time.monotonic()
        self.zone_of = {}
        self.scrapes = []  # (zone, log lines seen, attempts, responses, series, dropped, label, stream)
        # the stream sessions: per listener port, the sessions nginx got
        self.sessions = []
        self.stream_sent = {}
        self.stream_log = None
        self.reloads = 0
        self.upgrades = 0
        self.rss = []  # (label, {pid: kB})
        self.n_checked = 0
        self.unscraped = 0
        self.crashes = 0
        self.traffic_seconds = 0.0
        self.per_kind = {}
        self.per_outcome = {}
        self.per_proto = {}

    # --- reporting helpers ------------------------------------------------

    def error(self, text):
        with self.err_lock:
            self.errors.append(text)

    def event(self, text):
        t = time.monotonic() - self.t_start
        self.events.append((t, text))
        if self.args.verbose:
            print(f"  [{t:7.2f}s] {text}", flush=True)

    # --- the world --------------------------------------------------------

    def setup(self):
        a = self.args
        self.dir = Path(a.dir or tempfile.mkdtemp(prefix="storm-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        print(f"storm: run directory {self.dir}", flush=True)
        world.become_subreaper()
        self.go = world.GoService(a.go_service, self.dir / "go-service.log").start()
        self.crashy = world.SupervisedGo(a.go_service, self.dir / "go-crashy.log",
                                         delay=0.2, max_restarts=max(100, a.requests)).start()
        self.faults = world.FaultUpstreams(self.dir).start()
        # the stream fault backends (docker/faults/stream_faults.py)
        self.stream_faults = {m: world.free_port() for m in ("echo", "close", "reset", "udp-echo")}
        self.stream_helper = world.Helper(
            self.dir / "stream-faults.log",
            [sys.executable, str(sessions.STREAM_FAULTS),
             *[f"{m}@127.0.0.1:{p}" for m, p in self.stream_faults.items()]]).start()
        for m, port in self.stream_faults.items():
            if not m.startswith("udp-"):
                world.wait_port(port, proc=self.stream_helper.proc)
        # unix sockets in a short directory of their own (sun_path holds 107 bytes)
        self.sock_dir = Path(tempfile.mkdtemp(prefix="storm-sock-", dir="/tmp"))
        self.fpm = world.PhpFpm(self.dir / "fpm", self.sock_dir / "fpm.sock", children=2).start()
        prefix = self.dir / "nginx"
        self.nginx = world.NginxCtl(a.nginx, a.module, prefix, wrapper=shlex.split(a.wrapper or ""),
                                    workers=a.workers)
        (prefix / "html/static").mkdir(parents=True, exist_ok=True)
        (prefix / "html/static/big.bin").write_bytes(os.urandom(scn.BIG_FILE))
        (prefix / "html/50x.html").write_text("custom 50x page\n")
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / d).mkdir(parents=True, exist_ok=True)
        version, configure = nginx_features(self.nginx.binary)
        if "--with-http_v2_module" not in configure:
            http2 = None
        else:
            http2 = "on" if version >= (1, 25, 1) else "listen"
        auth = "--with-http_auth_request_module" in configure
        self.http2 = http2
        port = world.free_port()
        env = scn.Env(
            port=port, h2_port=port if http2 != "listen" else world.free_port(),
            self_port=world.free_port(), metrics_port=world.free_port(),
            go=self.go.port, crashy=self.crashy.port, faults=self.faults.port, h2=self.faults.h2port,
            fpm_sock=self.fpm.sock, fpm_docroot=self.fpm.docroot, gone_sock=self.sock_dir / "gone.sock",
            long_sock=self.sock_dir / "a-directory-whose-name-makes-the-path-longer-than-64-bytes/gone.sock",
            dead=[world.dead_port() for _ in range(11)], dyn_dead=[world.dead_port() for _ in range(8)],
        )
        self.env = env
        early_end = scn.UPC if version >= (1, 29, 0) else scn.INV
        self.base = [sc for sc in scn.base_scenarios(env, early_end, auth=auth)
                     if (http2 or sc.client != scn.H2_CANCEL) and sc.name not in a.without]
        unknown = set(a.without) - {sc.name for sc in scn.base_scenarios(env, early_end, auth=auth)}
        if unknown:
            raise ValueError(f"--without: no such scenario {sorted(unknown)}")
        self.gen = scn.ConfigGen(env, self.rng, prefix, self.nginx.module, a.workers, os.geteuid() == 0,
                                 auth=auth, http2=http2)
        # TCP and UDP sessions through the stream module, where nginx has stream
        if "--with-stream" in configure and a.stream_sessions:
            dead = [world.dead_port() for _ in range(3)]
            self.sessions = sessions.scenarios(self.stream_faults, dead)
            for sess in self.sessions:
                sess.port = world.free_port()
                self.stream_sent[sess.port] = 0
            core = (Path(self.nginx.binary).resolve().parent.parent / "lib/nginx/modules/ngx_stream_module.so"
                    if "--with-stream=dynamic" in configure else None)
            self.gen.stream = (core, str(Path(a.stream_module).resolve()),
                               lambda size: sessions.config(self.sessions, prefix, self.stream_faults, dead, size))
            self.stream_log = sessions.StreamLog(prefix / "logs/stream.log")
        self.event(f"nginx {'.'.join(map(str, version))}: HTTP/2 {http2 or 'absent'}, "
                   f"auth_request {'yes' if auth else 'absent'}")
        if not a.no_reloads:
            self.gen.mutate()
        self.nginx.conf.write_text(self.gen.render())
        self.nginx.test()
        self.nginx.start(env.port)
        self.note_workers()
        self.publish(self.base + self.gen.dynamic_scenarios())
        self.log = check.AccessLog(prefix / "logs/access.log")
        self.event(f"nginx up: master {self.nginx.master}, workers {self.nginx.workers()}")

    def teardown(self):
        for attr in ("nginx", "go", "crashy", "faults", "fpm", "stream_helper"):
            obj = getattr(self, attr, None)
            if obj is None:
                continue
            try:
                obj.stop()
            except Exception as exc:  # keep stopping the others
                print(f"storm: stopping {attr}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if getattr(self, "sock_dir", None):
            import shutil
            shutil.rmtree(self.sock_dir, ignore_errors=True)
        self.leftover = self.leftovers()

    def leftovers(self):
        """Processes of ours still running after the teardown (none expected)."""
        left = []
        nginx = getattr(self, "nginx", None)
        for pid in (nginx.masters if nginx else []):
            if world.alive(pid):
                left.append(f"nginx master {pid}")
            left += [f"nginx worker {w}" for w in world.children(pid) if world.alive(w)]
        for name, proc in (("go-service", getattr(getattr(self, "go", None), "helper", None)),
                           ("go-service (supervised)", getattr(self, "crashy", None)),
                           ("faults.py", getattr(getattr(self, "faults", None), "h1", None)),
                           ("h2faults.py", getattr(getattr(self, "faults", None), "h2", None)),
                           ("php-fpm", getattr(getattr(self, "fpm", None), "helper", None))):
            p = getattr(proc, "proc", None)
            if p is not None and p.poll() is None:
                left.append(f"{name} {p.pid}")
        return left

    def note_workers(self, master=None):
        for w in self.nginx.workers(master):
            self.zone_of.setdefault(w, self.zone)

    # --- the scenario table -----------------------------------------------

    def publish(self, scenarios):
        scs = []
        for sc in scenarios:
            if sc.id is None:
                sc.id = id(sc)
            scs.append(sc)
        cum = list(itertools.accumulate(sc.weight for sc in scs))
        self.epoch += 1
        self.table = (tuple(scs), cum, self.epoch)
        return self.epoch

    def wait_epoch(self, epoch, timeout=15.0):
        """Until no client is inside a request chosen from an older table."""
        deadline = time.monotonic() + timeout
        while any(b not in (0, epoch) for b in self.busy):
            if time.monotonic() > deadline:
                self.error(f"clients still busy with an older scenario table after {timeout}s: {self.busy}")
                return
            time.sleep(0.005)

    # --- the clients ------------------------------------------------------

    def next_rid(self):
        rid = next(self.rid_counter)
        if rid > self.args.requests:
            return None
        self.sent = rid
        return rid

    def body_for(self, sc, rng):
        kind = sc.body
        if kind is None:
            return None
        if kind == "small":
            n = rng.choice([0, 1, rng.randint(2, 1024)])
        elif kind == "h2":
            n = rng.randint(0, clients.H2_MAX_BODY)
        elif kind == "abort":
            n = rng.randint(64 * 1024, 1024 * 1024)
        else:
            r = rng.random()
            if r < 0.25:
                n = 0
            elif r < 0.55:
                n = rng.randint(1, 1024)
            elif r < 0.8:
                n = rng.randint(1024, 64 * 1024)
            elif r < 0.95:
                n = rng.randint(64 * 1024, 1024 * 1024)
            else:
                n = rng.randint(1024 * 1024, 4 * 1024 * 1024)
            if self.body_bytes + n > self.body_budget:
                n = min(n, 1024)
        self.body_bytes += n
        return memoryview(BODY)[:n]

    def through_gate(self, idx, on_pause=None):
        """Announces the client `idx` busy, then waits while the traffic is
        paused (see quiesce()), calling `on_pause` as it starts to wait;
        False when the run stops meanwhile."""
        self.busy[idx] = -1
        while not self.gate.is_set():
            self.busy[idx] = 0
            if on_pause is not None:
                on_pause()
            self.gate.wait(0.5)
            if self.stop.is_set() or time.monotonic() > self.deadline:
                return False
            self.busy[idx] = -1
        return True

    def client(self, idx):
        rng = random.Random(f"storm-{self.seed}-client-{idx}")
        results = self.results[idx]
        port = self.env.port
        conn = None
        budget = 0
        deadline = self.deadline
        try:
            while not self.stop.is_set():
                rid = self.next_rid()
                if rid is None or time.monotonic() > deadline:
                    break
                while self.rate and not self.stop.is_set():
                    wait = self.t0 + self.paused + (rid - 1) / self.rate - time.monotonic()
                    if wait <= 0:
                        break
                    time.sleep(min(wait, 0.5))
                closed = []

                def pause(conn=conn):
                    # paused: an idle HTTP/2 connection would hold a worker
                    # that shuts down in its lingering close (5 s)
                    if conn is not None and not closed:
                        conn.close()
                        closed.append(conn)

                if not self.through_gate(idx, on_pause=pause):
                    return
                if closed:
                    conn = None
                scs, cum, epoch = self.table
                self.busy[idx] = epoch
                sc = rng.choices(scs, cum_weights=cum)[0]
                if sc.client == scn.BURST:
                    self.burst(sc, rid, results, port)
                    self.busy[idx] = 0
                    continue
                tries = 0
                while True:
                    body = self.body_for(sc, rng)
                    uri = f"{sc.path}?rid={rid}"
                    res, conn, budget = self.send(sc, uri, body, rng, conn, budget, port)
                    if not sc.keep_body:
                        res.body = b""
                    results.append((rid, sc, res))
                    if not res.lost:
                        break
                    self.lost.append(rid)
                    tries += 1
                    if tries > MAX_LOST_RETRIES:
                        self.error(f"{sc.name}: {tries} tries lost (never processed) in a row")
                        break
                    rid = self.next_rid()
                    if rid is None:
                        break
                if res.error:
                    self.error(f"{sc.name} {uri}: client error: {res.error}")
                self.busy[idx] = 0
        except Exception as exc:
            self.error(f"client thread {idx} died: {type(exc).__name__}: {exc}")
            import traceback
            traceback.print_exc()
        finally:
            self.busy[idx] = 0
            if conn is not None:
                conn.close()

    def stream_client(self, idx):
        """TCP and UDP sessions, as many as --stream-sessions says, spread
        like the requests; paused with them (see quiesce())."""
        a = self.args
        rng = random.Random(f"storm-{self.seed}-stream")
        cum, total = [], 0
        for sess in self.sessions:
            total += sess.weight
            cum.append(total)
        rate = a.stream_sessions / a.seconds if a.seconds else None
        try:
            for n in range(a.stream_sessions):
                if self.stop.is_set() or time.monotonic() > self.deadline:
                    break
                while rate and not self.stop.is_set():
                    wait = self.t0 + self.paused + n / rate - time.monotonic()
                    if wait <= 0:
                        break
                    time.sleep(min(wait, 0.5))
                if not self.through_gate(idx):
                    return
                self.busy[idx] = 1
                sess = rng.choices(self.sessions, cum_weights=cum)[0]
                got, err = sessions.session(sess)
                if got:
                    self.stream_sent[sess.port] += 1
                if err:
                    self.error(f"{sess.name}: client: {err}")
                self.busy[idx] = 0
        except Exception as exc:
            self.error(f"the stream client died: {type(exc).__name__}: {exc}")
        finally:
            self.busy[idx] = 0

    def send(self, sc, uri, body, rng, conn, budget, port):
        """One request for sc; returns (result, persistent connection, its budget)."""
        method = sc.method
        if sc.client == scn.ANY:
            too_big_for_h2 = body is not None and len(body) > clients.H2_MAX_BODY
            if (conn is None or not conn.reusable or budget <= 0
                    or (too_big_for_h2 and isinstance(conn, clients.H2Conn))):
                if conn is not None:
                    conn.close()
                if rng.random() < 0.55 or too_big_for_h2 or not self.http2:
                    conn, budget = clients.H1Conn(port, "1.1"), rng.randint(1, 40)
                else:
                    conn, budget = clients.H2Conn(self.env.h2_port), rng.randint(1, 60)
            if rng.random() < 0.12:
                # HTTP/1.0: a connection of its own, closed by nginx after the response
                c = clients.H1Conn(port, "1.0")
                res = c.request(method, uri, body)
                c.close()
                return res, conn, budget
            res = conn.request(method, uri, body)
            budget -= 1
            if not conn.reusable or res.lost or res.truncated or res.error or budget <= 0:
                conn.close()
                conn = None
            return res, conn, budget
        if sc.client == scn.H2_CANCEL:
            if conn is None or not conn.reusable or not isinstance(conn, clients.H2Conn):
                if conn is not None:
                    conn.close()
                conn, budget = clients.H2Conn(self.env.h2_port), rng.randint(2, 60)
            res = conn.request(method, uri, body, abort="before-response", abort_arg=scn.ABORT_AFTER)
            budget -= 1
            return res, conn, budget
        # the other aborts: a connection of their own
        c = clients.H1Conn(port, "1.1")
        if sc.client == scn.ABORT_REQ:
            res = c.request(method, uri, body, abort="mid-request")
        elif sc.client == scn.ABORT_WAIT:
            res = c.request(method, uri, body, abort="before-response", abort_arg=scn.ABORT_AFTER)
        else:
            res = c.request(method, uri, body, abort="mid-response", abort_arg=16384)
        c.close()
        return res, conn, budget

    def burst(self, sc, rid, results, port, n=5):
        """n requests at once, each on a connection of its own: all sent,
        then all read."""
        rids = [rid]
        while len(rids) < n:
            r = self.next_rid()
            if r is None:
                break
            rids.append(r)
        conns, sent = [], []
        try:
            for r in rids:
                c = clients.H1Conn(port, "1.1")
                conns.append(c)
                sent.append((r, c, c.send(sc.method, f"{sc.path}?rid={r}")))
            for r, c, res in sent:
                if not (res.lost or res.error):
                    c.receive(res, sc.method)
                results.append((r, sc, res))
                if res.lost:
                    self.lost.append(r)
                if res.error:
                    self.error(f"{sc.name} rid {r}: client error: {res.error}")
        finally:
            for c in conns:
                c.close()

    # --- pauses, scrapes, reloads, the upgrade -----------------------------

    def all_results(self):
        for lst in self.results:
            yield from lst

    def quiesce(self, timeout=30.0):
        """Every client's request finished and logged; the traffic paused."""
        t = time.monotonic()
        self.gate.clear()
        deadline = t + timeout
        while any(self.busy):
            if time.monotonic() > deadline:
                self.error(f"quiesce: clients still busy after {timeout}s: {self.busy}")
                break
            time.sleep(0.005)
        self.wait_logged(deadline)
        self.wait_stream_logged(deadline)
        return t

    def resume(self, since):
        self.paused += time.monotonic() - since
        self.gate.set()

    def wait_logged(self, deadline):
        want = [rid for rid, sc, res in self.all_results() if not res.lost]
        while True:
            self.log.poll()
            missing = [rid for rid in want if rid not in self.log.by_rid]
            if not missing:
                return
            if time.monotonic() > deadline:
                self.error(f"{len(missing)} requests not in the access log: rids {missing[:20]}")
                return
            want = missing
            time.sleep(0.02)

    def wait_stream_logged(self, deadline):
        """Every session nginx got is in the stream access log."""
        if self.stream_log is None:
            return
        want = sum(self.stream_sent.values())
        while True:
            self.stream_log.poll()
            if len(self.stream_log.entries) >= want:
                return
            if time.monotonic() > deadline:
                self.error(f"{want - len(self.stream_log.entries)} stream sessions not in the stream access log")
                return
            time.sleep(0.02)

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.env.metrics_port}/metrics", timeout=20) as r:
            if r.status != 200 or r.headers.get("Content-Type") != "text/plain; version=0.0.4":
                raise RuntimeError(f"/metrics answered {r.status} {r.headers.get('Content-Type')}")
            text = r.read().decode()
        samples = check.parse_metrics(text)
        att, resp = check.counters(samples)
        self.last_stream = sessions.counters(samples)
        series = int(samples.get(("nginx_upstream_cause_zone_series", ()), -1))
        dropped = int(samples.get(("nginx_upstream_cause_zone_dropped_total", ()), -1))
        return att, resp, series, dropped

    def check_status(self, att, s_att, label):
        """The live view (upstream_cause_status) at the same quiesced
        moment as a scrape: its totals per group, peer and cause are the
        counters' (which the access log is held to), its windows hold the
        epoch (shorter than 15 minutes), its ring as many failures as the
        zones keep, newest first."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.env.metrics_port}/status?format=json", timeout=20) as r:
            doc = json.loads(r.read())
        got = {"http": {}, "stream": {}}
        for g in doc["upstreams"]:
            for p in g["peers"]:
                for cause, c in p["causes"].items():
                    got[g["kind"]][(g["name"], p["name"], cause)] = c["total"]
                    if c["15m"] != c["total"] and time.monotonic() - self.zone_started < 840:
                        self.error(f"status ({label}): {g['name']} {p['name']} {cause}: 15m {c['15m']}, total {c['total']}")
        for kind, want in (("http", att), ("stream", s_att)):
            for err in check.diff_counts(f"status ({label}) {kind} attempts", want, got[kind]):
                self.error(err)
        keep = sum(min(z["recent_capacity"], sum((att if z["kind"] == "http" else s_att).values()))
                   for z in doc["zones"])
        times = [r["time"] for r in doc["recent"]]
        if len(times) != keep or times != sorted(times, reverse=True):
            self.error(f"status ({label}): {len(times)} recent failures ({keep} expected), newest first: "
                       f"{times == sorted(times, reverse=True)}")
        self.event(f"status ({label}): {sum(len(v) for v in got.values())} series as the counters, "
                   f"{len(times)} recent failures")

    def end_zone(self, label):
        """Scrape now (quiesced) as the end of the current zone epoch."""
        self.log.poll()
        att, resp, series, dropped = self.scrape()
        self.check_status(att, self.last_stream[0], label)
        seen = len(self.stream_log.entries) if self.stream_log else 0
        self.scrapes.append((self.zone, self.log.lines, att, resp, series, dropped, label,
                             (seen,) + self.last_stream))
        self.event(f"zone epoch {self.zone} scraped ({label}): {sum(att.values())} attempts, "
                   f"{sum(resp.values())} responses, {series} series")

    def reload(self, size_change=False):
        removed = self.gen.mutate()
        if size_change:
            self.gen.zone_size = "2m"
        scs, _, _ = self.table
        keep = [sc for sc in scs if sc.group not in removed]
        epoch = self.publish(keep)
        self.wait_epoch(epoch)
        conf = self.gen.render()
        self.nginx.conf.write_text(conf)
        self.nginx.test()
        t = time.monotonic()
        new = self.nginx.reload(conf)
        took = time.monotonic() - t
        self.reloads += 1
        self.note_workers()
        self.publish(self.base + self.gen.dynamic_scenarios())
        self.event(f"reload {self.reloads} ({took:.2f} s): workers {sorted(new)}, removed {removed}, "
                   f"groups {[g.name + ':' + g.kind + ':' + (g.balancer or 'rr') for g in self.gen.groups]}")

    def size_change(self):
        since = self.quiesce()
        self.end_zone("before the zone size change")
        self.zone += 1
        self.zone_started = time.monotonic()
        self.reload(size_change=True)
        att, resp, series, dropped = self.scrape()
        if att or resp or any(self.last_stream) or series != 0:
            self.error(f"after the zone size change the counters did not start from zero: {series} series, "
                       f"{att} {resp}")
        self.resume(since)
        self.event("zone size changed 1m -> 2m")

    def upgrade(self):
        since = self.quiesce()
        self.end_zone("before the binary upgrade")
        self.resume(since)
        old, new = self.nginx.upgrade_start()
        self.zone += 1
        self.zone_started = time.monotonic()
        self.note_workers(new)
        self.event(f"USR2: new master {new} with workers {self.nginx.workers(new)}; old master {old}")
        self.nginx.upgrade_finish(old, new)
        self.note_workers(new)
        self.upgrades += 1
        self.event(f"WINCH + QUIT: old master {old} gone, master now {self.nginx.master}")

    def sample_rss(self, label):
        ws = self.nginx.workers()
        self.rss.append((label, {w: world.rss_kb(w) for w in ws}))

    # --- the run ----------------------------------------------------------

    def run(self):
        a = self.args
        n_threads = a.threads
        # the stream client's slot is the last
        self.busy = [0] * (n_threads + 1)
        self.results = [[] for _ in range(n_threads)]
        hard_cap = (a.seconds * 2 + 60) if a.seconds else 3600
        self.deadline = time.monotonic() + hard_cap
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self.client, args=(i,), name=f"client-{i}", daemon=True)
                   for i in range(n_threads)]
        if self.sessions:
            threads.append(threading.Thread(target=self.stream_client, args=(n_threads,), name="stream-client",
                                            daemon=True))
        for t in threads:
            t.start()
        warm = max(100, min(2000, a.requests // 50))
        next_reload = time.monotonic() + a.reload_every
        size_changed = a.no_reloads
        upgraded = a.no_reloads or a.no_upgrade
        rss_marks = [int(a.requests * f / 10) for f in range(1, 10)]
        last_progress = time.monotonic()
        while any(t.is_alive() for t in threads):
            time.sleep(0.05)
            now = time.monotonic()
            if now > self.deadline:
                self.error(f"the traffic did not end within {hard_cap}s")
                self.stop.set()
                break
            done = self.sent / a.requests
            if not self.rss and self.sent >= warm:
                self.sample_rss(f"start (after {self.sent} requests)")
            if rss_marks and self.sent >= rss_marks[0]:
                while rss_marks and self.sent >= rss_marks[0]:
                    rss_marks.pop(0)
                self.sample_rss(f"after {self.sent} requests")
            if a.verbose and now - last_progress > 5:
                last_progress = now
                print(f"  ... {self.sent} sent, {len(self.lost)} lost and retried, {self.reloads} reloads, "
                      f"{len(self.errors)} errors", flush=True)
            dead = self.faults.check_alive()
            if dead:
                self.error(f"fault upstream(s) exited: {dead}")
                self.stop.set()
                break
            if done >= 0.95:
                continue  # let the last requests go out undisturbed
            try:
                if not size_changed and done >= 0.35:
                    size_changed = True
                    self.size_change()
                    next_reload = time.monotonic() + a.reload_every
                elif not upgraded and done >= 0.65:
                    upgraded = True
                    self.upgrade()
                    next_reload = time.monotonic() + a.reload_every
                elif not a.no_reloads and now >= next_reload:
                    self.reload()
                    next_reload = time.monotonic() + a.reload_every
            except Exception as exc:
                self.error(f"control: {type(exc).__name__}: {exc}")
                self.stop.set()
                break
        for t in threads:
            t.join(60)
            if t.is_alive():
                self.error(f"{t.name} still running 60 s after the end")
        self.traffic_seconds = time.monotonic() - self.t0
        self.quiesce()
        self.end_zone("at the end")
        self.sample_rss("end")

    # --- the verdict ------------------------------------------------------

    def verify(self):
        log = self.log
        log.poll()
        for rid, e in log.dups:
            self.error(f"rid {rid} logged twice: {e}")
        for raw in log.foreign[:10]:
            self.error(f"an access-log line without a request id: {raw!r}")
        err_text = self.nginx.error_log.read_text(errors="replace")
        lines = check.enriched_lines(err_text)
        for raw in lines.get(None, [])[:10]:
            self.error(f"an enriched error-log line that could not be read: {raw}")
        self.per_kind = {}
        self.per_outcome = {}
        self.per_proto = {}
        zone_items = {}
        n_checked = 0
        for rid, sc, res in self.all_results():
            e = log.by_rid.get(rid)
            if res.lost:
                if e is not None:
                    self.error(f"{sc.name} rid {rid}: the client got nothing (lost) but nginx logged {e}")
                continue
            k = self.per_kind.setdefault(sc.kind, [0, 0])
            k[0] += 1
            p = f"{res.proto}{' ' + sc.client if sc.client != scn.ANY else ''}"
            self.per_proto[p] = self.per_proto.get(p, 0) + 1
            if e is None:
                self.error(f"{sc.name} rid {rid}: not in the access log")
                continue
            n_checked += 1
            for err in check.check_request(sc, res, e):
                k[1] += 1
                self.error(err)
            for err in check.check_line(sc, e, lines.get(rid, [])):
                self.error(err)
            o = (sc.kind, e["s"], e["c"] or "-")
            self.per_outcome[o] = self.per_outcome.get(o, 0) + 1
            z = self.zone_of.get(int(e["p"]))
            if z is None:
                self.error(f"{sc.name} rid {rid}: served by worker {e['p']}, which no master of ours had")
                continue
            zone_items.setdefault(z, []).append((sc, e))
        self.n_checked = n_checked
        # the counters, per zone epoch
        self.unscraped = 0
        stream_items = self.verify_sessions()
        for zone, nlines, att, resp, series, dropped, label, (nseen, s_att, s_sess) in self.scrapes:
            items = [(sc, e) for sc, e in zone_items.get(zone, []) if e["n"] < nlines]
            self.unscraped += sum(1 for sc, e in zone_items.get(zone, []) if e["n"] >= nlines)
            want_att, want_resp = check.expected_counts(items)
            errs = check.diff_counts(f"zone epoch {zone} ({label}) attempts", want_att, att)
            errs += check.diff_counts(f"zone epoch {zone} ({label}) responses", want_resp, resp)
            # the stream zone's, from the stream access log's entries of the epoch
            s_items = [(sess, e) for i, sess, e in stream_items.get(zone, []) if i < nseen]
            want_s_att, want_s_sess = sessions.expected_counts(s_items)
            errs += check.diff_counts(f"zone epoch {zone} ({label}) stream attempts", want_s_att, s_att)
            errs += check.diff_counts(f"zone epoch {zone} ({label}) stream sessions", want_s_sess, s_sess)
            if dropped != 0:
                errs.append(f"zone epoch {zone}: dropped_total {dropped}")
            in_scrape = len(att) + len(resp) + len(s_att) + len(s_sess)
            if series != in_scrape:
                errs.append(f"zone epoch {zone}: {series} series, {in_scrape} in the scrape")
            for err in errs:
                self.error(err)
            self.event(f"zone epoch {zone} ({label}): {len(items)} requests, {sum(want_att.values())} attempts, "
                       f"{sum(want_resp.values())} responses; {len(s_items)} stream sessions, "
                       f"{sum(want_s_att.values())} attempts, {sum(want_s_sess.values())} failed sessions; "
                       f"{'equal' if not errs else f'{len(errs)} differences'}")
        # the error log
        bad = [l for l in err_text.splitlines() if BAD_LINES.search(l)]
        crit = [l for l in err_text.splitlines() if "[crit]" in l and not EXPECTED_CRIT.search(l)]
        for l in (bad + crit)[:30]:
            self.error(f"error log: {l}")
        if len(bad) + len(crit) > 30:
            self.error(f"error log: {len(bad) + len(crit) - 30} more such lines")
        if self.zone_size_changed_expected():
            notices = re.findall(r'\[notice\] .*upstream_cause_zone "storm" size changed from 1048576 to 2097152: '
                                 r"its counters start from zero", err_text)
            if len(notices) != 1:
                self.error(f"{len(notices)} zone size-change notices, 1 expected")
        self.crashes = len(self.crashy.exits)

    def verify_sessions(self):
        """Each stream session against its server, the count per port, the
        enriched lines, the stream error log; returns the entries by zone
        epoch: {zone: [(index in the log, session, entry)]}."""
        self.per_session = {}
        if self.stream_log is None:
            return {}
        self.stream_log.poll()
        for raw in self.stream_log.foreign[:10]:
            self.error(f"a stream access-log line that could not be read: {raw!r}")
        by_port = {sess.port: sess for sess in self.sessions}
        logged, failed, out = {}, {}, {}
        for i, e in enumerate(self.stream_log.entries):
            sess = by_port.get(int(e["sp"]))
            if sess is None:
                self.error(f"a stream session on port {e['sp']}, which no server of ours has: {e}")
                continue
            logged[sess.port] = logged.get(sess.port, 0) + 1
            if e["c"]:
                failed[sess.port] = failed.get(sess.port, 0) + 1
            for err in sessions.check_entry(sess, e):
                self.error(err)
            z = self.zone_of.get(int(e["p"]))
            if z is None:
                self.error(f"{sess.name}: served by worker {e['p']}, which no master of ours had")
                continue
            out.setdefault(z, []).append((i, sess, e))
        text = (self.nginx.prefix / "logs/stream-error.log").read_text(errors="replace")
        lines, bad = sessions.lines_per_port(text)
        for raw in bad[:10]:
            self.error(f"a stream enriched line that could not be read: {raw}")
        for sess in self.sessions:
            n = logged.get(sess.port, 0)
            self.per_session[sess.name] = n
            if n != self.stream_sent[sess.port]:
                self.error(f"{sess.name}: {self.stream_sent[sess.port]} sessions, {n} in the stream access log")
            got = lines.get(sess.port, [])
            want = failed.get(sess.port, 0)
            if len(got) != want or any(line != (sess.cause, sess.status) for line in got):
                self.error(f"{sess.name}: {len(got)} enriched lines {sorted(set(got))}, {want} expected "
                           f"({sess.cause} {sess.status})")
        for line in [l for l in text.splitlines() if BAD_LINES.search(l) or "[crit]" in l][:30]:
            self.error(f"stream error log: {line}")
        return out

    def zone_size_changed_expected(self):
        return any(label == "before the zone size change" for *_, label in self.scrapes)

    def report(self):
        a = self.args
        print()
        print(f"storm report (seed {self.seed})")
        print(f"  nginx {a.nginx}, module {a.module}, {a.workers} workers"
              + (f", wrapper {a.wrapper!r}" if a.wrapper else "")
              + (f"; scenarios left out: {', '.join(a.without)}" if a.without else ""))
        print(f"  requests sent: {self.sent} ({len(self.lost)} of them lost on a connection a worker closed "
              f"unread, each retried under a new id); {self.n_checked} checked against the access log")
        print(f"  traffic: {self.traffic_seconds:.1f} s, {self.sent / max(self.traffic_seconds, 1e-9):.0f} requests/s, "
              f"{a.threads} client threads; POST bodies {self.body_bytes / 1048576:.1f} MiB")
        print(f"  reloads: {self.reloads}; binary upgrades: {self.upgrades}; zone epochs: {self.zone + 1}; "
              f"requests on old workers after the pre-upgrade scrape (checked one by one, not counted): "
              f"{self.unscraped}")
        print(f"  Go service crashes (/crash) restarted by the supervisor: {self.crashes}")
        if self.sessions:
            print("  stream sessions (logged, each checked): " + ", ".join(
                f"{sess.name} x{getattr(self, 'per_session', {}).get(sess.name, 0)}" for sess in self.sessions))
        print("  clients: " + ", ".join(f"{p} x{n}" for p, n in sorted(self.per_proto.items())))
        print("  per fault kind (requests, failed checks); outcomes as status:cause x count:")
        for kind in sorted(self.per_kind):
            n, bad = self.per_kind[kind]
            outs = sorted(((s, c), v) for (k, s, c), v in self.per_outcome.items() if k == kind)
            shown = ", ".join(f"{s}:{c} x{v}" for (s, c), v in outs)
            print(f"    {kind:28s} {n:6d} {bad:4d}   {shown}")
        print("  workers' RSS (VmRSS, kB):")
        for label, d in self.rss:
            print(f"    {label:32s} " + ", ".join(f"{pid}: {kb}" for pid, kb in sorted(d.items())))
        for t, text in self.events:
            if a.verbose:
                break
            if "scraped" in text or "zone epoch" in text or "USR2" in text or "WINCH" in text:
                print(f"  [{t:7.2f}s] {text}")
        print(f"  stopped everything it started: "
              f"{'yes' if not self.leftover else 'NO, still running: ' + ', '.join(self.leftover)}")
        print(f"  errors: {len(self.errors)}")
        for e in self.errors[:60]:
            print(f"    {e}")
        if len(self.errors) > 60:
            print(f"    ... and {len(self.errors) - 60} more")
        print(f"storm: {'PASS' if not self.errors else 'FAIL'} in {time.monotonic() - self.t_start:.1f} s")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=0,
                   help="spread the requests over this many seconds (0: as fast as the clients go)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-reloads", action="store_true",
                   help="no reload, no zone size change and no upgrade: the same workers serve every request")
    p.add_argument("--no-upgrade", action="store_true")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=12, help="client threads (at most 64)")
    p.add_argument("--reload-every", type=float, default=3.0)
    p.add_argument("--nginx", default=DEFAULT_NGINX)
    p.add_argument("--module", default=DEFAULT_MODULE)
    p.add_argument("--stream-module", default=DEFAULT_STREAM_MODULE)
    p.add_argument("--stream-sessions", type=int, default=None,
                   help="TCP and UDP sessions through the stream module (default: a tenth of --requests; 0: none)")
    p.add_argument("--go-service", default=DEFAULT_GO)
    p.add_argument("--wrapper", default=None, help='a command nginx runs under, e.g. "valgrind --leak-check=no"')
    p.add_argument("--dir", default=None, help="run directory (default: a new one under $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the run directory even when the run passes")
    p.add_argument("--without", default="",
                   help="scenarios (by name, comma-separated) to leave out, e.g. while a module bug they show is "
                        "being fixed")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2 ** 31)
    args.threads = max(1, min(args.threads, 64))
    args.without = [w for w in args.without.split(",") if w]
    if args.stream_sessions is None:
        args.stream_sessions = args.requests // 10
    if args.requests < 1:
        p.error("--requests must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    print(f"storm: seed {args.seed}", flush=True)
    storm = Storm(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    ok = False
    try:
        storm.setup()
        storm.run()
        storm.verify()
        ok = not storm.errors
    except KeyboardInterrupt as exc:
        storm.error(f"interrupted: {exc}")
    except Exception as exc:
        import traceback
        traceback.print_exc()
        storm.error(f"{type(exc).__name__}: {exc}")
    finally:
        storm.stop.set()
        storm.gate.set()
        storm.teardown()
    if storm.leftover:
        storm.error(f"still running after the teardown: {storm.leftover}")
    try:
        storm.report()
    except Exception as exc:
        print(f"storm: report failed: {type(exc).__name__}: {exc}")
        print(f"storm: errors: {storm.errors[:20]}")
    if ok and not args.keep and not args.dir:
        import shutil
        shutil.rmtree(storm.dir, ignore_errors=True)
    elif hasattr(storm, "dir"):
        print(f"storm: logs kept in {storm.dir}")
    return 0 if ok and not storm.errors else 1


if __name__ == "__main__":
    sys.exit(main())
