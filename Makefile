# nicmux build, test and demo. Everything lands in ./bin.
# Go and gofmt are found without relying on the caller's PATH: sudo's
# secure_path (stock Debian) drops /usr/local/go/bin, where Go's own
# installer puts them. GO=... and GOFMT=... still win.

# Under sudo (`sudo make demo`), the goals run in a sub-make, and then
# whatever root made in the tree (bin/, a report, git's index) is handed back
# to the user who ran sudo, however the goals ended (failed or interrupted):
# the user's next `make build` or `make clean` can write there. Only in a
# tree that user owns.
ifeq ($(shell id -u)$(if $(filter-out 0,$(SUDO_UID)),,no)$(NICMUX_SUDO_INNER),0)
.PHONY: sudo-and-hand-back
$(or $(MAKECMDGOALS),all): sudo-and-hand-back ; @:
sudo-and-hand-back:
	@trap : INT TERM HUP; \
	NICMUX_SUDO_INNER=1 $(MAKE) -f $(firstword $(MAKEFILE_LIST)) $(MAKECMDGOALS); rc=$$?; \
	if [ "$$(stat -c %u $(CURDIR))" = "$(SUDO_UID)" ]; then \
		find $(CURDIR) -xdev -user 0 -exec chown -h $(SUDO_UID):$(SUDO_GID) {} + || rc=1; \
	fi; exit $$rc
else

ifndef GO
GO              := $(firstword $(shell command -v go 2>/dev/null) $(wildcard /usr/local/go/bin/go) go)
endif
ifndef GOFMT
GOFMT           := $(firstword $(shell command -v gofmt 2>/dev/null) $(wildcard $(dir $(GO))gofmt /usr/local/go/bin/gofmt) gofmt)
endif
BIN             := $(CURDIR)/bin
# The commands of cmd/ that are built, installed and shipped.
BINARIES        := nicmux nicmux-ipam
# nicmux-ipam's node daemon, which holds the etcd clients (ipam/ipamd).
BINARIES        += nicmux-ipamd
# The renderer of the metricsFile, which both plugins start (metrics/).
BINARIES        += nicmux-metrics
# The release this tree is: the tag git describe finds (v0.3.0, or
# v0.3.0-2-gabc1234-dirty after it) and the commit, stamped into the
# binaries, so that `nicmux version` and its bare run name them whatever
# -buildvcs says. Outside a checkout both are empty, and nicmux falls back
# on what go recorded (see release/). RELEASE_VERSION=... overrides.
GIT             := git -C $(CURDIR) -c safe.directory=$(CURDIR)
# A clone without tags (a CI's shallow or single-branch clone) describes a
# bare commit hash, which is no version: the binaries then say v0.0.0-dev.
RELEASE_DESCRIBE := $(shell $(GIT) describe --tags --always --dirty --match 'v[0-9]*' 2>/dev/null)
ifeq ($(origin RELEASE_VERSION),undefined)
RELEASE_VERSION := $(filter v%,$(RELEASE_DESCRIBE))
endif
ifeq ($(origin RELEASE_COMMIT),undefined)
RELEASE_COMMIT  := $(shell $(GIT) rev-parse HEAD 2>/dev/null)$(if $(filter %-dirty,$(RELEASE_DESCRIBE)),-dirty)
endif
# Static and stripped: a dynamic loader and symbol tables only slow the start
# of a binary that runs once per verb (and once per Nomad fingerprint).
GO_BUILD        = CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w \
                  -X github.com/nicmux/nicmux/release.stampedVersion=$(RELEASE_VERSION) \
                  -X github.com/nicmux/nicmux/release.stampedCommit=$(RELEASE_COMMIT)"
# The reference plugins the tests and the demo run, at a pinned release,
# into bin/plugins.
PLUGINS_VERSION := v1.10.0
# Other releases, each into bin/plugins-<version>, for the go-cni suite:
# v1.3.0 is what Nomad's own setup script installs.
NOMAD_PLUGINS_VERSIONS := v1.3.0
PLUGINS_MODULE  := github.com/containernetworking/plugins
PLUGINS         := main/bridge main/macvlan main/ptp main/loopback \
                   ipam/host-local ipam/static meta/tuning meta/portmap \
                   main/vlan main/ipvlan main/host-device \
                   meta/bandwidth meta/firewall meta/sbr
# The plugins' stamp files carry the list's checksum, so that a longer list
# builds the new ones in a bin/ made before.
PLUGINS_SUM     := $(firstword $(shell echo '$(PLUGINS)' | cksum))
# cnitool, from the CNI release nicmux builds against.
CNI_VERSION     := v1.3.1
DESTDIR         ?=
CNI_BIN_DIR     ?= /opt/cni/bin
# The go-cni suite's module; its legs' modfiles besides go.mod; how many
# legs run at the same time.
NOMAD_DIR       := test/nomad
NOMAD_MODFILES  := $(patsubst $(NOMAD_DIR)/%,%,$(wildcard $(NOMAD_DIR)/legs/*.mod))
NOMAD_JOBS      ?= 4
# The side-by-side benchmark's module, and extra flags for it: the reported
# figures come from BENCH_ARGS="-runs 3 -baseline DIR" (see test/bench).
BENCH_DIR       := test/bench
BENCH_ARGS      ?=
# The torture suite's module; trials per randomized class of its short pass
# (make test) and of its long one (make torture).
TORTURE_DIR     := test/torture
TORTURE_SHORT   ?= 1
TORTURE_LONG    ?= 20
# The etcd test launcher's module, and the cluster IPAM suite's.
ETCDTEST_DIR    := test/etcdtest
CLUSTER_DIR     := test/cluster
# What `make dist` makes, in bin/dist, for each of DIST_ARCHES (see dist);
# the release's Debian maintainer; the module that checks it all.
DIST            := $(BIN)/dist
DIST_ARCHES     := amd64 arm64
DIST_VERSION    := $(or $(RELEASE_VERSION),v0.0.0-dev)
DIST_EPOCH       = $(or $(shell $(GIT) log -1 --format=%ct 2>/dev/null),0)
DEB_MAINTAINER  ?= nicmux <dev@nicmux.invalid>
RELEASE_TEST_DIR := test/release
# The check of the example alert rules (Prometheus's rule parser).
RULES_DIR       := test/rules

.PHONY: all build plugins testplugins install install-plugins demo test unit integration nomad torture torture-short lint bench clean
.PHONY: etcd cluster
.PHONY: dist distcheck

all: build

build:
	$(GO_BUILD) -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

# go install pkg@version builds each plugin with the plugins module's own
# go.mod, exactly as that release pins its dependencies.
# The version is stamped as in the release binaries: run bare, a plugin then
# prints it, and Nomad runs CHECK only if the bridge plugin's is >= 1.3.0.
plugins: $(BIN)/plugins/.stamped-$(PLUGINS_VERSION)-$(PLUGINS_SUM) \
	$(foreach v,$(NOMAD_PLUGINS_VERSIONS),$(BIN)/plugins-$(v)/.stamped-$(PLUGINS_SUM))

# install-plugins,folder,version
define install-plugins
	mkdir -p $(1)
	GOBIN=$(1) $(GO) install \
		-ldflags="-X $(PLUGINS_MODULE)/pkg/utils/buildversion.BuildVersion=$(2)" \
		$(foreach p,$(PLUGINS),$(PLUGINS_MODULE)/plugins/$(p)@$(2))
endef

$(BIN)/plugins/.stamped-$(PLUGINS_VERSION)-$(PLUGINS_SUM):
	$(call install-plugins,$(BIN)/plugins,$(PLUGINS_VERSION))
	GOBIN=$(BIN) $(GO) install github.com/containernetworking/cni/cnitool@$(CNI_VERSION)
	touch $@

$(BIN)/plugins-%/.stamped-$(PLUGINS_SUM):
	$(call install-plugins,$(BIN)/plugins-$*,$*)
	touch $@

testplugins:
	$(GO) build -o $(BIN)/testplugins/recorder ./test/plugins/recorder
	$(GO) build -o $(BIN)/testplugins/ifrename ./test/plugins/ifrename
	cd $(TORTURE_DIR) && $(GO) build -o $(BIN)/testplugins/torture ./plugins/torture

# install-bins,files: each file into CNI_BIN_DIR as a complete copy renamed
# over the old one, so that a verb (or Nomad's fingerprint) starting
# meanwhile runs the old binary or the new one, never a half-written file.
define install-bins
	install -d $(DESTDIR)$(CNI_BIN_DIR)
	for f in $(1); do \
		install -m 0755 $$f $(DESTDIR)$(CNI_BIN_DIR)/.$$(basename $$f).new && \
		mv -f $(DESTDIR)$(CNI_BIN_DIR)/.$$(basename $$f).new $(DESTDIR)$(CNI_BIN_DIR)/$$(basename $$f) || exit 1; \
	done
endef

install: build
	$(call install-bins,$(addprefix $(BIN)/,$(BINARIES)))

# The pinned reference plugins, version-stamped (Nomad runs CHECK only if
# the bridge binary in its cni_path reports 1.3.0 or later), beside nicmux:
# the plugins the attachment files name must be in Nomad's cni_path.
install-plugins: $(BIN)/plugins/.stamped-$(PLUGINS_VERSION)-$(PLUGINS_SUM)
	$(call install-bins,$(foreach p,$(PLUGINS),$(BIN)/plugins/$(notdir $(p))))

demo: build plugins
	./examples/demo/demo.sh

# Two nodes sharing one nicmux-ipam pool through a local etcd (the test etcd
# server), in namespaces of its own.
.PHONY: demo-cluster
demo-cluster: build plugins etcd
	./examples/demo/demo-cluster.sh

# The assignment keeps gofmt's exit status: a missing gofmt fails lint
# instead of listing no file.
lint:
	@out="$$($(GOFMT) -l .)" || { echo "lint: $(GOFMT) -l failed"; exit 1; }; \
		test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	cd $(NOMAD_DIR) && $(GO) vet ./... && $(GO) mod tidy -diff
	cd $(NOMAD_DIR) && for m in $(NOMAD_MODFILES); do \
		$(GO) vet -modfile=$$m ./... && $(GO) mod tidy -modfile=$$m -diff || exit 1; done
	cd $(BENCH_DIR) && $(GO) vet ./... && $(GO) mod tidy -diff
	cd test/netnsutil && $(GO) vet ./... && $(GO) mod tidy -diff
	cd test/testworld && $(GO) vet ./... && $(GO) mod tidy -diff
	cd test/integration && $(GO) vet ./... && $(GO) mod tidy -diff
	cd $(TORTURE_DIR) && $(GO) vet ./... && $(GO) mod tidy -diff
	cd $(ETCDTEST_DIR) && $(GO) vet ./... && $(GO) mod tidy -diff
	cd $(CLUSTER_DIR) && $(GO) vet ./... && $(GO) mod tidy -diff
	cd $(RELEASE_TEST_DIR) && $(GO) vet ./... && $(GO) mod tidy -diff
	cd $(RULES_DIR) && $(GO) vet ./... && $(GO) mod tidy -diff
	cd packaging && $(GO) mod tidy -diff

unit:
	$(GO) test -race -count=1 ./conf/... ./state/... ./delegate/... ./mux/... ./ns/... ./inspect/... ./ops/... ./cli/...
	$(GO) test -race -count=1 ./ipam/...
	$(GO) test -race -count=1 ./safedir/... ./cmdline/...
	$(GO) test -race -count=1 ./nomad/... ./rehearse/... ./adopt/...
	cd test/netnsutil && $(GO) test -count=1 ./...
	cd test/testworld && $(GO) test -count=1 ./...
	cd $(RULES_DIR) && $(GO) test -count=1 ./...

# Integration tests need root: they make network namespaces and links.
integration: build plugins testplugins
	cd test/integration && $(GO) test -count=1 -timeout 20m ./...

# The go-cni suite (test/nomad, its own module) runs once per leg: one per
# go-cni / containernetworking/cni pair some Nomad release pins (go.mod and
# the modfiles in test/nomad/legs), and the newest pair again with the
# reference plugins Nomad's setup script installs (v1.3.0). The legs are
# listed in test/nomad/legs/legs.go; ./matrix builds one test binary per
# modfile and runs NOMAD_JOBS legs at a time. It needs root and iptables.
nomad: build plugins testplugins
	cd $(NOMAD_DIR) && $(GO) run ./matrix -go $(GO) -j $(NOMAD_JOBS)

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

# nicmux-ipam's torture classes (test/cluster's TestTorture; needs root):
# the plugin killed at random points of ADD, DEL, GC and of completing a
# queued release, against a real etcd, then the runtime's recovery, with
# what was left counted; the summary goes to $(BIN)/torture-*-ipam.md, and
# with a node daemon answering the calls to $(BIN)/torture-*-ipamd.md.
torture-short: torture-ipam-short
torture: torture-ipam
.PHONY: torture-ipam-short torture-ipam
torture-ipam-short: build plugins testplugins etcd
	cd $(CLUSTER_DIR) && $(GO) test -count=1 -timeout 20m -run '^TestTorture$$' . -args \
		-torture.trials=$(TORTURE_SHORT) -torture.report=$(BIN)/torture-short-ipam.md
	cd $(CLUSTER_DIR) && NICMUX_TEST_IPAMD=1 $(GO) test -count=1 -timeout 20m -run '^TestTorture$$' . -args \
		-torture.trials=$(TORTURE_SHORT) -torture.report=$(BIN)/torture-short-ipamd.md
torture-ipam: build plugins testplugins etcd
	cd $(CLUSTER_DIR) && $(GO) test -count=1 -timeout 90m -run '^TestTorture$$' . -args \
		-torture.trials=$(TORTURE_LONG) -torture.report=$(BIN)/torture-long-ipam.md
	cd $(CLUSTER_DIR) && NICMUX_TEST_IPAMD=1 $(GO) test -count=1 -timeout 90m -run '^TestTorture$$' . -args \
		-torture.trials=$(TORTURE_LONG) -torture.report=$(BIN)/torture-long-ipamd.md

# The etcd server the cluster tests start (test/etcdtest, its own module):
# etcd's own main at the version its go.mod pins, in bin/tools, out of the
# cni_path the go-cni suite fingerprints (run bare, etcd serves).
etcd:
	cd $(ETCDTEST_DIR) && $(GO) build -o $(BIN)/tools/etcd ./etcd

# The cluster suite (test/cluster, its own module; needs root): the real
# nicmux-ipam binary, alone, under macvlan and bridge, and through nicmux,
# against real etcd servers (one member, and three), as several simulated
# nodes; etcd paused, a leader killed, release-node; the fleet example
# (examples/nomad/fleet) through go-cni as Nomad clients drive it. Its
# torture classes run with the torture targets. It runs twice: with no
# node daemon (nicmux-ipam runs nicmux-ipamd for each call), then with a
# nicmux-ipamd per simulated node answering its calls.
cluster: build plugins testplugins etcd
	cd $(ETCDTEST_DIR) && $(GO) test -count=1 -timeout 10m ./...
	cd $(CLUSTER_DIR) && $(GO) test -count=1 -timeout 20m -skip '^TestTorture$$' ./...
	cd $(CLUSTER_DIR) && NICMUX_TEST_IPAMD=1 $(GO) test -count=1 -timeout 20m -skip '^TestTorture$$' ./...

# What a release ships, in bin/dist: for each of DIST_ARCHES, the static
# BINARIES in a tarball laid out as the reference plugins' releases (the
# binaries at the top, beside LICENSE and README.md), and a Debian package
# made by nfpm (packaging/: the binaries in /opt/cni/bin, a systemd timer
# running nicmux gc); SHA256SUMS over them all. -buildvcs=false: what the
# binaries know of their release is the Makefile's stamp alone, and the
# tarballs' times and owners are fixed, so that a rebuild of a commit gives
# the same tarballs.
dist:
	rm -rf $(DIST) $(BIN)/dist-build
	mkdir -p $(DIST)
	$(foreach a,$(DIST_ARCHES),$(call dist-arch,$(a)))
	cd $(DIST) && sha256sum -- * > SHA256SUMS

# dist-arch,arch: one architecture's binaries, tarball and package.
define dist-arch
	GOOS=linux GOARCH=$(1) $(GO_BUILD) -buildvcs=false -o $(BIN)/dist-build/linux-$(1)/ $(addprefix ./cmd/,$(BINARIES))
	tar -c -I 'gzip -9n' -f $(DIST)/nicmux-linux-$(1)-$(DIST_VERSION).tgz --sort=name \
		--owner=0 --group=0 --numeric-owner --mtime=@$(DIST_EPOCH) --mode=u+rwX,go+rX,go-w \
		-C $(BIN)/dist-build/linux-$(1) . -C $(CURDIR) ./LICENSE ./README.md
	cd packaging && NFPM_ARCH=$(1) NFPM_VERSION=$(DIST_VERSION) NFPM_BINARIES=$(BIN)/dist-build/linux-$(1) \
		NFPM_MAINTAINER='$(DEB_MAINTAINER)' SOURCE_DATE_EPOCH=$(DIST_EPOCH) \
		$(GO) tool nfpm package -f nfpm.yaml -p deb -t $(DIST)/

endef

# Checks what dist made (test/release, its own module; needs root): each
# tarball's contents, SHA256SUMS, static binaries of the right
# architecture, the amd64 one run bare; the Debian packages through
# dpkg-deb; install-plugins; `sudo make demo` then a user's `make build`;
# every relative link of the README and docs/.
distcheck: dist build plugins
	cd $(RELEASE_TEST_DIR) && $(GO) test -count=1 -timeout 20m ./... -args \
		-bin=$(BIN) -binaries='$(BINARIES)' -version=$(DIST_VERSION) -commit=$(RELEASE_COMMIT) \
		-plugins-version=$(PLUGINS_VERSION) -go=$(GO)

test: lint unit integration nomad torture-short cluster demo distcheck

# The testing.B benchmarks (conf parsing, state write/read, result merge),
# then the side-by-side benchmark (test/bench, its own module; needs root):
# nicmux vs the same chains attached directly by go-cni, serially and in
# parallel, nicmux's own cost, where a verb's time goes, bare start and
# scale. It writes test/bench/RESULTS.md. BENCH_ARGS goes to test/bench:
# -runs K repeats it all for the figures' spread, -baseline DIR adds the
# nicmux binary in DIR (an older release) as variants of their own.
bench: build plugins testplugins
	$(GO) test -run '^$$' -bench . -benchmem ./conf/ ./state/ ./mux/ ./metrics/
	cd $(BENCH_DIR) && $(GO) run . -bin $(BIN) -out RESULTS.md $(BENCH_ARGS)
# nicmux-ipam's figures need the test etcd server; BENCH_ARGS="-only ipam"
# runs them alone and puts their section in place in RESULTS.md.
bench: etcd

clean:
	rm -rf $(BIN)

endif # the sudo hand-back at the top: every rule goes above this line
