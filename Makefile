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

.PHONY: all build plugins testplugins install demo test unit integration lint bench clean

all: build

build:
	$(GO) build -trimpath -o $(BIN)/nicmux ./cmd/nicmux

# go install pkg@version builds each plugin with the plugins module's own
# go.mod, exactly as that release pins its dependencies.
plugins: $(BIN)/plugins/.version-$(PLUGINS_VERSION)

$(BIN)/plugins/.version-$(PLUGINS_VERSION):
	mkdir -p $(BIN)/plugins
	GOBIN=$(BIN)/plugins $(GO) install $(foreach p,$(PLUGINS),$(PLUGINS_MODULE)/plugins/$(p)@$(PLUGINS_VERSION))
	GOBIN=$(BIN) $(GO) install github.com/containernetworking/cni/cnitool@$(CNI_VERSION)
	touch $@

testplugins:
	$(GO) build -o $(BIN)/testplugins/recorder ./test/plugins/recorder

install: build
	install -D -m 0755 $(BIN)/nicmux $(DESTDIR)$(CNI_BIN_DIR)/nicmux

demo: build plugins
	./examples/demo/demo.sh

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff

unit:
	$(GO) test -race -count=1 ./conf/... ./state/... ./delegate/... ./mux/...

# Integration tests need root: they make network namespaces and links.
integration: build plugins testplugins
	$(GO) test -count=1 -timeout 20m ./test/...

test: lint unit integration

bench: build plugins testplugins
	$(GO) test -run '^$$' -bench . -benchmem ./conf/... ./state/... ./mux/...

clean:
	rm -rf $(BIN)
