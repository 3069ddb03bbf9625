# Shortcuts; the scripts are the source of truth (and install what they need).
.PHONY: demo test check unittest build clean docker deb deb-test storm memcheck screenshot

demo:            ## build, start the Go service and nginx, show both 502s told apart
	bash scripts/demo.sh

test:            ## the whole suite, as CI runs it
	bash scripts/test.sh

check:           ## format and lints only
	cargo fmt --all --check
	cargo clippy --release --locked --workspace --all-targets -- -D warnings
	cargo clippy --release --locked -p ngx-stream-upstream-cause -- -D warnings

unittest:        ## the unit tests of the pure core and the offline classifier
	cargo test --release --locked -p upstream-cause-core -p upstream-cause

build:           ## the module, the matching nginx and the Go service, under .work/
	bash -c 'source scripts/lib.sh && build_all'

deb:             ## Debian packages for bookworm, trixie and sid under dist/ (needs Docker)
	bash scripts/deb.sh

deb-test:        ## install each package into a clean container of its suite and check it
	bash scripts/deb-test.sh

storm:           ## the storm at CI's size (after make build): faults, reloads, an upgrade
	/usr/bin/python3 tests/storm/storm.py --requests 6000 --seconds 60

screenshot:      ## docs/status.png: the live view's page in headless chromium (after make build)
	STATUS_SCREENSHOT=docs/status.png /usr/bin/python3 -m pytest -p no:cacheprovider -q tests/test_status.py -k real_browser

memcheck:        ## the suite and the storm under AddressSanitizer, then valgrind
	bash scripts/memcheck.sh all

clean:
	rm -rf .work target dist

docker:          ## the Docker harness (makes the base image offline, vendors crates)
	bash scripts/docker-test.sh
