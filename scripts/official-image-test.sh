#!/usr/bin/env bash
# What can be tested here of the official image's recipe
# (docker/official-image/Dockerfile), on a machine that cannot pull
# nginx:* images or reach nginx.org:
#
# - a stand-in for nginx:<version> (docker/official-image/test/): bookworm-slim
#   with nginx built from the vendored nginx source (nginx-src, 1.28.3) with
#   nginx.org's packages' configure arguments and paths, NGINX_VERSION set;
# - the recipe itself, unchanged, FROM that stand-in: its nginx source
#   tarball served on 127.0.0.1 (NGINX_SOURCE_URL; the build runs with the
#   host's network for that), the crates vendored as vendor/ in the context;
# - the result: nginx -t (the recipe's last step), then a request to a
#   refused upstream gets its cause header and enriched line (the packages'
#   check, docker/deb/test.sh site).
#
# --standin-only: makes the stand-in and stops (scripts/warm-images.sh).
source "$(dirname "$0")/lib.sh"

need_docker "the official-image test"
vendor_crates
STANDIN=ngx-upstream-cause/official-standin
IMAGE=ngx-upstream-cause/official-example
dir="$WORK/official-image"
rm -rf "$dir" && mkdir -p "$dir/standin" "$dir/context"
start=$(date +%s)
src=$(ls -d "$ROOT"/docker/cargo-vendor/nginx-src-*/nginx | head -1)
version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$src/src/core/nginx.h")

# nginx's source as nginx.org publishes it: nginx-VERSION/ with configure
cp -r "$src" "$dir/nginx-$version" && cp "$src/auto/configure" "$dir/nginx-$version/configure"
# (the same bytes every run, so Docker's cache keeps the stand-in)
tar -C "$dir" --sort=name --mtime=@0 --owner=0 --group=0 -c "nginx-$version" | gzip -n \
    >"$dir/standin/nginx-$version.tar.gz"
nginx_org_package_configure_args | tr '\n' ' ' >"$dir/standin/configure-args"
cp "$ROOT/docker/official-image/test/nginx.conf" "$dir/standin/"
bash "$ROOT/docker/base-image.sh" bookworm
say "the stand-in for nginx:$version (docker/official-image/test/Dockerfile.standin)"
docker_build official-standin --build-arg NGINX_VERSION="$version" -t "$STANDIN:$version" \
    -f "$ROOT/docker/official-image/test/Dockerfile.standin" "$dir/standin"
[ "${1:-}" = --standin-only ] && exit 0

# the checkout as a user has it, with vendor/
tar -C "$ROOT" -c "${DEB_SOURCES[@]}" docker/official-image .dockerignore | tar -C "$dir/context" -x
cp -r "$ROOT/docker/cargo-vendor" "$dir/context/vendor"

# the tarball on 127.0.0.1 for the recipe's download, for as long as the build
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
timeout 1800 python3 -m http.server --bind 127.0.0.1 --directory "$dir/standin" "$port" >"$dir/http.log" 2>&1 &
server=$!
cid=""
cleanup() { kill "$server" 2>/dev/null || true; [ -z "$cid" ] || docker rm -f "$cid" >/dev/null 2>&1 || true; }
trap cleanup EXIT
say "docker/official-image/Dockerfile FROM the stand-in"
docker_build official-example --network host --build-arg NGINX_IMAGE="$STANDIN:$version" \
    --build-arg NGINX_SOURCE_URL="http://127.0.0.1:$port/nginx-$version.tar.gz" \
    -t "$IMAGE" -f "$dir/context/docker/official-image/Dockerfile" "$dir/context"
grep -q 'GET /nginx-' "$dir/http.log" || { echo "the recipe did not download the tarball from NGINX_SOURCE_URL" >&2; exit 1; }

say "the image: a refused upstream (docker/deb/test.sh site)"
cid=$(docker create --network none "$IMAGE" bash /pkg/test.sh site)
tar -c --transform 's,^,pkg/,' -C "$ROOT/docker/deb" test.sh | docker cp - "$cid:/"
docker start -a "$cid"
say "official-image recipe: passed in $(($(date +%s) - start)) s"
