"""A CI-sized storm (tests/storm/storm.py, described in tests/storm/README.md):
every fault kind the project knows, from HTTP/1.0, keep-alive HTTP/1.1 and
HTTP/2 clients (some of which leave mid-request or mid-response), POST
bodies up to 4 MiB, through keepalive upstreams, retries, error_page,
auth_request and every balancer, and TCP and UDP sessions through the
stream module beside them (refused, silent close, reset, retried, echoed),
with two workers, a reload every 3 s with a
changing configuration (upstream groups and locations come and go, the
zone's size changes once) and one binary upgrade under traffic. Every
request is held to what its fault must give (status, header,
$upstream_cause, the shape of $upstream_cause_list, aligned with
$upstream_addr), each session to its server's outcome, the zones' counters
(HTTP's and stream's) to the access logs exactly (per zone epoch), the
error logs to no alert, crash or internal error.

About 65 s here (6,000 requests spread over 60 s). The seed is random unless
STORM_SEED is set; it is the first line of the output, and a failing run can
be replayed with it (the command is in the failure message). STORM_ARGS adds
arguments (scripts/memcheck.sh: fewer requests over more time, one worker);
NGINX_WRAPPER runs nginx under a command (valgrind).
"""
import argparse
import os
import random
import shlex
import subprocess
import sys

import conftest
from conftest import GO_SERVICE, MODULE, NGINX_BIN, ROOT, STREAM_MODULE

STORM = ROOT / "tests/storm/storm.py"


def test_storm(tmp_path):
    seed = os.environ.get("STORM_SEED") or str(random.SystemRandom().randrange(1, 2 ** 31))
    extra = shlex.split(os.environ.get("STORM_ARGS", ""))
    wrapper = os.environ.get("NGINX_WRAPPER", "")
    cmd = [sys.executable, str(STORM), "--requests", "6000", "--seconds", "60", "--seed", seed,
           "--nginx", NGINX_BIN, "--module", MODULE, "--stream-module", STREAM_MODULE, "--go-service", GO_SERVICE,
           *(["--wrapper", wrapper] if wrapper else []), *extra, "--dir", str(tmp_path / "storm")]
    # the run's own bound, from the arguments that take effect (the last ones)
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--seconds", type=float)
    seconds = p.parse_known_args(cmd[2:])[0].seconds or 600
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds * 3 + 300)
    except subprocess.TimeoutExpired:
        # SIGTERM: the storm stops what it started (nginx, the backends)
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        out = (out or "") + "\n(the storm was stopped: it ran past its time)"
    print(out)
    logs = tmp_path / "storm/nginx/logs"
    conftest.OTHER_LOGS.append(("the storm", logs / "error.log", logs / "access.log", "notice",
                                dict(pid="p", connection="k", method="m", uri="u", list="l", status="us"),
                                logs / "stream.log", dict(pid="p", connection="k", list="l", status="a"),
                                logs / "stream-error.log"))
    replay = " ".join(shlex.quote(c) for c in ["/usr/bin/python3", *cmd[1:-2]])
    assert proc.returncode == 0 and "storm: PASS" in out, (
        f"the storm failed (seed {seed}); replay: {replay}\nits report:\n" + out[-12000:])
