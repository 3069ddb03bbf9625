#!/usr/bin/env bash
# Builds the module against the distro's own nginx (Debian/Ubuntu `nginx`
# and `nginx-dev`), installing them if missing, and says where the module
# is and how to load it.
source "$(dirname "$0")/lib.sh"

need_packages "${DISTRO_PACKAGES[@]}"
need_cargo
so=$(build_distro)
install -D -m 0644 "$so" "$WORK/distro/ngx_http_upstream_cause_module.so"
install -D -m 0644 "$(dirname "$so")/ngx_stream_upstream_cause_module.so" "$WORK/distro/ngx_stream_upstream_cause_module.so"
say "built for $(nginx -v 2>&1 | sed 's/^nginx version: //'): $WORK/distro/ngx_http_upstream_cause_module.so and $WORK/distro/ngx_stream_upstream_cause_module.so"
echo "install them with: sudo install -m 0644 $WORK/distro/ngx_*_upstream_cause_module.so /usr/lib/nginx/modules/" >&2
echo "and load them with: load_module modules/ngx_http_upstream_cause_module.so; and, after Debian's stream module, load_module modules/ngx_stream_upstream_cause_module.so;" >&2
