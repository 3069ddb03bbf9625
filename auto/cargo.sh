# Sourced by config (at ./configure time) and config.make (when nginx
# writes its Makefile); defines functions only. Checks what building the
# Rust code needs, so that configure stops with a one-line reason instead of
# make failing halfway, and says how make runs cargo.
#
# Environment:
#   NGX_CARGO        the cargo to run (default: cargo)
#   LIBCLANG_PATH    where libclang is (bindgen's own variable); when set,
#                    only there
#   CARGO_HOME and cargo's other variables apply as usual; the target
#                    directory is objs/upstream_cause.
#   NGX_UPSTREAM_CAUSE_VENDOR  a `cargo vendor` directory to build from
#                    instead of crates.io (offline); default: the checkout's
#                    vendor/ if there is one
#                    (`cargo vendor --locked vendor` in the checkout makes it)

# objs is relative to the nginx tree, or absolute with --builddir=/… (as
# Debian's nginx_mod build system configures)
case $NGX_OBJS in
    /*) ngx_upstream_cause_objs=$NGX_OBJS ;;
    *)  ngx_upstream_cause_objs=$PWD/$NGX_OBJS ;;
esac
ngx_upstream_cause_target=$NGX_OBJS/upstream_cause
ngx_upstream_cause_lib=$ngx_upstream_cause_target/release/libngx_http_upstream_cause_module.a
ngx_upstream_cause_stream_lib=$ngx_upstream_cause_target/release/libngx_stream_upstream_cause_module.a
ngx_upstream_cause_cargo_config=$NGX_OBJS/upstream_cause.cargo.toml
# what Rust's std needs from the C library, beyond what nginx links
ngx_upstream_cause_native_libs="-lpthread -ldl -lm"
NGX_CARGO=${NGX_CARGO:-cargo}

ngx_upstream_cause_fail() {
    echo " $1"
    echo
    echo "$0: error: ngx_http_upstream_cause_module: $2"
    echo
    exit 1
}

ngx_upstream_cause_check() {
    echo $ngx_n "checking for cargo (Rust 1.85 or newer) ...$ngx_c"
    ngx_ver=$($NGX_CARGO version 2>/dev/null | sed -n 's/^cargo \([0-9][0-9]*\)\.\([0-9][0-9]*\)\..*/\1 \2/p')
    if [ -z "$ngx_ver" ]; then
        ngx_upstream_cause_fail "not found" \
            "cargo not found (install a Rust toolchain 1.85 or newer, or set NGX_CARGO)"
    fi
    set -- $ngx_ver
    if [ "$1" -lt 1 ] || { [ "$1" -eq 1 ] && [ "$2" -lt 85 ]; }; then
        ngx_upstream_cause_fail "found $1.$2" \
            "cargo $1.$2 is too old: the module needs Rust 1.85 or newer"
    fi
    echo " found $1.$2"

    # bindgen loads libclang at build time
    echo $ngx_n "checking for libclang ...$ngx_c"
    ngx_found=
    if [ -n "${LIBCLANG_PATH:-}" ]; then
        ngx_dirs=${LIBCLANG_PATH%/libclang*}
    else
        ngx_dirs="$(llvm-config --libdir 2>/dev/null) /usr/lib/llvm-*/lib /usr/lib64
                  /usr/lib/*-linux-gnu /usr/lib /usr/local/lib"
    fi
    for ngx_dir in $ngx_dirs
    do
        if [ -n "$ngx_dir" ] && ls "$ngx_dir"/libclang.so* "$ngx_dir"/libclang-*.so* >/dev/null 2>&1; then
            ngx_found=$ngx_dir
            break
        fi
    done
    if [ -z "$ngx_found" ]; then
        ngx_upstream_cause_fail "not found" \
            "libclang not found${LIBCLANG_PATH:+ in $LIBCLANG_PATH} (Debian/Ubuntu: apt-get install libclang-dev; or set LIBCLANG_PATH)"
    fi
    echo " found in $ngx_found"
}

# The cargo configuration of this build: the nginx tree to bind to, and
# the vendored crates if there are some.
ngx_upstream_cause_write_config() {
    ngx_upstream_cause_vendor=${NGX_UPSTREAM_CAUSE_VENDOR:-}
    if [ -z "$ngx_upstream_cause_vendor" ] && [ -d "$ngx_addon_dir/vendor" ]; then
        ngx_upstream_cause_vendor=$(cd "$ngx_addon_dir/vendor" && pwd)
    fi
    if [ -n "$ngx_upstream_cause_vendor" ]; then
        echo " + ngx_http_upstream_cause_module: crates from $ngx_upstream_cause_vendor (offline)"
    fi
    {
        echo "[env]"
        echo "NGINX_SOURCE_DIR = { value = \"$PWD\", force = true }"
        echo "NGINX_BUILD_DIR = { value = \"$ngx_upstream_cause_objs\", force = true }"
        if [ -n "$ngx_upstream_cause_vendor" ]; then
            echo "[source.crates-io]"
            echo "replace-with = \"upstream-cause-vendored\""
            echo "[source.upstream-cause-vendored]"
            echo "directory = \"$ngx_upstream_cause_vendor\""
        fi
    } > "$ngx_upstream_cause_cargo_config"
}

# The Rust code of each module is its own static library, built by its
# own cargo run (one run would unify the features: each .so would hold
# both modules' code, and the HTTP one would need nginx's stream module
# loaded). $1: the module; the stream module's is built only when nginx has
# stream ($2 = yes).
ngx_upstream_cause_make() {
    cat << END >> "$NGX_MAKEFILE"

# ngx_http_upstream_cause_module: cargo decides what to rebuild
.PHONY: $ngx_upstream_cause_lib
$ngx_upstream_cause_lib:
	$NGX_CARGO rustc --release --locked --crate-type staticlib \\
		--manifest-path "$ngx_addon_dir/Cargo.toml" \\
		--lib --no-default-features --features http \\
		--config "$ngx_upstream_cause_cargo_config" \\
		--target-dir "$ngx_upstream_cause_target"

$NGX_OBJS${ngx_dirsep}ngx_http_upstream_cause_module$ngx_modext: $ngx_upstream_cause_lib
END
    [ "$STREAM" = NO ] && return
    cat << END >> "$NGX_MAKEFILE"

# ngx_stream_upstream_cause_module: its own cargo run (see auto/cargo.sh);
# after the HTTP one, so that the two do not wait on each other's lock
.PHONY: $ngx_upstream_cause_stream_lib
$ngx_upstream_cause_stream_lib: $ngx_upstream_cause_lib
	$NGX_CARGO rustc --release --locked --crate-type staticlib \\
		--manifest-path "$ngx_addon_dir/stream/Cargo.toml" \\
		--lib --no-default-features \\
		--config "$ngx_upstream_cause_cargo_config" \\
		--target-dir "$ngx_upstream_cause_target"

$NGX_OBJS${ngx_dirsep}ngx_stream_upstream_cause_module$ngx_modext: $ngx_upstream_cause_stream_lib
END
}
