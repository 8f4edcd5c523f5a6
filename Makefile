# nicmux build, test and demo. Everything lands in ./bin.
GO              ?= go
BIN             := $(CURDIR)/bin
# The reference plugins the tests and the demo run, at a pinned release.
PLUGINS_VERSION := v1.10.0
PLUGINS_MODULE  := github.com/containernetworking/plugins
PLUGINS         := main/bridge main/macvlan main/ptp main/loopback \
                   ipam/host-local ipam/static meta/tuning meta/portmap
# cnitool, from the CNI release nicmux builds against.
CNI_VERSION     := v1.3.1
DESTDIR         ?=
CNI_BIN_DIR     ?= /opt/cni/bin
# The go-cni suite's module, and its modfile for the go-cni v1.1.12 leg.
NOMAD_DIR       := test/nomad
NOMAD_V1112     := go.v1112.mod
# The side-by-side benchmark's module.
BENCH_DIR       := test/bench
# The torture suite's module; trials per randomized class of its short pass
# (make test) and of its long one (make torture).
TORTURE_DIR     := test/torture
TORTURE_SHORT   ?= 1
TORTURE_LONG    ?= 20

.PHONY: all build plugins testplugins install demo test unit integration nomad torture torture-short lint bench clean

all: build

# Static and stripped: a dynamic loader and symbol tables only slow the start
# of a binary that runs once per verb (and once per Nomad fingerprint).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w" -o $(BIN)/nicmux ./cmd/nicmux

# go install pkg@version builds each plugin with the plugins module's own
# go.mod, exactly as that release pins its dependencies.
# The version is stamped as in the release binaries: run bare, a plugin then
# prints it, and Nomad runs CHECK only if the bridge plugin's is >= 1.3.0.
plugins: $(BIN)/plugins/.stamped-$(PLUGINS_VERSION)

$(BIN)/plugins/.stamped-$(PLUGINS_VERSION):
	mkdir -p $(BIN)/plugins
	GOBIN=$(BIN)/plugins $(GO) install \
		-ldflags="-X $(PLUGINS_MODULE)/pkg/utils/buildversion.BuildVersion=$(PLUGINS_VERSION)" \
		$(foreach p,$(PLUGINS),$(PLUGINS_MODULE)/plugins/$(p)@$(PLUGINS_VERSION))
	GOBIN=$(BIN) $(GO) install github.com/containernetworking/cni/cnitool@$(CNI_VERSION)
	touch $@

testplugins:
	$(GO) build -o $(BIN)/testplugins/recorder ./test/plugins/recorder
	cd $(TORTURE_DIR) && $(GO) build -o $(BIN)/testplugins/torture ./plugins/torture

install: build
	install -D -m 0755 $(BIN)/nicmux $(DESTDIR)$(CNI_BIN_DIR)/nicmux

demo: build plugins
	./examples/demo/demo.sh

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	cd $(NOMAD_DIR) && $(GO) vet ./... && $(GO) mod tidy -diff
	cd $(NOMAD_DIR) && $(GO) vet -modfile=$(NOMAD_V1112) ./... && $(GO) mod tidy -modfile=$(NOMAD_V1112) -diff
	cd $(BENCH_DIR) && $(GO) vet ./... && $(GO) mod tidy -diff
	cd test/netnsutil && $(GO) vet ./... && $(GO) mod tidy -diff
	cd $(TORTURE_DIR) && $(GO) vet ./... && $(GO) mod tidy -diff

unit:
	$(GO) test -race -count=1 ./conf/... ./state/... ./delegate/... ./mux/...

# Integration tests need root: they make network namespaces and links.
integration: build plugins testplugins
	$(GO) test -count=1 -timeout 20m ./test/...

# The go-cni suite (test/nomad, its own module, pinning Nomad's go-cni) runs
# twice on the same sources: with go.mod (go-cni v1.1.9: Nomad 1.8.x-1.9.4)
# and with go.v1112.mod (go-cni v1.1.12: Nomad 1.9.6-1.10.x). It needs root
# and iptables.
nomad: build plugins testplugins
	cd $(NOMAD_DIR) && $(GO) build -o $(BIN)/testplugins/ifrename ./plugins/ifrename
	cd $(NOMAD_DIR) && $(GO) test -count=1 -timeout 20m ./...
	cd $(NOMAD_DIR) && $(GO) test -modfile=$(NOMAD_V1112) -count=1 -timeout 20m ./...

# The torture suite (test/torture, its own module; needs root and
# iptables): kill -9 at random points, faulty delegates, damaged state,
# full and read-only state folders, GC under load, with every leak counted.
# It prints a summary table per trial class and writes it to
# $(BIN)/torture-*.md. torture-short is the pass `make test` runs (about a
# minute); torture the long one (-torture.trials $(TORTURE_LONG)).
# TORTURE_SEED=N reproduces a run.
torture-short: build plugins testplugins
	cd $(TORTURE_DIR) && $(GO) test -count=1 -timeout 20m . -args \
		-torture.trials=$(TORTURE_SHORT) -torture.report=$(BIN)/torture-short.md

torture: build plugins testplugins
	cd $(TORTURE_DIR) && $(GO) test -count=1 -timeout 90m . -args \
		-torture.trials=$(TORTURE_LONG) -torture.report=$(BIN)/torture-long.md

test: lint unit integration nomad torture-short demo

# The testing.B benchmarks (conf parsing, state write/read, result merge),
# then the side-by-side benchmark (test/bench, its own module; needs root):
# nicmux vs the same chains attached directly by go-cni, serially and in
# parallel, nicmux's own cost, bare start and scale. It writes
# test/bench/RESULTS.md.
bench: build plugins testplugins
	$(GO) test -run '^$$' -bench . -benchmem ./conf/ ./state/ ./mux/
	cd $(BENCH_DIR) && $(GO) run . -bin $(BIN) -out RESULTS.md

clean:
	rm -rf $(BIN)
