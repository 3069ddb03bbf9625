"""Building and loading the module as users do. nginx's own build
(`./configure --add-dynamic-module`): what a user without cargo or libclang
sees, where scripts/test.sh names an nginx source tree (NGINX_SOURCE_TREE,
the nginx-org mode). A module built for another nginx version
(OTHER_VERSION_MODULE, the distro mode: the vendored 1.28.3 build) is
refused by nginx with its own message, and so is the module in the same
version configured without --with-compat (NOCOMPAT_NGINX, the nginx-org
mode). The module builds in a tree configured with --with-compat alone,
and works in a full nginx of the same version, as a full tree's module
works in that minimal nginx. `make deb` without Docker says what is
missing."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import (CLOSED_DETAIL, MODULE, NGINX_BIN, NGINX_CONFIGURE, NGINX_VERSION, REFUSED_DETAIL, ROOT,
                      dead_port)

TREE = os.environ.get("NGINX_SOURCE_TREE")
OTHER = os.environ.get("OTHER_VERSION_MODULE")
NOCOMPAT = os.environ.get("NOCOMPAT_NGINX")

needs_tree = pytest.mark.skipif(not TREE, reason="no nginx source tree (NGINX_SOURCE_TREE) to configure")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A copy of the source tree, configured by each test anew."""
    dst = tmp_path_factory.mktemp("nginx-tree") / "nginx"
    shutil.copytree(TREE, dst, ignore=shutil.ignore_patterns("objs"))
    return dst


def configure(tree, *args, **env):
    shutil.rmtree(tree / "objs", ignore_errors=True)
    script = "./configure" if (tree / "configure").exists() else "./auto/configure"
    return subprocess.run([script, "--add-dynamic-module=" + str(ROOT), *args], cwd=tree,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


@needs_tree
@pytest.mark.parametrize("env,line", [
    ({"NGX_CARGO": "/nonexistent/cargo"},
     "error: ngx_http_upstream_cause_module: cargo not found "
     "(install a Rust toolchain 1.85 or newer, or set NGX_CARGO)"),
    ({"LIBCLANG_PATH": "/nonexistent"},
     "error: ngx_http_upstream_cause_module: libclang not found in /nonexistent "
     "(Debian/Ubuntu: apt-get install libclang-dev; or set LIBCLANG_PATH)"),
], ids=["no cargo", "no libclang"])
def test_configure_stops_with_one_line(tree, env, line):
    r = configure(tree, **env)
    assert r.returncode == 1, r.stdout[-2000:]
    errors = [l for l in (r.stdout + r.stderr).splitlines() if "error:" in l]
    assert len(errors) == 1 and errors[0].endswith(line), errors
    # it stopped in configure: no Makefile for make to fail in
    assert not (tree / "objs/Makefile").exists()


@needs_tree
def test_configure_writes_the_cargo_rule(tree):
    """Two modules, each its own .so from its own cargo run (the HTTP
    module's code only in the HTTP one)."""
    r = configure(tree, "--with-stream")
    assert r.returncode == 0, r.stdout[-2000:]
    assert " + ngx_http_upstream_cause_module was configured" in r.stdout
    makefile = (tree / "objs/Makefile").read_text()
    assert "objs/upstream_cause/release/libngx_http_upstream_cause_module.a:" in makefile
    assert "--crate-type staticlib" in makefile and "--no-default-features --features http" in makefile
    assert "objs/upstream_cause/release/libngx_stream_upstream_cause_module.a:" in makefile
    assert '--manifest-path "' + str(ROOT) + '/stream/Cargo.toml"' in makefile
    assert "modules:\tobjs/ngx_http_upstream_cause_module.so\n" in makefile
    assert "modules:\tobjs/ngx_stream_upstream_cause_module.so\n" in makefile
    config = Path(tree / "objs/upstream_cause.cargo.toml").read_text()
    assert f'NGINX_BUILD_DIR = {{ value = "{tree}/objs", force = true }}' in config


@needs_tree
def test_configure_with_an_absolute_builddir(tree, tmp_path):
    """Debian's nginx_mod build system (dh-sequence-nginx) configures the
    shared tree with --builddir=/abs/path: cargo must bind to that."""
    build = tmp_path / "obj"
    r = configure(tree, f"--builddir={build}")
    assert r.returncode == 0, r.stdout[-2000:]
    config = (build / "upstream_cause.cargo.toml").read_text()
    assert f'NGINX_BUILD_DIR = {{ value = "{build}", force = true }}' in config
    assert f"{build}/upstream_cause/release/libngx_http_upstream_cause_module.a:" in (build / "Makefile").read_text()


@needs_tree
def test_a_tree_with_compat_alone_builds_it_and_each_build_works_in_the_other_s_nginx(
        tmp_path_factory, nginx_factory, go_service):
    """nginx accepts `--with-compat` and nothing else (no SSL, no HTTP/2, no
    stream, no threads): the module builds there as in a full tree, the
    minimal tree's module works in the full nginx under test, and the full
    tree's module (the one under test) in the minimal nginx: the seed pair
    through each."""
    src = tmp_path_factory.mktemp("compat-alone") / "nginx"
    shutil.copytree(TREE, src, ignore=shutil.ignore_patterns("objs"))
    r = configure(src, "--with-compat")
    assert r.returncode == 0, r.stdout[-2000:]
    # without stream, one line says the stream module is not built
    assert " - ngx_stream_upstream_cause_module: not built (nginx is configured without stream)" in r.stdout
    assert "ngx_stream_upstream_cause_module" not in (src / "objs/Makefile").read_text()
    r = subprocess.run(["make", "-j2"], cwd=src, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    minimal, minimal_module = src / "objs/nginx", src / "objs/ngx_http_upstream_cause_module.so"
    assert not (src / "objs/ngx_stream_upstream_cause_module.so").exists()
    configured = subprocess.run([minimal, "-V"], capture_output=True, text=True, timeout=10).stderr
    assert "--with-http_ssl_module" not in configured and "--with-stream" not in configured, configured
    assert "--with-http_ssl_module" in NGINX_CONFIGURE and "--with-compat" in NGINX_CONFIGURE
    for binary, module in [(NGINX_BIN, minimal_module), (minimal, MODULE)]:
        refused = dead_port()
        n = nginx_factory(f"""
        upstream_cause_header X-Upstream-Cause;
        server {{
            listen 127.0.0.1:@PORT@;
            location /gone/ {{ proxy_pass http://127.0.0.1:{refused}/; }}
            location /go/ {{ proxy_pass http://127.0.0.1:{go_service.port}/; }}
        }}""", binary=str(binary), module=str(module))
        n.check_failure("/gone/ok", n.get("/gone/ok"), 502, "connect_refused", detail=REFUSED_DETAIL)
        n.check_failure("/go/ping", n.get("/go/ping"), 502, "upstream_prematurely_closed", detail=CLOSED_DETAIL)
        ok = n.get("/go/ok")
        assert ok.status == 200 and ok.header("X-Upstream-Cause") is None, (binary, module)


@pytest.mark.skipif(not (ROOT / "scripts/deb.sh").exists(), reason="no checkout scripts here")
def test_make_deb_without_docker_says_what_is_missing(tmp_path):
    """`make deb` on a machine without Docker: a PATH with every command of
    this one but docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in os.environ["PATH"].split(":"):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if not name.startswith("docker") and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(os.path.join(d, name))
    r = subprocess.run(["make", "-s", "deb"], cwd=ROOT, env={**os.environ, "PATH": str(bin_dir)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.splitlines()[0] == ("make deb needs Docker, and `docker` is not on PATH: "
                                        "install Docker Engine (Debian: apt-get install docker.io)"), r.stderr
    assert not (ROOT / "dist/none").exists()


def refusal(nginx, module, tmp_path):
    """`nginx -t` of a configuration that only loads `module`: must fail;
    returns the emerg line's text after the pid, and the conf's name."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"load_module {module};\nevents {{}}\n")
    r = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    m = re.search(r"\[emerg\] \d+#\d+: (.*)", r.stderr)
    assert m, r.stderr
    return m.group(1), conf


@pytest.mark.skipif(not OTHER, reason="no module built for another nginx version (OTHER_VERSION_MODULE)")
def test_a_module_for_another_version_is_refused_by_nginx(tmp_path):
    line, conf = refusal(NGINX_BIN, OTHER, tmp_path)
    ours = NGINX_VERSION[0] * 1000000 + NGINX_VERSION[1] * 1000 + NGINX_VERSION[2]
    assert line == f'module "{OTHER}" version 1028003 instead of {ours} in {conf}:1'


@pytest.mark.skipif(not NOCOMPAT, reason="no nginx of the same version without --with-compat (NOCOMPAT_NGINX)")
def test_a_module_for_another_signature_is_refused_by_nginx(tmp_path):
    line, conf = refusal(NOCOMPAT, MODULE, tmp_path)
    assert line == f'module "{MODULE}" is not binary compatible in {conf}:1'
