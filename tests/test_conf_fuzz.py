"""Configuration fuzzing of the module's directives under `nginx -t`.

Every run generates CONF_FUZZ_N (default 1200) complete nginx.conf variants
that use upstream_cause, upstream_cause_header, upstream_cause_log,
upstream_cause_zone, upstream_cause_metrics and upstream_cause_status (docs/reference.md,
"Directives"), writes each into its own directory under pytest's tmp_path
(pid, error log and temp paths inside it) and runs
`nginx -t -p DIR -c DIR/nginx.conf -e DIR/error.log` on it, a few at a time.

Variants are of four kinds:

* valid:    our directives with legal (and edge-of-legal: ON/Off, 64-byte
            header names, UTF-8, binary and KB-long zone names) values, each
            where it is allowed;
* fault:    a valid variant plus one planted fault: a bad value or size, a
            wrong context (main, events, upstream, server/location `if`,
            limit_except, ...), a duplicate, missing or extra arguments,
            `{ }` instead of `;`, a wrong-case name, a zone too small or
            already used by another module, metrics or status without a zone, huge
            (KB) or non-ASCII values, random bytes inserted into a value;
* combo:    random directives with random (valid or invalid) values in random
            blocks;
* mutation: a valid or faulty variant whose text is then mutated: tokens or
            lines deleted, duplicated or swapped, raw bytes inserted.

For the first three an oracle (a model of nginx's parser and of the module's
checks, see `predict`) says what must happen: "test is successful", or the
first [emerg], the directive (or zone) it names in double quotes, what it
says and the line it must point at (" in DIR/nginx.conf:LINE"). Mutated
texts are checked generically: success, or an [emerg] that points at a line
of the file (nginx's own few that are found after parsing and name no place
excepted: unknown variables, server names) and, if it is about one of our
directives, names it in double quotes. No variant may die on a signal, time
out, or print [alert], [crit], a Rust panic or a segfault.

The seed is printed first. Rerun the same variants, all or some, with:

    CONF_FUZZ_SEED=<seed> python3 -m pytest -q tests/test_conf_fuzz.py -s
    CONF_FUZZ_SEED=<seed> CONF_FUZZ_ONLY=17,230 python3 -m pytest -q tests/test_conf_fuzz.py -s

(a variant depends only on the seed and its index, not on CONF_FUZZ_N).
CONF_FUZZ_WORKERS sets how many `nginx -t` run at once (default 3). The
configurations of the last three runs stay in pytest's tmp_path
(/tmp/pytest-of-$USER/), one directory per variant.

The tests at the end are the minimal reproducers of the module bugs the
fuzzer found (both fixed): a missing zone said at the end of the http block
rather than at upstream_cause_metrics, and a long wrong value quoted whole,
which pushed the directive's name out of nginx's 1024-byte message.
"""
import os
import random
import re
import subprocess
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import MODULE, NGINX_BIN

N = int(os.environ.get("CONF_FUZZ_N", "1200"))
WORKERS = int(os.environ.get("CONF_FUZZ_WORKERS", "3"))
TIMEOUT = 10
MIN_VARIANTS = 1000

LEAST_ZONE = 8 * os.sysconf("SC_PAGESIZE")  # the module's minimum zone size
SAFE_ZONE = 64 << 20      # no variant may ask for a (valid) zone bigger than this
MAX_SIZE_T = 2**63 - 1    # NGX_MAX_SIZE_T_VALUE on 64-bit
# A token this long (NGX_CONF_BUFFER is 4096) makes nginx's parser stop with
# "too long parameter"; the generator keeps tokens out of the band between
# the two, where the exact limit depends on the token's position.
TOKEN_FITS, TOKEN_TOO_LONG = 3990, 4150
FORBIDDEN = ("[alert]", "[crit]", "panicked", "RUST_BACKTRACE", "Segmentation")

# ------------------------------------------------------------------ the rules

LOC_LEVELS = frozenset({"http", "server", "location"})
ZONE, METRICS, STATUS = b"upstream_cause_zone", b"upstream_cause_metrics", b"upstream_cause_status"
# the locations that serve from the zone (they need one; any number of each)
SERVING = (METRICS, STATUS)
# name: (contexts it is allowed in, number of arguments)
SHAPES = {
    b"upstream_cause": (LOC_LEVELS, 1),
    b"upstream_cause_header": (LOC_LEVELS, 1),
    b"upstream_cause_log": (LOC_LEVELS, 1),
    ZONE: (frozenset({"http"}), 2),
    METRICS: (frozenset({"location"}), 0),
    STATUS: (frozenset({"location"}), 0),
}
NAMES = list(SHAPES)
# every block kind a variant has: sif/lif are `if` in a server/location,
# lmt is limit_except
CONTEXTS = ("main", "events", "http", "upstream", "server", "location", "sif", "lif", "lmt")
LEVELS = (b"off", b"emerg", b"alert", b"crit", b"error", b"warn", b"notice", b"info")
HEADER_NAME = re.compile(rb"[A-Za-z0-9_-]{1,64}")
SIZE = re.compile(rb"([0-9]+)([kKmM]?)")
SCALE = {b"": 1, b"k": 1 << 10, b"K": 1 << 10, b"m": 1 << 20, b"M": 1 << 20}

# what the first [emerg] says, per kind of fault
PHRASES = {
    "unknown": "unknown directive",
    "context": "directive is not allowed here",
    "term": 'is not terminated by ";"',
    "nargs": "invalid number of arguments in",
    "dup": "directive is duplicate",
    "value": "invalid value",
    "zone_name": "invalid zone name",
    "zone_size": "invalid zone size",
    "small": "is too small, the least is",
    "shm": "is already declared for a different use",
    "requires": 'requires an "upstream_cause_zone"',
    "toolong": "too long parameter",
}


def digits(run):
    """The value of a run of ASCII digits, capped above NGX_MAX_SIZE_T_VALUE
    (Python refuses int() of a few thousand digits)."""
    run = run.lstrip(b"0") or b"0"
    return MAX_SIZE_T + 1 if len(run) > 19 else int(run)


def parse_size(value):
    """ngx_parse_size(): the size in bytes, or None where nginx rejects it
    (nginx 1.28 knows k and m, not g)."""
    m = SIZE.fullmatch(value)
    if not m:
        return None
    scale = SCALE[m[2]]
    n = digits(m[1])
    return None if n > MAX_SIZE_T // scale else n * scale


def value_fault(name, args):
    """The directive handler's verdict on a right number of arguments: None
    or the kind of [emerg]."""
    if name == b"upstream_cause":
        # the module's own flag handler: the whole value, any case
        return None if args[0].lower() in (b"on", b"off") else "value"
    if name == b"upstream_cause_header":
        return None if args[0] == b"off" or HEADER_NAME.fullmatch(args[0]) else "value"
    if name == b"upstream_cause_log":
        return None if args[0] in LEVELS else "value"
    if name == ZONE:
        if not args[0]:
            return "zone_name"
        size = parse_size(args[1])
        if size is None:
            return "zone_size"
        if size < LEAST_ZONE:
            return "small"
    return None


# ------------------------------------------------------------------ the model


@dataclass(eq=False)
class Stmt:
    """A simple directive on a line of its own."""
    name: bytes
    args: list
    ours: bool = True
    protected: bool = False   # never mutated: paths, addresses
    block_term: bool = False  # `name args { }` instead of `name args;`
    shm: bytes = None         # the zone a foreign directive declares
    line: int = 0             # set by render()


@dataclass(eq=False)
class Block:
    kind: str                 # one of CONTEXTS
    head: bytes               # b"location /a"; b"" for the main level
    items: list = field(default_factory=list)
    close_line: int = 0       # set by render()


@dataclass
class Expect:
    ok: object                # True, False, or None: mutated text, any outcome
    kind: str = ""            # a PHRASES key
    names: tuple = ()         # the [emerg] must name one of these in quotes
    lines: tuple = ()         # ... and point at one of these lines
    why: str = ""


PLAIN = re.compile(rb"[A-Za-z0-9_.:/=+-]+")


def quote(value):
    """The value as one nginx token: bare when plain, else double-quoted
    with the escapes nginx's parser undoes (\\\\, \\", \\n)."""
    if PLAIN.fullmatch(value):
        return value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n") + b'"'


def stmt_text(s):
    args = [quote(a) for a in s.args] if s.ours else s.args
    return b" ".join([s.name, *args]) + (b" { }" if s.block_term else b";")


def render(root):
    """Lines of (text, mutable, ours); sets each statement's line number."""
    lines = []

    def emit(text, depth, mutable, ours=False):
        lines.append((b"    " * depth + text, mutable, ours))
        return len(lines)

    def walk(block, depth):
        for it in block.items:
            if isinstance(it, Block):
                emit(it.head + b" {", depth, True)
                walk(it, depth + 1)
                it.close_line = emit(b"}", depth, True)
            else:
                it.line = emit(stmt_text(it), depth, not it.protected, it.ours)

    walk(root, 0)
    return lines


class _Fault(Exception):
    def __init__(self, expect):
        self.expect = expect


def predict(root):
    """What `nginx -t` does with the rendered tree: the first error in file
    order (nginx stops there), then the module's end-of-http check."""
    state = {"zone": None, "shm": set(), "metrics": [], "status": []}
    try:
        _walk(root, state)
    except _Fault as f:
        return f.expect
    return Expect(True)


def _fail(kind, names, lines, why):
    raise _Fault(Expect(False, kind, tuple(names), tuple(lines), why))


def _walk(block, st):
    seen = set()  # our directives set in this block's configuration
    for it in block.items:
        if isinstance(it, Block):
            _walk(it, st)
            if it.kind == "http" and st["zone"] is None:
                # the fault is the serving location's: it needs a zone (the
                # module names upstream_cause_metrics first, if any)
                if st["metrics"]:
                    _fail("requires", [METRICS], st["metrics"], "metrics without a zone")
                if st["status"]:
                    _fail("requires", [STATUS], st["status"], "status without a zone")
            continue
        if it.ours and any(len(quote(a)) > TOKEN_TOO_LONG for a in it.args):
            _fail("toolong", [], [it.line], "a token longer than nginx's buffer")
        if not it.ours:
            if it.shm is not None:
                if it.shm == st["zone"]:
                    _fail("shm", [it.shm], [it.line], "zone name taken by upstream_cause_zone")
                st["shm"].add(it.shm)
            continue
        name, where = it.name, [it.line]
        if name not in SHAPES:
            _fail("unknown", [name], where, "wrong-case name")
        contexts, nargs = SHAPES[name]
        if block.kind not in contexts:
            _fail("context", [name], where, f"in {block.kind}")
        if it.block_term:
            _fail("term", [name], where, "a block instead of ;")
        if len(it.args) != nargs:
            _fail("nargs", [name], where, f"{len(it.args)} arguments")
        if (name == ZONE and st["zone"] is not None) or (name in seen and name not in SERVING):
            _fail("dup", [name], where, "duplicate")
        kind = value_fault(name, it.args)
        if kind:
            _fail(kind, [name], where, f"bad {kind}")
        if name == ZONE:
            if it.args[0] in st["shm"]:
                _fail("shm", [it.args[0]], where, "zone name taken by another module")
            st["zone"] = it.args[0]
        if name == METRICS:
            st["metrics"].append(it.line)
        if name == STATUS:
            st["status"].append(it.line)
        seen.add(name)


# ------------------------------------------------------------------ values

SAFE_SIZES = [b"32k", b"32K", b"32768", b"0032k", b"64k", b"1m", b"1M", b"1048576", b"2m", b"8m"]
SMALL_SIZES = [b"0", b"0k", b"1", b"4k", b"31k", b"32767", b"1K", b"00000", b"8191"]
BAD_SIZES = [b"0", b"-1", b"1x", b"99999999999999999999", b"", b"k", b"m", b"1.5m", b"1 m", b"1mb",
             b"+1m", b"1g", b"1G", b"0x100000", b"1e6", "\uff19".encode(), b"32k\0", b"1m ", b"8796093022208m",
             b"9223372036854775808", b"$size", "1\u00a0m".encode()]
BAD_FLAGS = [b"maybe", b"yes", b"no", b"1", b"0", b"true", b"", b"on off", b"o n", b"onn", b"of", "\u00f6n".encode(),
             b"on;", b"o\0n", b"{on}", b"on\0but-nginx-reads-a-C-string"]
BAD_HEADERS = [b"X-Bad:Name", b"", b"a b", b"X.Y", b"X/Y", b"X\0Y", b"$upstream_cause", "\u00dcml".encode(),
               b"X-" + b"a" * 63, b"off ", b"X-Cause\n", b"\xff\xfe"]
BAD_LEVELS = [b"debug", b"loud", b"ERROR", b"Warn", b"", b"warn ", b"err", b"info\0", b"7", "\u26a0".encode()]
ZONE_NAMES = [b"uc", b"cause", b"z1", b"upstream_cause_zone", b"metrics", b"a"]
UTF8 = ["z\u00f6ne", "\u533a\u57df", "\u0437\u043e\u043d\u0430", "\U0001f4a5", "\u00fcn\u00ef-c\u00f6de", "\u200b"]
NOISE = [b"x", b"7", b"-", b"_", b":", b" ", b";", b"{", b"}", b"#", b"'", b'"', b"\\", b"$", b"\t", b"\n", b"\r",
         b"\0", b"\x01", b"\x1b", b"\x7f", b"\x80", b"\xff", "\u00e9".encode(), "\u533a".encode(),
         "\U0001f4a5".encode(), b"k", b"m", b"off", b"on"]
HUGE_LENGTHS = [65, 300, 900, 1000, 1500, 2500, 3900, 5000, 9000]
ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def binary(rng, n):
    return bytes(rng.randrange(1, 256) for _ in range(n))


def huge(rng, n):
    """n bytes or so: repeated, header-name-like, UTF-8 or binary."""
    pick = rng.randrange(4)
    if pick == 0:
        return b"A" * n
    if pick == 1:
        return bytes(rng.choice(ALNUM) for _ in range(n))
    if pick == 2:
        return ("".join(rng.choice(UTF8) for _ in range(n // 3 + 1)).encode())[:n]
    return binary(rng, n)


def header_name(rng):
    return bytes(rng.choice(ALNUM) for _ in range(rng.randint(1, 64)))


def zone_name(rng):
    r = rng.random()
    if r < 0.5:
        return rng.choice(ZONE_NAMES)
    if r < 0.7:
        return rng.choice(UTF8).encode()
    if r < 0.85:
        return binary(rng, rng.randint(1, 40))
    return huge(rng, rng.choice([300, 1000, 2500, 3900]))


def valid_args(rng, name):
    if name == b"upstream_cause":
        return [rng.choice([b"on", b"off", b"ON", b"Off", b"oN", b"OFF"])]
    if name == b"upstream_cause_header":
        return [rng.choice([b"off", b"X-Upstream-Cause", b"X-Cause", b"x_cause", b"OFF", b"on", header_name(rng)])]
    if name == b"upstream_cause_log":
        return [rng.choice(LEVELS)]
    if name == ZONE:
        return [zone_name(rng), rng.choice(SAFE_SIZES)]
    return []


def bad_args(rng, name):
    if name == b"upstream_cause":
        return [rng.choice(BAD_FLAGS)]
    if name == b"upstream_cause_header":
        return [rng.choice(BAD_HEADERS)]
    if name == b"upstream_cause_log":
        return [rng.choice(BAD_LEVELS)]
    if name == ZONE:
        return [b"", rng.choice(SAFE_SIZES)] if rng.random() < 0.15 else [zone_name(rng), rng.choice(BAD_SIZES)]
    return [rng.choice([b"on", b"off", b"1m"])]  # metrics takes none


def noisy(rng, value):
    """value with 1-6 random byte strings inserted at one place."""
    pos = rng.randint(0, len(value))
    return value[:pos] + b"".join(rng.choice(NOISE) for _ in range(rng.randint(1, 6))) + value[pos:]


def wrong_case(rng, name):
    return rng.choice([name.upper(), name.title(), name + b"s", name.replace(b"_", b"-"), name[:-1]])


# ------------------------------------------------------------------ variants


def skeleton(rng, prefix):
    """main/events/http/upstream/servers/locations with if and limit_except
    blocks; nothing of ours. Returns the root and the blocks by kind."""
    d = str(prefix).encode()

    def fixed(name, *args):
        return Stmt(name, list(args), ours=False, protected=True)

    root = Block("main", b"", [fixed(b"load_module", str(MODULE).encode()), fixed(b"pid", d + b"/nginx.pid"),
                               fixed(b"error_log", d + b"/error.log")])
    events = Block("events", b"events", [fixed(b"worker_connections", b"64")])
    http = Block("http", b"http", [fixed(b"access_log", b"off")] +
                 [fixed(p + b"_temp_path", d + b"/" + p) for p in (b"client_body", b"proxy", b"fastcgi", b"uwsgi", b"scgi")])
    http.items.append(Block("upstream", b"upstream fuzz_backend", [fixed(b"server", b"127.0.0.1:9")]))
    for s in range(rng.randint(1, 2)):
        server = Block("server", b"server", [Stmt(b"server_name", [b"s%d.fuzz" % s], ours=False)])
        if rng.random() < 0.5:
            server.items.append(Block("sif", b"if ($arg_fuzz)"))
        for n in range(rng.randint(1, 3)):
            path = b"/s%dl%d" % (s, n)
            loc = Block("location", b"location " + path)
            if rng.random() < 0.4:
                loc.items.append(Block("location", b"location " + path + b"/nested"))
            if rng.random() < 0.3:
                loc.items.append(Block("lif", b"if ($arg_fuzz)"))
            if rng.random() < 0.3:
                loc.items.append(Block("lmt", b"limit_except GET"))
            server.items.append(loc)
        http.items.append(server)
    root.items += [events, http]
    by_kind = defaultdict(list)

    def index(block):
        by_kind[block.kind].append(block)
        for it in block.items:
            if isinstance(it, Block):
                index(it)

    index(root)
    return root, by_kind


def put(rng, block, stmt, after=None):
    """Inserts stmt at a random place in block (after the fixed lines, and
    after `after` when given)."""
    lo = sum(1 for it in block.items if isinstance(it, Stmt) and it.protected)
    if after is not None:
        lo = block.items.index(after) + 1
    block.items.insert(rng.randint(lo, len(block.items)), stmt)
    return stmt


def ours_in(by, name=None):
    return [(b, it) for k in CONTEXTS for b in by[k] for it in b.items
            if isinstance(it, Stmt) and it.ours and (name is None or it.name == name)]


def allowed_block(rng, by, name):
    return rng.choice([b for k in sorted(SHAPES[name][0]) for b in by[k]])


def add_valid(rng, by, count):
    """count (or fewer) valid directives where they are allowed, no duplicate;
    a zone when there is a metrics location."""
    for _ in range(count):
        name = rng.choice(NAMES)
        block = allowed_block(rng, by, name)
        if name == ZONE and ours_in(by, ZONE):
            continue
        if name not in SERVING and any(isinstance(it, Stmt) and it.name == name for it in block.items):
            continue
        put(rng, block, Stmt(name, valid_args(rng, name)))
    if (ours_in(by, METRICS) or ours_in(by, STATUS)) and not ours_in(by, ZONE):
        put(rng, by["http"][0], Stmt(ZONE, valid_args(rng, ZONE)))


def the_zone(rng, by):
    """The variant's zone directive, added to http if it has none."""
    found = ours_in(by, ZONE)
    return found[0][1] if found else put(rng, by["http"][0], Stmt(ZONE, valid_args(rng, ZONE)))


FAULTS = ["value", "value", "context", "context", "context", "dup", "missing", "extra", "no_zone", "small",
          "shm", "term", "case", "noise", "noise", "huge", "huge"]


def plant(rng, by):
    """One fault on top of a valid variant; returns its description."""
    fault = rng.choice(FAULTS)
    name = rng.choice(NAMES)
    http = by["http"][0]
    if fault == "value":
        name = rng.choice(NAMES[:4])
        if name == ZONE:
            the_zone(rng, by).args = bad_args(rng, ZONE)
        else:
            put(rng, allowed_block(rng, by, name), Stmt(name, bad_args(rng, name)))
    elif fault == "context":
        wrong = [b for k in CONTEXTS if k not in SHAPES[name][0] for b in by[k]]
        put(rng, rng.choice(wrong), Stmt(name, valid_args(rng, name)))
    elif fault == "dup":
        block = http if name == ZONE else allowed_block(rng, by, name)
        first = the_zone(rng, by) if name == ZONE else put(rng, block, Stmt(name, valid_args(rng, name)))
        put(rng, block, Stmt(name, valid_args(rng, name)), after=first if rng.random() < 0.5 else None)
    elif fault == "missing":
        name = rng.choice(NAMES[:4])
        if name == ZONE:
            z = the_zone(rng, by)
            z.args = z.args[:rng.randint(0, 1)]
        else:
            put(rng, allowed_block(rng, by, name), Stmt(name, []))
    elif fault == "extra":
        extra = [rng.choice([b"on", b"off", b"warn", b"X-A", b"1m", b"uc", b"\xc3\xa9"]) for _ in range(rng.randint(1, 9))]
        if name == ZONE:
            z = the_zone(rng, by)
            z.args = z.args + extra
        else:
            put(rng, allowed_block(rng, by, name), Stmt(name, valid_args(rng, name) + extra))
    elif fault == "no_zone":
        for block, z in ours_in(by, ZONE):
            block.items.remove(z)
        for _ in range(rng.randint(1, 2)):
            put(rng, rng.choice(by["location"]), Stmt(rng.choice(SERVING), []))
    elif fault == "small":
        the_zone(rng, by).args[1:] = [rng.choice(SMALL_SIZES)]
    elif fault == "shm":
        z = the_zone(rng, by)
        z.args[0] = rng.choice([b"uc", b"shared", b"z" * rng.randint(1, 200)])
        put(rng, http, Stmt(b"limit_conn_zone", [b"$binary_remote_addr", b"zone=" + z.args[0] + b":1m"],
                            ours=False, shm=z.args[0]))
    elif fault == "term":
        block = allowed_block(rng, by, name) if rng.random() < 0.8 else rng.choice([b for k in CONTEXTS for b in by[k]])
        put(rng, block, Stmt(name, valid_args(rng, name), block_term=True))
    elif fault == "case":
        block = rng.choice([b for k in CONTEXTS for b in by[k]])
        put(rng, block, Stmt(wrong_case(rng, name), valid_args(rng, name)))
    elif fault == "noise":
        mine = ours_in(by)
        stmt = rng.choice(mine)[1] if mine and rng.random() < 0.7 else \
            put(rng, allowed_block(rng, by, name), Stmt(name, valid_args(rng, name)))
        name = stmt.name
        if stmt.args:
            i = rng.randrange(len(stmt.args))
            stmt.args[i] = noisy(rng, stmt.args[i])
        else:
            stmt.args = [noisy(rng, b"")]
    elif fault == "huge":
        name = rng.choice(NAMES[:4])
        value = huge(rng, rng.choice(HUGE_LENGTHS))
        if name == ZONE:
            z = the_zone(rng, by)
            if rng.random() < 0.5:
                z.args[0] = value
            else:
                z.args[1] = value if rng.random() < 0.5 else b"9" * len(value)
        else:
            put(rng, allowed_block(rng, by, name), Stmt(name, [value]))
    return f"{fault}:{name.decode(errors='replace')}"


def combo(rng, by):
    """2-12 random directives, mostly where allowed, mostly valid."""
    blocks = [b for k in CONTEXTS for b in by[k]]
    for _ in range(rng.randint(2, 12)):
        name = rng.choice(NAMES)
        block = allowed_block(rng, by, name) if rng.random() < 0.65 else rng.choice(blocks)
        r = rng.random()
        if r < 0.6:
            args = valid_args(rng, name)
        elif r < 0.8:
            args = bad_args(rng, name)
        elif r < 0.9:
            args = valid_args(rng, name)
            args = args[:-1] if args and rng.random() < 0.5 else args + [b"on"] * rng.randint(1, 3)
        else:
            args = [noisy(rng, a) for a in valid_args(rng, name)] or [noisy(rng, b"")]
        if rng.random() < 0.03:
            name = wrong_case(rng, name)
        put(rng, block, Stmt(name, args, block_term=rng.random() < 0.03))
    if rng.random() < 0.15:
        shm = rng.choice(ZONE_NAMES)
        put(rng, by["http"][0], Stmt(b"limit_conn_zone", [b"$binary_remote_addr", b"zone=" + shm + b":1m"],
                                     ours=False, shm=shm))
    return "combo"


def fit_long_tokens(by):
    """Keeps each argument out of the band where nginx's token limit is
    fuzzy."""
    for _, stmt in ours_in(by):
        for i, a in enumerate(stmt.args):
            while TOKEN_FITS < len(quote(a)) <= TOKEN_TOO_LONG:
                a = a[:-300]
            stmt.args[i] = a


TOKEN = re.compile(rb'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[^\s;{}"\']+|[;{}]')
MUTATIONS = ["del_token", "dup_token", "swap_tokens", "del_line", "dup_line", "swap_lines", "bytes", "bytes"]


def mutate(rng, lines):
    """1-3 textual mutations of the mutable lines (the fixed lines with
    paths and addresses stay as they are)."""
    lines = [list(l) for l in lines]
    done = []
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(MUTATIONS)
        mutable = [i for i, l in enumerate(lines) if l[1]]
        tokens = [(i, m.start(), m.end()) for i in mutable for m in TOKEN.finditer(lines[i][0])]
        if op == "del_line":
            del lines[rng.choice(mutable)]
        elif op == "dup_line":
            i = rng.choice(mutable)
            lines.insert(i + 1, list(lines[i]))
        elif op == "swap_lines":
            i, j = rng.choice(mutable), rng.choice(mutable)
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "bytes":
            ours = [i for i in mutable if lines[i][2]]
            i = rng.choice(ours) if ours and rng.random() < 0.8 else rng.choice(mutable)
            text = lines[i][0]
            first = TOKEN.search(text)
            pos = rng.randint(first.end() if first else 0, len(text))
            lines[i][0] = text[:pos] + b"".join(rng.choice(NOISE) for _ in range(rng.randint(1, 8))) + text[pos:]
        elif tokens:
            i, s, e = rng.choice(tokens)
            text = lines[i][0]
            if op == "del_token":
                lines[i][0] = text[:s] + text[e:]
            elif op == "dup_token":
                lines[i][0] = text[:e] + b" " + text[s:e] + text[e:]
            else:
                j, s2, e2 = rng.choice(tokens)
                if (j, s2) == (i, s):
                    continue
                a, b = text[s:e], lines[j][0][s2:e2]
                # replace the later span first so the earlier offsets hold
                for (k, ks, ke, new) in sorted([(i, s, e, b), (j, s2, e2, a)], reverse=True):
                    lines[k][0] = lines[k][0][:ks] + new + lines[k][0][ke:]
        done.append(op)
    return lines, "+".join(done)


def oversized(text):
    """True when some digits in the text would make a valid zone bigger than
    SAFE_ZONE: nginx -t maps and initialises the zones it is given."""
    for m in re.finditer(rb"(?<![0-9])([0-9]+)([kKmM]?)", text):
        scale = SCALE[m[2]]
        n = digits(m[1])
        if n <= MAX_SIZE_T // scale and n * scale > SAFE_ZONE:
            return True
    return False


@dataclass
class Variant:
    index: int
    mode: str
    what: str
    dir: Path
    text: bytes
    expect: Expect

    @property
    def conf(self):
        return self.dir / "nginx.conf"


MODES = ["valid"] * 20 + ["fault"] * 45 + ["combo"] * 15 + ["mutation"] * 20


def make_variant(seed, index, base):
    """Variant `index` of the seed: it depends on nothing else."""
    prefix = base / f"v{index:05d}"
    for attempt in range(100):
        rng = random.Random(f"{seed}:{index}:{attempt}")
        mode = rng.choice(MODES)
        root, by = skeleton(rng, prefix)
        add_valid(rng, by, rng.randint(1 if mode == "valid" else 0, 7))
        what = "valid"
        if mode == "fault" or (mode == "mutation" and rng.random() < 0.5):
            what = plant(rng, by)
        elif mode == "combo":
            what = combo(rng, by)
        fit_long_tokens(by)
        lines = render(root)
        expect = predict(root)
        if mode == "mutation":
            lines, ops = mutate(rng, lines)
            what, expect = f"{what}+{ops}", Expect(None)
        text = b"\n".join(l[0] for l in lines) + b"\n"
        if not oversized(text):
            return Variant(index, mode, what, prefix, text, expect)
    raise AssertionError(f"variant {index}: no safe configuration in 100 attempts")


# ------------------------------------------------------------------ running and judging


def run_nginx_t(v):
    v.dir.mkdir(parents=True, exist_ok=True)
    v.conf.write_bytes(v.text)
    cmd = [NGINX_BIN, "-t", "-p", str(v.dir), "-c", str(v.conf), "-e", str(v.dir / "error.log")]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        return None, ((e.stdout or b"") + (e.stderr or b"")).decode("utf-8", "surrogateescape")
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "surrogateescape")


def first_emerg(out, conf):
    """(message, line) of the first [emerg], (message, None) when it has no
    " in <conf>:<line>", or None when there is no [emerg]."""
    start = out.find("[emerg] ")
    if start < 0:
        return None
    rest = out[start + len("[emerg] "):]
    # the message may span lines (a value with a newline in it), not emergs
    m = re.match(r"(.*?) in " + re.escape(str(conf)) + r":(\d+)(?:\n|$)", rest, re.S)
    if m is None or "[emerg]" in m[1]:
        return rest.split("\n", 1)[0], None
    return m[1], int(m[2])


def short(text, head=100, tail=60):
    """text without its middle, for reports: long values fill messages."""
    return text if len(text) <= head + tail + 5 else f"{text[:head]}[...]{text[-tail:]}"


# nginx's own [emerg]s that name no file:line, found after the whole
# configuration is read: unknown variables, server names of a listen socket.
NGINX_UNPLACED = re.compile(r'unknown ".*" variable|invalid server name or wildcard ".*" on .*', re.S)


def judge(v, rc, out):
    """The outcome ("ok"/"emerg"/None) and the problems: [(category, detail)]."""
    if rc is None:
        return None, [("timeout", f"nginx -t ran over {TIMEOUT}s")]
    if rc < 0:
        return None, [("signal", f"nginx -t died on signal {-rc}")]
    problems = [("forbidden", f"{bad!r} in the output") for bad in FORBIDDEN if bad in out]
    ok = rc == 0 and "test is successful" in out
    emerg = first_emerg(out, v.conf)
    nlines = v.text.count(b"\n") + 1
    exp = v.expect
    if ok:
        if exp.ok is False:
            problems.append(("accepted-faulty", f"expected [emerg] {PHRASES[exp.kind]!r} at line {exp.lines}"))
        return "ok", problems
    if emerg is None:
        return None, problems + [("no-verdict", f"rc={rc}, neither success nor [emerg]")]
    msg, line = emerg
    if line is None and v.mode == "mutation" and NGINX_UNPLACED.fullmatch(msg):
        # nginx's own, said after parsing with no place (a mutated `$arg_fuzz`)
        return "emerg", problems
    if line is None:
        return "emerg", problems + [("emerg-without-file-line", short(msg))]
    if exp.ok is None:
        if not 1 <= line <= nlines:
            problems.append(("line-out-of-file", f"line {line} of {nlines}: {short(msg)}"))
        # A mutation may break nginx's own blocks, whose messages need not
        # quote anything ("no servers are inside upstream"); one about our
        # directives must name it.
        if "upstream_cause" in msg and not re.search(r'"[^"]*upstream_cause[^"]*"', msg):
            problems.append(("names-nothing", short(msg)))
        return "emerg", problems
    if exp.ok is True:
        return "emerg", problems + [("rejected-valid", f"line {line}: {short(msg)}")]
    if exp.names and not any(f'"{n.decode("utf-8", "surrogateescape")}"' in msg for n in exp.names):
        cut = " (message cut at nginx's 1024 bytes)" if len(msg.encode("utf-8", "surrogateescape")) >= 1000 else ""
        problems.append(("wrong-subject", f"should name {exp.names[0][:60]!r}{cut}: {short(msg)}"))
    if PHRASES[exp.kind] not in msg:
        problems.append(("wrong-message", f"expected {PHRASES[exp.kind]!r}: {short(msg)}"))
    if line not in exp.lines:
        problems.append(("wrong-line", f"points at line {line}, the fault is at {list(exp.lines)}: {short(msg)}"))
    return "emerg", problems


def describe(v, problem):
    category, detail = problem
    lines = v.text.split(b"\n")
    where = ""
    if v.expect.lines:
        where = f"; faulty line {v.expect.lines[0]}: {lines[v.expect.lines[0] - 1][:160]!r}"
    return f"  #{v.index} [{v.mode} {v.what}] {detail}{where}\n    conf: {v.conf}"


def chosen_indexes():
    only = os.environ.get("CONF_FUZZ_ONLY", "").strip()
    return [int(x) for x in only.split(",") if x.strip()] if only else list(range(N))


def test_conf_fuzz(tmp_path):
    seed = int(os.environ.get("CONF_FUZZ_SEED") or time.time_ns() % 10**9)
    print(f"\nconf fuzz: CONF_FUZZ_SEED={seed} CONF_FUZZ_N={N}", flush=True)
    started = time.monotonic()
    variants = [make_variant(seed, i, tmp_path) for i in chosen_indexes()]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(run_nginx_t, variants))

    outcomes, by_mode, failures = Counter(), Counter(), defaultdict(list)
    for v, (rc, out) in zip(variants, results):
        outcome, problems = judge(v, rc, out)
        outcomes[outcome] += 1
        by_mode[v.mode] += 1
        for p in problems:
            failures[p[0]].append(describe(v, p))
    elapsed = time.monotonic() - started
    print(f"conf fuzz: seed={seed} variants={len(variants)} ok={outcomes['ok']} emerg={outcomes['emerg']} "
          f"other={outcomes[None]} ({', '.join(f'{m}={c}' for m, c in sorted(by_mode.items()))}) "
          f"failures={sum(len(f) for f in failures.values())} in {elapsed:.1f}s with {WORKERS} workers", flush=True)

    report = [f"{len(found)} x {category}:\n" + "\n".join(found[:3]) for category, found in sorted(failures.items())]
    assert not failures, (f"conf fuzz seed {seed}: rerun with CONF_FUZZ_SEED={seed} "
                          f"[CONF_FUZZ_ONLY=<#>]\n" + "\n".join(report))
    if not os.environ.get("CONF_FUZZ_ONLY"):
        assert len(variants) >= min(MIN_VARIANTS, N)
        assert outcomes["ok"] and outcomes["emerg"], f"one outcome never happened: {dict(outcomes)}"


# ------------------------------------------------------------------ bugs found (fixed)
# Minimal reproducers of what the fuzzer found; each fails until the module
# is fixed, with the same judge() as the fuzzer.


def small_variant(tmp_path, http=(), location=()):
    """A minimal configuration: the `http` statements in http, the
    `location` ones in the one location of the one server."""
    d = str(tmp_path).encode()

    def fixed(name, *args):
        return Stmt(name, list(args), ours=False, protected=True)

    server = Block("server", b"server", [Block("location", b"location /metrics", list(location))])
    root = Block("main", b"", [
        fixed(b"load_module", str(MODULE).encode()), fixed(b"pid", d + b"/nginx.pid"),
        fixed(b"error_log", d + b"/error.log"), Block("events", b"events"),
        Block("http", b"http", [fixed(b"client_body_temp_path", d + b"/client_body"),
                                fixed(b"proxy_temp_path", d + b"/proxy"), *http, server]),
    ])
    lines = render(root)
    return Variant(0, "known-bug", "", tmp_path, b"\n".join(l[0] for l in lines) + b"\n", predict(root))


def check_small(v):
    rc, out = run_nginx_t(v)
    _, problems = judge(v, rc, out)
    text = "\n".join(short(l) for l in v.text.decode(errors="replace").splitlines())
    assert not problems, f"{problems}\n--- {v.conf}\n{text}\n--- nginx -t\n{short(out, 300, 200)}"


def test_metrics_without_zone_names_the_metrics_line(tmp_path):
    """`"upstream_cause_metrics" requires an "upstream_cause_zone"` names the
    upstream_cause_metrics line, though the check runs at the end of the http
    block (it named http's closing brace before)."""
    check_small(small_variant(tmp_path, location=[Stmt(METRICS, [])]))


def test_status_without_zone_names_the_status_line(tmp_path):
    """The same for `upstream_cause_status`."""
    check_small(small_variant(tmp_path, location=[Stmt(STATUS, [])]))


@pytest.mark.parametrize("name,args", [
    (b"upstream_cause_header", [b"A" * 1000]),
    (b"upstream_cause_header", [b"\xff" * 340]),  # each byte becomes a 3-byte U+FFFD in the message
    (b"upstream_cause_log", [b"A" * 1000]),
    (ZONE, [b"uc", b"9" * 1000]),
    (b"upstream_cause", [b"A" * 1000]),  # the module's own flag handler (nginx's quotes the whole value)
], ids=["header", "header-binary", "log", "zone-size", "flag"])
def test_a_long_value_keeps_the_directive_name(tmp_path, name, args):
    """nginx cuts a configuration error at 1024 bytes (NGX_MAX_CONF_ERRSTR),
    and the value is quoted before the directive's name: it is quoted cut,
    its first 64 bytes then "...", so the name stays (it was cut out
    before)."""
    check_small(small_variant(tmp_path, http=[Stmt(name, args)]))
