"""A real PHP-FPM (Debian's `php-fpm` package) behind `fastcgi_pass unix:`:
the unix-socket failures of docs/reference.md's cause codes, as users see them.

Each test starts its own php-fpm in the foreground with its own config in
pytest's tmp dir: one pool, `pm = static`, one child, a listen backlog of 0.
Its unix socket lives in the test's tmp dir; nothing goes over the network.

What nginx does with a unix socket: `connect()` on it answers at once (never
EINPROGRESS), so every failure is nginx's own `connect() to unix:... failed
(errno: ...)` line, at `error` for EAGAIN and ECONNREFUSED, at `crit` for
everything else (ENOENT, EACCES).
"""
import concurrent.futures
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Nginx, fastcgi_params, find_php_fpm, fpm_conf, stop_all

# The pool's listen.backlog. Linux lets backlog + 1 connections wait on a
# unix socket (the queue is full when its length is *above* the backlog), so
# 0 is the smallest that works: one connection waits, the next is refused.
BACKLOG = 0


PHP_FPM = find_php_fpm()
AS_ROOT = os.geteuid() == 0


def site_conf(sock, docroot):
    params = fastcgi_params(docroot)
    return f"""
    upstream_cause_header X-Upstream-Cause;
    server {{ listen 127.0.0.1:@PORT@;
        location ~ \\.php$ {{
            fastcgi_pass unix:{sock};
{params}
        }}
    }}"""


def detail(sock, errno_text):
    return f"connect() to unix:{sock} failed ({errno_text}) while connecting to upstream"


def wait_for(what, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not after {timeout}s"
        time.sleep(0.02)


class PhpFpm:
    """One php-fpm master (foreground) with one pool of one child."""

    def __init__(self, root: Path, sock: Path, mode="0666", docroot: Path = None):
        root.mkdir(parents=True, exist_ok=True)
        assert len(str(sock)) < 100, f"unix socket path too long for sun_path: {sock}"
        self.root, self.sock, self.docroot = root, sock, docroot
        self.log = root / "fpm.log"
        self.conf = root / "fpm.conf"
        self.conf.write_text(fpm_conf(root, self.log, sock, mode=mode, backlog=BACKLOG))
        self.proc = None

    def start(self):
        if PHP_FPM is None:
            pytest.fail("php-fpm not found (/usr/sbin/php-fpm*): apt-get install php-fpm")
        seen = len(self.log.read_text(errors="replace")) if self.log.exists() else 0
        self.out = open(self.root / "fpm.out", "a")
        # -n: no php.ini (the distro's settings stay out of it); -F: foreground;
        # its own process group, so that a SIGKILL can take the children too
        self.proc = subprocess.Popen(
            [PHP_FPM, "-n", "-F", *(["-R"] if AS_ROOT else []), "-y", str(self.conf)],
            stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True,
        )

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"php-fpm exited with {self.proc.returncode}:\n{self.output()}")
            return self.log.exists() and "ready to handle connections" in self.log.read_text(errors="replace")[seen:]

        wait_for("php-fpm ready to handle connections", ready)
        assert self.sock.is_socket()
        return self

    def output(self):
        return "".join(p.read_text(errors="replace") for p in (self.log, self.root / "fpm.out") if p.exists())

    def stop(self, sig=signal.SIGQUIT, timeout=10.0):
        """The master stops its children and removes its socket file."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_all()
        self.out.close()

    def kill_all(self):
        """SIGKILL to master and children at once, as the OOM killer or
        `systemctl kill -s KILL` would: nobody cleans up, the socket file stays.
        (Killing only the master would not do: its orphaned child keeps the
        listening socket and goes on serving.) Sent while the master is not
        reaped yet, so its process group id cannot belong to anyone else."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def docroot(tmp_path):
    """fast.php answers at once; hold.php occupies the pool's only child
    until the test says so: it writes `started` when it begins and returns
    once `release` exists (at most 30 s, then it gives up on its own)."""
    root = tmp_path / "www"
    root.mkdir()
    started, release = tmp_path / "started", tmp_path / "release"
    (root / "fast.php").write_text('<?php echo "ok\\n";\n')
    (root / "hold.php").write_text(
        "<?php\n"
        f"touch('{started}');\n"
        f"for ($i = 0; $i < 600 && !file_exists('{release}'); $i++) usleep(50000);\n"
        'echo "released\\n";\n'
    )
    return root


@pytest.fixture
def fpm_factory(tmp_path):
    started = []

    def make(name="fpm", sock=None, **kw):
        pool = PhpFpm(tmp_path / name, sock or tmp_path / f"{name}.sock", **kw)
        started.append(pool)
        return pool.start()

    yield make
    for pool in started:
        pool.stop()


@pytest.fixture
def site(nginx_factory, fpm_factory, docroot):
    pool = fpm_factory(docroot=docroot)
    return nginx_factory(site_conf(pool.sock, docroot)), pool


def check_failure(nginx, uri, r, cause, detail_text):
    """What a user sees of one failed request: status, header, the
    access-log variables and the enriched line (with a hint)."""
    _, line = nginx.check_failure(uri, r, 502, cause, listed=cause, detail=detail_text)
    assert f'causes="{cause}" detail="{detail_text}" hint="' in line, line
    hint = re.search(r' hint="((?:[^"\\]|\\.)+)"', line)
    assert hint, line
    return hint.group(1)


@pytest.fixture
def held(site, tmp_path):
    """The pool's only child busy with hold.php (a request through nginx),
    known to have started: a future for that request's response, and a
    function that lets it finish."""
    nginx, pool = site
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
        holder = ex.submit(nginx.get, "/hold.php", timeout=30)
        try:
            wait_for("hold.php started", (tmp_path / "started").exists)
            yield holder, lambda: (tmp_path / "release").touch()
        finally:
            (tmp_path / "release").touch()


def test_accept_queue_full_backlog_filled_by_hand(site, held):
    """Deterministic: the one child is held by hold.php (its `started` file
    says it accepted); then raw AF_UNIX connects, non-blocking, that connect
    and never send, fill the listen queue until the kernel answers EAGAIN.
    Nobody accepts while the child is held, so the queue stays full and
    nginx's own connect gets EAGAIN at once. (Raw connects alone would not
    do: an idle child accepts the first of them whenever it gets the CPU,
    which frees a slot at a moment nobody can see; hold.php's `started` file
    is the moment the child is known to be busy.)"""
    nginx, pool = site
    holder, release = held
    fillers = []
    try:
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(str(pool.sock))
            if err:
                s.close()
                assert err == 11, os.strerror(err)  # EAGAIN
                break
            fillers.append(s)
        assert len(fillers) == BACKLOG + 1  # Linux: backlog + 1 may wait

        r = nginx.get("/fast.php")
        hint = check_failure(nginx, "/fast.php", r, "accept_queue_full",
                             detail(pool.sock, "11: Resource temporarily unavailable"))
        assert hint
        nginx.wait_error(rf"\[error\] \d+#\d+: \*\d+ connect\(\) to unix:{re.escape(str(pool.sock))} "
                         r"failed \(11: Resource temporarily unavailable\) while connecting to upstream")
        release()
        r = holder.result(timeout=30)
        assert r.status == 200 and r.body == b"released\n"
    finally:
        # (the child accepts these next, reads EOF and goes back to accept:
        # no request can count on a free queue slot right after this)
        for s in fillers:
            s.close()


def test_pool_at_max_children_concurrent_requests(site, held):
    """The user's view of a pool at pm.max_children: 1 request in the child
    (hold.php), then 5 at once through nginx. backlog + 1 = 1 of them waits
    in the listen queue, the other 4 get 502 accept_queue_full at once.
    Deterministic without any timing: while the child is held nobody
    accepts, so exactly one connect finds room, whatever the order."""
    nginx, pool = site
    holder, release = held
    uris = [f"/fast.php?n={i}" for i in range(5)]
    refused = 5 - (BACKLOG + 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as ex:
        futs = {ex.submit(nginx.get, u, timeout=30): u for u in uris}
        done = []
        for f in concurrent.futures.as_completed(futs, timeout=15):
            done.append(f)
            if len(done) == refused:
                break
        waiting = [futs[f] for f in futs if f not in done]
        assert len(waiting) == BACKLOG + 1
        assert not any(f.done() for f in futs if futs[f] in waiting), "a waiting request was answered while held"
        for f in done:
            check_failure(nginx, futs[f], f.result(), "accept_queue_full",
                          detail(pool.sock, "11: Resource temporarily unavailable"))
        release()
        assert holder.result(timeout=30).status == 200
        for f in futs:
            if futs[f] in waiting:
                r = f.result(timeout=30)
                assert r.status == 200 and r.body == b"ok\n" and r.header("X-Upstream-Cause") is None
                (e,) = nginx.access_for(futs[f])
                assert e["upstream_cause"] == "" and e["upstream_cause_list"] == "-", e
    statuses = sorted(nginx.access_for(u)[0]["status"] for u in ["/hold.php", *uris])
    assert statuses == ["200"] * (BACKLOG + 2) + ["502"] * refused


def test_pool_stopped_socket_file_gone(site):
    """`systemctl stop php-fpm` (SIGTERM): the master removes its socket
    file; nginx's connect() gets ENOENT: connect_refused (the backend is
    down). A restarted pool serves again."""
    nginx, pool = site
    pool.stop(signal.SIGTERM)
    assert pool.proc.returncode == 0, pool.output()
    assert not pool.sock.exists()
    r = nginx.get("/fast.php")
    check_failure(nginx, "/fast.php", r, "connect_refused", detail(pool.sock, "2: No such file or directory"))
    nginx.wait_error(rf"\[crit\] \d+#\d+: \*\d+ connect\(\) to unix:{re.escape(str(pool.sock))} "
                     r"failed \(2: No such file or directory\) while connecting to upstream")
    pool.start()
    r = nginx.get("/fast.php?restarted")
    assert r.status == 200 and r.body == b"ok\n" and r.header("X-Upstream-Cause") is None


def test_pool_killed_socket_file_left(site):
    """php-fpm killed (SIGKILL to master and child): the socket file stays,
    nobody listens on it: ECONNREFUSED, connect_refused."""
    nginx, pool = site
    pool.kill_all()
    assert pool.sock.is_socket()

    def refused():
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            try:
                s.connect(str(pool.sock))
            except ConnectionRefusedError:
                return True
            return False  # the child has not died yet

    wait_for("connection refused on the left-over socket", refused)
    r = nginx.get("/fast.php")
    check_failure(nginx, "/fast.php", r, "connect_refused", detail(pool.sock, "111: Connection refused"))
    nginx.wait_error(rf"\[error\] \d+#\d+: \*\d+ connect\(\) to unix:{re.escape(str(pool.sock))} "
                     r"failed \(111: Connection refused\) while connecting to upstream")


@pytest.fixture
def nobody_nginx(tmp_path):
    """An nginx whose workers run as nobody (conftest's run as root, and
    root opens any socket). Its master still runs as root: it opens the logs
    and creates the temp dirs (chowned to nobody) itself."""
    if not AS_ROOT:
        pytest.skip("needs root: nginx's workers must switch to another user")
    started = []

    def make(http_body):
        n = Nginx(tmp_path / "nginx-nobody", http_body)
        conf = n.conf.read_text()
        assert "user root;\n" in conf
        n.conf.write_text(conf.replace("user root;\n", "user nobody nogroup;\n"))
        started.append(n)
        return n.start()

    yield make
    stop_all(started)


def test_socket_nginx_user_may_not_open(nobody_nginx, fpm_factory, docroot, tmp_path):
    """The pool's socket is root's (listen.mode 0660) in a directory only
    root may enter (and pytest's tmp dir is private to root too), nginx's
    workers run as nobody: EACCES, connect_error, and the hint points at the
    socket's permissions against nginx's `user`."""
    private = tmp_path / "run"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    pool = fpm_factory(name="private", sock=private / "fpm.sock", mode="0660", docroot=docroot)
    nginx = nobody_nginx(site_conf(pool.sock, docroot))
    r = nginx.get("/fast.php")
    hint = check_failure(nginx, "/fast.php", r, "connect_error", detail(pool.sock, "13: Permission denied"))
    assert hint == ("nginx's worker user may not open the unix socket: "
                    "check the permissions of the socket and its directories against nginx's user"), hint
    nginx.wait_error(rf"\[crit\] \d+#\d+: \*\d+ connect\(\) to unix:{re.escape(str(pool.sock))} "
                     r"failed \(13: Permission denied\) while connecting to upstream")


def test_a_normal_request(site):
    nginx, pool = site
    r = nginx.get("/fast.php")
    assert r.status == 200 and r.body == b"ok\n"
    assert r.header("X-Upstream-Cause") is None
    (e,) = nginx.access_for("/fast.php")
    assert e["upstream_cause"] == "" and e["upstream_cause_detail"] == ""
    assert e["upstream_cause_list"] == "-"
    assert e["upstream_addr"] == f"unix:{pool.sock}"
    assert nginx.cause_lines("/fast.php") == []
