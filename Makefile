# Plane: `make run` starts a local cluster, `make test` runs every test.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 1

.PHONY: build run test test-go test-cluster fuzz audit e2e screenshots test-images generate vendor bench fmt vet tidy clean

build:
	$(GO) build -trimpath -ldflags "-X main.Version=$(VERSION)" -o bin/plane ./cmd/plane

# The demo backend: a static Go program in an image built FROM scratch (no
# registry is needed).
test-images:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o testdata/demo/demo ./testdata/demo
	@out=$$(docker build -q -t plane-demo:latest testdata/demo 2>&1) || { echo "$$out"; exit 1; }

run: build test-images
	bin/plane dev --image demo=plane-demo:latest

# Go tests first, then the multi-host scenarios, then the browser tests;
# sub-makes keep that order under -j.
test: build test-images
	@$(MAKE) --no-print-directory test-go
	@$(MAKE) --no-print-directory test-cluster
	@$(MAKE) --no-print-directory e2e

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...
	@$(MAKE) --no-print-directory fuzz

# The multi-host fault scenarios (test/cluster, docs/testing-cluster.md):
# three nats-servers, a controller and three drones, each in a network
# namespace of its own, partitioned and killed. They need root; go test ./...
# skips them unless PLANE_CLUSTER_TESTS=1, which this target sets.
test-cluster: test-images
	PLANE_CLUSTER_TESTS=1 $(GO) test -count=1 -timeout 15m -v ./test/cluster/

# The proxy's fuzzers, each for a bounded time (go test runs one -fuzz
# target at a time). FuzzProxyForward is the differential test: what a
# strict parser reads behind the proxy is what the proxy believed it sent.
FUZZTIME ?= 20s
PROXY_FUZZERS := FuzzProxyForward FuzzReadRequest FuzzCopyChunked
fuzz:
	@for f in $(PROXY_FUZZERS); do \
		echo "fuzz: $$f for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -parallel 2 ./drone/proxy || exit 1; \
	done

# The smuggling corpus through nginx and through the proxy, side by side
# (TestNginxAudit; make test runs it too, and skips it without nginx).
audit: build test-images
	@test -x /usr/sbin/nginx || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get install -y --no-install-recommends nginx-light; \
		else echo "audit: nginx missing; install with: sudo apt-get install nginx-light" >&2; exit 1; fi; }
	$(GO) test -count=1 -run '^TestNginxAudit$$' -v ./cmd/plane/

# -path web: the views live in web/, and generating from there names the
# .templ files as the committed *_templ.go files do (auth.templ, not
# web/auth.templ), so a clean tree stays clean.
generate:
	$(GO) tool templ generate -path web

# The vendored htmx files in assets/static, re-fetched at their pinned
# versions and checked against pinned hashes.
vendor:
	assets/vendor.sh

# Browser tests (Playwright) against a real plane dev that the config starts
# on free ports. Chromium is Debian's /usr/bin/chromium: Playwright's own
# browser builds cannot be downloaded here, so never `playwright install`.
PW := playwright
e2e: build test-images $(PW)/node_modules/.package-lock.json
	@test -x /usr/bin/chromium || { echo "e2e: /usr/bin/chromium missing; install with: apt-get install chromium" >&2; exit 1; }
	cd $(PW) && npx --no-install playwright test

# The README's screenshots (docs/screenshots), taken by the browser specs:
# only this target writes them, so that make test leaves the tree clean.
screenshots: build test-images $(PW)/node_modules/.package-lock.json
	cd $(PW) && PLANE_SCREENSHOTS=1 npx --no-install playwright test

# npm ci only when node_modules is missing or older than the lock file.
$(PW)/node_modules/.package-lock.json: $(PW)/package-lock.json $(PW)/package.json
	cd $(PW) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	@touch $@

# BenchmarkProxy compares the drone proxy with nginx under wrk: when wrk or
# /usr/sbin/nginx is missing, bench installs them (apt-get install -y wrk
# nginx-light) if it runs as root with apt-get, and otherwise stops and says
# what to install.
bench: build test-images
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	test -x /usr/sbin/nginx || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "bench: installing$$missing"; \
			apt-get install -y --no-install-recommends $$missing || { echo "bench: apt-get install$$missing failed (apt-get update first?)" >&2; exit 1; }; \
		else \
			echo "bench: missing$$missing; install with: sudo apt-get install$$missing" >&2; exit 1; \
		fi; \
	fi
	PLANE_BENCH_DOC=$(CURDIR)/docs/benchmarks.md $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./cmd/plane/

fmt:
	gofmt -w $$(git ls-files '*.go')

tidy:
	$(GO) mod tidy

clean:
	rm -rf bin testdata/demo/demo $(PW)/test-results $(PW)/playwright-report
