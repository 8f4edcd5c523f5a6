module github.com/nicmux/nicmux/test/torture

go 1.26.8

require (
	github.com/containernetworking/cni v1.3.1
	github.com/nicmux/nicmux/test/netnsutil v0.0.0-00010101000000-000000000000
	github.com/nicmux/nicmux/test/testworld v0.0.0-00010101000000-000000000000
	github.com/vishvananda/netlink v1.3.1
	golang.org/x/sys v0.49.0
)

require (
	github.com/vishvananda/netns v0.0.5 // indirect
	go.opentelemetry.io/otel v1.29.0 // indirect
	go.opentelemetry.io/otel/trace v1.29.0 // indirect
)

replace github.com/nicmux/nicmux/test/netnsutil => ../netnsutil

replace github.com/nicmux/nicmux/test/testworld => ../testworld
