"""Reading what nginx wrote (the access log, the error log, the /metrics
scrape) and holding each request to its scenario."""
import json
import re

from scenarios import DETAIL_OF, NO_DETAIL, VIA

RID = re.compile(r"[?&]rid=(\d+)")


class JsonLines:
    """A file of one JSON object a line, read incrementally: `poll()`
    returns the objects of the lines complete since the last call, and
    keeps the lines that are not JSON in `foreign`."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.tail = b""
        self.lines = 0
        self.foreign = []

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.tail + data
        cut = data.rfind(b"\n") + 1
        self.tail = data[cut:]
        out = []
        for raw in data[:cut].splitlines():
            if not raw.strip():
                continue
            n = self.lines
            self.lines += 1
            try:
                e = json.loads(raw)
            except ValueError:
                self.foreign.append(raw[:300])
                continue
            e["n"] = n
            e["raw"] = raw[:300]
            out.append(e)
        return out


class AccessLog(JsonLines):
    """The JSON access log: rid -> entry (with its line number, `n`)."""

    def __init__(self, path):
        super().__init__(path)
        self.by_rid = {}
        self.dups = []

    def poll(self):
        for e in super().poll():
            m = RID.search(e.get("u", ""))
            if not m:
                self.foreign.append(e["raw"])
                continue
            rid = int(m.group(1))
            if rid in self.by_rid:
                self.dups.append((rid, e))
            else:
                self.by_rid[rid] = e


def parse_metrics(text):
    """Prometheus text format: {(name, labels tuple sorted): value}."""
    out = {}
    label_rx = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not m:
            raise ValueError(f"bad metrics line {line!r}")
        name, labels, value = m.groups()
        lab = tuple(sorted((k, v.replace('\\"', '"').replace("\\\\", "\\")) for k, v in
                           label_rx.findall(labels or "")))
        out[(name, lab)] = float(value)
    return out


def counters(samples):
    """attempts {(upstream, peer, cause): n}, responses {(upstream, cause, status): n}."""
    att, resp = {}, {}
    for (name, lab), v in samples.items():
        d = dict(lab)
        if name == "nginx_upstream_cause_total":
            att[(d["upstream"], d["peer"], d["cause"])] = int(v)
        elif name == "nginx_upstream_cause_responses_total":
            resp[(d["upstream"], d["cause"], d["status"])] = int(v)
    return att, resp


def split_groups(value):
    return [g.split(", ") for g in value.split(" : ")]


# $upstream_status of an attempt, by its cause
STATUS_OF = {"-": re.compile(r"[1-4]\d\d"), "via_upstream": re.compile(r"5\d\d"),
             "read_timeout": re.compile("504"), "connect_timeout": re.compile("504"),
             "send_timeout": re.compile("504"), "client_closed": re.compile(r"-|499"),
             "response_truncated": re.compile(r"[1-5]\d\d")}
STATUS_502 = re.compile("502")


def check_request(sc, res, e):
    """Errors (strings) for one request: its access-log entry against its
    scenario, and what its client saw."""
    errs = []
    s, c, lst, a, us, d = e["s"], e["c"], e["l"], e["a"], e["us"], e["d"]
    where = f"{sc.name} {e['u']}"
    # the list is aligned with $upstream_addr and $upstream_status
    if sc.off:
        groups = []
        if a in ("-", "") or lst != "" or c != "" or d != "":
            errs.append(f"{where}: under upstream_cause off: addr={a!r} list={lst!r} cause={c!r} detail={d!r}")
    elif a in ("-", ""):
        groups = []
        if lst != "":
            errs.append(f"{where}: no upstream address but list {lst!r}")
    else:
        groups = split_groups(a)
        lg, ug = split_groups(lst), split_groups(us)
        if [len(g) for g in groups] != [len(g) for g in lg] or [len(g) for g in groups] != [len(g) for g in ug]:
            errs.append(f"{where}: list not aligned: addr={a!r} list={lst!r} upstream_status={us!r}")
        else:
            for cg, sg in zip(lg, ug):
                for cause, st in zip(cg, sg):
                    if not STATUS_OF.get(cause, STATUS_502).fullmatch(st):
                        errs.append(f"{where}: attempt {cause} with upstream status {st} (list={lst!r} "
                                    f"upstream_status={us!r})")
    out = None
    for o in sc.outs:
        if o.status == s and o.cause == c and o.listed.fullmatch(lst):
            out = o
            break
    if out is None:
        allowed = "; ".join(f"{o.status} {o.cause or '-'} /{o.listed.pattern}/" for o in sc.outs)
        errs.append(f"{where}: unexpected outcome status={s} cause={c!r} list={lst!r} addr={a!r} "
                    f"upstream_status={us!r} detail={d!r} (allowed: {allowed})")
    if groups and len(groups) != len(sc.labels):
        errs.append(f"{where}: {len(groups)} groups of attempts, {len(sc.labels)} expected: addr={a!r}")
    if sc.addrs and groups and len(groups) == len(sc.addrs):
        for g, allowed in zip(groups, sc.addrs):
            bad = [x for x in g if x not in allowed]
            if bad:
                errs.append(f"{where}: upstream address {bad} not one of {sorted(allowed)} (addr={a!r})")
    if (c in NO_DETAIL) != (d == ""):
        errs.append(f"{where}: cause {c!r} with detail {d!r}")
    elif c in DETAIL_OF and not DETAIL_OF[c].fullmatch(d):
        errs.append(f"{where}: cause {c!r} with detail {d!r}, not nginx's text for it")
    if sc.check:
        err = sc.check(e)
        if err:
            errs.append(f"{where}: {err}")
    if not res.aborted:
        if res.status is None or str(res.status) != s:
            errs.append(f"{where}: the client saw status {res.status}, the log says {s} ({res.proto})")
        if out is not None:
            want = [out.header] if out.header else []
            if res.cause_hdr != want:
                errs.append(f"{where}: the client saw cause header {res.cause_hdr}, {want} expected ({res.proto})")
            if out.body is not None and res.body != out.body:
                errs.append(f"{where}: body {res.body[:80]!r}, {out.body!r} expected")
            if out.truncated is not None and res.truncated != out.truncated:
                errs.append(f"{where}: truncated={res.truncated}, {out.truncated} expected ({res.proto})")
        if sc.rcheck:
            err = sc.rcheck(res)
            if err:
                errs.append(f"{where}: {err}")
    return errs


def expected_counts(items):
    """What the zone must hold after these requests: items are (scenario,
    entry). Attempts: every list entry other than `-`, by the upstream label
    of its ' : ' group, its $upstream_addr entry and its cause. Responses:
    every request whose $upstream_cause is not empty, by the label of its
    last group, the cause and $status."""
    att, resp = {}, {}
    for sc, e in items:
        lst = e["l"]
        if not lst:
            continue
        lg = split_groups(lst)
        ag = split_groups(e["a"])
        if len(lg) != len(sc.labels) or [len(g) for g in lg] != [len(g) for g in ag]:
            continue  # reported by check_request
        for label, causes, addrs in zip(sc.labels, lg, ag):
            for cause, addr in zip(causes, addrs):
                if cause != "-":
                    k = (label, addr, cause)
                    att[k] = att.get(k, 0) + 1
        if e["c"]:
            k = (sc.labels[-1], e["c"], e["s"])
            resp[k] = resp.get(k, 0) + 1
    return att, resp


def diff_counts(what, want, got):
    errs = []
    for k in sorted(set(want) | set(got)):
        if want.get(k, 0) != got.get(k, 0):
            errs.append(f"{what} {k}: the access log says {want.get(k, 0)}, the zone {got.get(k, 0)}")
    return errs


LINE_RX = re.compile(r' upstream_cause=(\S+) status=(\d+) attempts=(\d+) peer=(\S+) causes="([^"]*)" detail="'
                     r'.* request: "\S+ (\S+) ')


def enriched_lines(text):
    """rid -> [(cause, status, attempts, peer, causes)] from the error log."""
    out = {}
    for line in text.splitlines():
        if " upstream_cause=" not in line:
            continue
        m = LINE_RX.search(line)
        if not m:
            out.setdefault(None, []).append(line[:300])
            continue
        r = RID.search(m.group(6))
        rid = int(r.group(1)) if r else None
        out.setdefault(rid, []).append(m.groups()[:5])
    return out


def check_line(sc, e, lines):
    """The enriched error-log line: one for a failure nginx made (every
    cause but via_upstream), none otherwise; its fields agree with the
    access log."""
    where = f"{sc.name} {e['u']}"
    c = e["c"]
    if c in ("", VIA):
        return [f"{where}: enriched line(s) {lines} for cause {c!r}"] if lines else []
    if len(lines) != 1:
        return [f"{where}: {len(lines)} enriched lines for cause {c!r}, 1 expected"]
    cause, status, attempts, peer, causes = lines[0]
    errs = []
    n = sum(len(g) for g in split_groups(e["l"]))
    last = split_groups(e["a"])[-1][-1]
    if (cause, status, causes, int(attempts), peer) != (c, e["s"], e["l"], n, last):
        errs.append(f"{where}: enriched line cause={cause} status={status} attempts={attempts} peer={peer} "
                    f"causes={causes!r}; the access log: {c} {e['s']} {n} {last} {e['l']!r}")
    return errs
