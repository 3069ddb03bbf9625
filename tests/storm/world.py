"""What the storm runs: the backends (the real Go service, one of them under
a supervisor, the HTTP/1 and HTTP/2 fault upstreams, a PHP-FPM pool) and
nginx itself (daemonized, reloaded, upgraded), each started in the run's own
directory, on 127.0.0.1, and stopped at the end.
"""
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))
from conftest import dead_port, find_php_fpm, fpm_conf, free_port, wait_port  # noqa: E402,F401  (the tests' own helpers)

__all__ = ["dead_port", "free_port", "wait_port"]  # storm.py takes dead_port and free_port from here

FAULTS = ROOT / "docker/faults/faults.py"
H2FAULTS = ROOT / "docker/faults/h2faults.py"


def become_subreaper():
    """nginx daemonizes (its master's parent must change for USR2 to be
    honoured, see ngx_signal_handler): as a child subreaper, its masters
    become our children, so that we can reap them and see how they ended."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except OSError:
        return False


def alive(pid):
    """True while pid exists and is not a zombie (reaping it if it is ours)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def stop_proc(proc, sig=signal.SIGTERM, timeout=10.0):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except ProcessLookupError:
        pass


class Helper:
    """A helper process with its output in a file."""

    def __init__(self, log_path, args, env=None, new_session=False):
        self.log_path = log_path
        self.args = args
        self.env = env
        self.new_session = new_session
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=self.new_session)
        return self

    def stop(self, sig=signal.SIGTERM):
        stop_proc(self.proc, sig)
        self.log.close()


class GoService:
    """The project's Go net/http service on a fixed port."""

    def __init__(self, binary, log_path, port=None):
        self.binary = binary
        self.port = port or free_port()
        self.helper = Helper(log_path, [binary], env={**os.environ, "LISTEN": f"127.0.0.1:{self.port}"})

    def start(self):
        self.helper.start()
        wait_port(self.port, proc=self.helper.proc)
        return self

    def stop(self):
        self.helper.stop()


class SupervisedGo:
    """The Go service under a supervisor (a thread of ours, as systemd's
    Restart= would be): restarted `delay` s after its process exits (a
    /crash kills it). Bounded: at most `max_restarts`, and nothing after
    stop()."""

    def __init__(self, binary, log_path, delay=0.3, max_restarts=100000):
        self.binary = binary
        self.log_path = log_path
        self.port = free_port()
        self.delay = delay
        self.max_restarts = max_restarts
        self.restarts = 0
        self.exits = []  # return codes
        self.stopping = threading.Event()
        self.proc = None
        self.lock = threading.Lock()
        self.thread = None
        self.up = threading.Event()

    def _spawn(self):
        log = open(self.log_path, "a")
        proc = subprocess.Popen([self.binary], env={**os.environ, "LISTEN": f"127.0.0.1:{self.port}"},
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        return proc

    def start(self):
        self.proc = self._spawn()
        wait_port(self.port, proc=self.proc)
        self.up.set()
        self.thread = threading.Thread(target=self._supervise, name="go-supervisor", daemon=True)
        self.thread.start()
        return self

    def _supervise(self):
        while not self.stopping.is_set():
            proc = self.proc
            rc = proc.wait()  # returns when it exits (a crash, or our stop)
            self.up.clear()
            if self.stopping.is_set():
                return
            self.exits.append(rc)
            if self.restarts >= self.max_restarts:
                return
            if self.stopping.wait(self.delay):
                return
            with self.lock:
                if self.stopping.is_set():
                    return
                self.proc = self._spawn()
                self.restarts += 1
            try:
                wait_port(self.port, timeout=10, proc=self.proc)
                self.up.set()
            except (RuntimeError, TimeoutError):
                continue

    def stop(self):
        self.stopping.set()
        with self.lock:
            stop_proc(self.proc)
        if self.thread:
            self.thread.join(15)


class FaultUpstreams:
    """docker/faults/faults.py (HTTP/1) and h2faults.py (HTTP/2)."""

    def __init__(self, run_dir):
        self.port = free_port()
        self.h2port = free_port()
        self.h1 = Helper(run_dir / "faults.log", [sys.executable, str(FAULTS), f"127.0.0.1:{self.port}"])
        self.h2 = Helper(run_dir / "h2faults.log", [sys.executable, str(H2FAULTS), f"127.0.0.1:{self.h2port}"])

    def start(self):
        self.h1.start()
        self.h2.start()
        wait_port(self.port, proc=self.h1.proc)
        wait_port(self.h2port, proc=self.h2.proc)
        return self

    def check_alive(self):
        dead = [name for name, h in (("faults.py", self.h1), ("h2faults.py", self.h2)) if h.proc.poll() is not None]
        return dead

    def stop(self):
        self.h1.stop()
        self.h2.stop()


class PhpFpm:
    """A real PHP-FPM pool on a unix socket: pm static, `children` children,
    a listen backlog of 0, so that concurrent requests find it full
    (accept_queue_full) as in tests/test_phpfpm.py."""

    def __init__(self, root: Path, sock: Path, children=2):
        self.binary = find_php_fpm()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        assert len(str(sock)) < 100, f"unix socket path too long for sun_path: {sock}"
        self.sock = sock
        self.docroot = root / "www"
        self.docroot.mkdir(exist_ok=True)
        (self.docroot / "fast.php").write_text('<?php echo "ok\\n";\n')
        (self.docroot / "slow.php").write_text('<?php usleep(30000); echo "slow\\n";\n')
        self.log = root / "fpm.log"
        self.conf = root / "fpm.conf"
        self.conf.write_text(fpm_conf(root, self.log, sock, children=children))
        self.helper = None

    def start(self):
        if self.binary is None:
            raise RuntimeError("php-fpm not found (/usr/sbin/php-fpm*): apt-get install php-fpm")
        self.helper = Helper(self.root / "fpm.out",
                             [self.binary, "-n", "-F", *(["-R"] if os.geteuid() == 0 else []), "-y", str(self.conf)],
                             new_session=True).start()
        deadline = time.monotonic() + 15
        while not (self.log.exists() and "ready to handle connections" in self.log.read_text(errors="replace")):
            if self.helper.proc.poll() is not None:
                raise RuntimeError(f"php-fpm exited with {self.helper.proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("php-fpm not ready after 15 s")
            time.sleep(0.02)
        return self

    def stop(self):
        if self.helper is not None:
            self.helper.stop(signal.SIGQUIT)


class NginxCtl:
    """nginx (daemonized master, `workers` workers) in the run directory."""

    def __init__(self, binary, module, prefix: Path, wrapper=None, workers=2):
        self.binary = str(Path(binary).resolve())  # USR2 re-executes argv[0]: an absolute path
        self.module = str(Path(module).resolve())
        self.prefix = prefix
        self.wrapper = wrapper or []
        # nginx under a wrapper (valgrind) starts, reloads and stops slower
        self.slow = 4 if self.wrapper else 1
        self.workers_n = workers
        self.conf = prefix / "nginx.conf"
        self.pid_file = prefix / "logs/nginx.pid"
        self.oldbin = prefix / "logs/nginx.pid.oldbin"
        self.error_log = prefix / "logs/error.log"
        self.master = None
        self.masters = []  # every master we had, oldest first
        for d in ("logs", "tmp", "html"):
            (prefix / d).mkdir(parents=True, exist_ok=True)

    def cmd(self, *extra):
        return [*self.wrapper, self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log),
                *extra]

    def test(self):
        res = subprocess.run([self.binary, "-t", "-p", str(self.prefix), "-c", str(self.conf),
                              "-e", str(self.error_log)],
                             capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{res.stderr}")

    def read_pid(self, path=None):
        try:
            return int((path or self.pid_file).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def start(self, port, timeout=60):
        timeout *= self.slow
        out = open(self.prefix / "logs/stderr.log", "a")
        rc = subprocess.run(self.cmd(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            timeout=timeout).returncode
        out.close()
        if rc != 0:
            raise RuntimeError(f"nginx exited with {rc}: see {self.prefix}/logs/stderr.log and error.log")
        deadline = time.monotonic() + timeout
        while True:
            pid = self.read_pid()
            if pid and len(children(pid)) >= self.workers_n:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("nginx master or workers not up")
            time.sleep(0.02)
        self.master = pid
        self.masters.append(pid)
        wait_port(port, timeout=timeout)

    def workers(self, master=None):
        return children(master or self.master)

    def wait_workers_replaced(self, old, timeout=30.0):
        """After a reload: every old worker gone, `workers_n` new ones."""
        timeout *= self.slow
        deadline = time.monotonic() + timeout
        while True:
            now = set(self.workers())
            if not (now & old) and len(now) == self.workers_n:
                return now
            if time.monotonic() > deadline:
                raise TimeoutError(f"reload: old workers {sorted(now & old)} still there, now {sorted(now)}")
            time.sleep(0.02)

    def reload(self, conf_text, timeout=30.0):
        old = set(self.workers())
        self.conf.write_text(conf_text)
        os.kill(self.master, signal.SIGHUP)
        return self.wait_workers_replaced(old, timeout)

    def upgrade_start(self, timeout=60.0):
        timeout *= self.slow
        """USR2: the master re-executes its binary; returns the new master
        once it has its workers (the old one keeps its own)."""
        old = self.master
        os.kill(old, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while True:
            new = self.read_pid()
            if new and new != old and self.read_pid(self.oldbin) == old and len(children(new)) >= self.workers_n:
                break
            if not alive(old):
                raise RuntimeError("the old master died during the upgrade")
            if time.monotonic() > deadline:
                raise TimeoutError("upgrade: no new master with its workers")
            time.sleep(0.02)
        self.masters.append(new)
        return old, new

    def upgrade_finish(self, old, new, timeout=60.0):
        """WINCH to the old master (its workers finish and leave), then QUIT."""
        timeout *= self.slow
        os.kill(old, signal.SIGWINCH)
        deadline = time.monotonic() + timeout
        # (the new master is the old one's child until the old one exits)
        while set(children(old)) - {new}:
            if time.monotonic() > deadline:
                raise TimeoutError(f"upgrade: the old master's workers {children(old)} did not leave after WINCH")
            time.sleep(0.02)
        os.kill(old, signal.SIGQUIT)
        while alive(old):
            if time.monotonic() > deadline:
                raise TimeoutError("upgrade: the old master did not exit after QUIT")
            time.sleep(0.02)
        self.master = new

    def stop(self, timeout=20.0):
        timeout *= self.slow
        for pid in reversed(self.masters):
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGQUIT)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + timeout
        for pid in self.masters:
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(pid):
                for w in children(pid):
                    try:
                        os.kill(w, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                time.sleep(0.1)
                alive(pid)
