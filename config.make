# Appended to nginx's Makefile: how make gets the Rust static library the
# module links (see auto/cargo.sh).

. "$ngx_addon_dir/auto/cargo.sh"
ngx_upstream_cause_make
