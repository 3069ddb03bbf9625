#!/usr/bin/env bash
# The live view's cost: bench/callgrind-zone.sh on the module before the
# live view (REV, built here in a worktree of its own, loaded into the same
# nginx) and on this checkout's, and the table written into
# docs/performance.md (section "live-view").
#
#   bash bench/live-view.sh [REV]     # REV: default f2bd3d7, the last commit without it
source "$(dirname "$0")/../scripts/lib.sh"

REV=${1:-f2bd3d7}
need_packages "${BUILD_PACKAGES[@]}" valgrind curl git
build_all
BEFORE="$WORK/bench/before"
rm -rf "$BEFORE/src"
mkdir -p "$BEFORE"
git -C "$ROOT" worktree prune
git -C "$ROOT" worktree add -f --detach "$BEFORE/src" "$REV" >/dev/null
say "building the module of $REV (cargo build --release, target $BEFORE/target)"
(cd "$BEFORE/src" && CARGO_TARGET_DIR="$BEFORE/target" cargo build --release --locked)
git -C "$ROOT" worktree remove --force "$BEFORE/src"

measure() {  # label module -> "variant instructions" lines
    LABEL=$1 MODULE=$2 bash "$ROOT/bench/callgrind-zone.sh" | awk '/instructions per request/ {print $1, $2}'
}
before=$(measure before "$BEFORE/target/release/libngx_http_upstream_cause_module.so")
after=$(measure now "$WORK/modules/ngx_http_upstream_cause_module.so")
echo "before ($REV):"; echo "$before"
echo "now:"; echo "$after"

now="$(git -C "$ROOT" rev-parse --short HEAD)"
[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- src core)" ] && now="$now with uncommitted changes"
/usr/bin/python3 - "$ROOT/docs/performance.md" "$REV" "$now" "$before" "$after" <<'PY'
import re, sys, time, platform, os
doc, rev, head, before, after = sys.argv[1:]
b = dict(l.split() for l in before.splitlines())
a = dict(l.split() for l in after.splitlines())
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows = [("a failed request (connect refused), no zone", "fail-nozone"),
        ("a failed request (connect refused), with the zone", "fail-zone"),
        ("a successful proxied request, no zone", "ok-nozone"),
        ("a successful proxied request, with the zone, before any failure", "ok-clean-zone"),
        ("a successful proxied request, with the zone, after a failure", "ok-zone")]
out = [f"Measured {time.strftime('%Y-%m-%d')} on {cpu}, Linux {platform.release()}, by `bash bench/live-view.sh`: "
       f"callgrind's instructions per request in nginx 1.28.3 (vendored, `--with-debug`), single-process, "
       f"the module before the live view ({rev}) and now ({head}) loaded into the same binary.", "",
       "| request | before | now | change |", "|---|---|---|---|"]
for name, key in rows:
    x, y = int(b[key]), int(a[key])
    out.append(f"| {name} | {x:,} | {y:,} | {y - x:+,} ({(y - x) / x * 100:+.2f}%) |")
zone_before = int(b["fail-zone"]) - int(b["fail-nozone"])
zone_now = int(a["fail-zone"]) - int(a["fail-nozone"])
out += ["", f"Recording a failure in the zone (with the zone minus without): {zone_before:,} instructions before, "
        f"{zone_now:,} now (the live view's window, peer record and ring entry, under the same one lock)."]
text = open(doc).read()
block = "<!-- live-view:start -->\n" + "\n".join(out) + "\n<!-- live-view:end -->"
new, n = re.subn(r"<!-- live-view:start -->.*?<!-- live-view:end -->", lambda _: block, text, flags=re.S)
if n != 1:
    sys.exit("docs/performance.md has no live-view section")
open(doc, "w").write(new)
PY
