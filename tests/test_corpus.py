"""The offline classifier on real nginx error-log lines from the wild
(tests/corpus/: lines people pasted into public issue threads and pages,
and log tools' nginx fixtures, each with its source, its platform, the
prefix it came with and the code an nginx expert gives it from
docs/reference.md). Each line is read alone, as `upstream-cause requests`
reads a log: its attempt's cause, its peer and its source must be the
expected ones, or the line is a known case whose reason is written beside
it (and which must still disagree: a fixed one loses its mark)."""
import json
from pathlib import Path

import pytest

from test_cli import requests_of

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.jsonl"))


def corpus():
    for path in FILES:
        for i, text in enumerate(path.read_text().splitlines(), 1):
            if text.strip():
                yield f"{path.name}:{i}", json.loads(text)


ENTRIES = list(corpus())


def read(entry):
    """What the classifier makes of the line: (cause, peer, origin), or
    None when it finds no failed attempt."""
    got = requests_of(stdin=entry["line"].encode() + b"\n")
    assert len(got) <= 1, got
    if not got:
        return None
    r = got[0]
    return r["failures"][0]["cause"], r["failures"][0]["peer"], r["origin"] or ""


def expected(entry):
    if entry["expect"] == "none":
        return None
    return entry["expect"], entry["peer"], entry["origin"]


def test_the_corpus_is_what_the_issue_asks_for():
    prefixes = {e["prefix"] for _, e in ENTRIES}
    platforms = {e["platform"] for _, e in ENTRIES} - {"unknown"}
    assert len(ENTRIES) >= 100, len(ENTRIES)
    assert len(platforms) >= 4, platforms
    assert {"none", "docker-t", "compose"} <= prefixes, prefixes
    for where, e in ENTRIES:
        assert e["from"] and e["line"] and e["why"], where
        assert e["expect"] == "none" or e["expect"] in CAUSES, (where, e["expect"])


# the codes of docs/reference.md's table
CAUSES = {
    "connect_refused", "connect_unreachable", "connect_error", "connect_timeout", "tls_handshake_failed",
    "tls_verify_failed", "send_failed", "send_timeout", "upstream_prematurely_closed", "upstream_reset",
    "read_timeout", "invalid_header", "header_too_big", "no_live_upstreams", "resolve_failed", "via_upstream",
    "response_truncated", "client_closed", "accept_queue_full", "stream_refused", "max_conns_reached",
    "upstream_closed_silent", "idle_timeout", "udp_no_response"}


@pytest.mark.parametrize("where, entry", ENTRIES, ids=[w for w, _ in ENTRIES])
def test_each_line_reads_as_an_expert_reads_it(where, entry):
    got, want = read(entry), expected(entry)
    if "known" in entry:
        # a documented known case: the tool still reads it otherwise
        assert got != want, f"{where} is read right now: drop its known mark ({entry['known']})"
        return
    assert got == want, (where, entry["line"], entry["why"])


def test_agreement_and_known_cases():
    known = [w for w, e in ENTRIES if "known" in e]
    share = len(known) / len(ENTRIES)
    print(f"\ncorpus: {len(ENTRIES)} lines, {len(ENTRIES) - len(known)} agree, {len(known)} known cases")
    assert share < 0.03, known
