module github.com/nicmux/nicmux/test/release

go 1.26.8

replace github.com/nicmux/nicmux/test/netnsutil => ../netnsutil

replace github.com/nicmux/nicmux/test/testworld => ../testworld

require (
	github.com/nicmux/nicmux/test/netnsutil v0.0.0-00010101000000-000000000000
	github.com/nicmux/nicmux/test/testworld v0.0.0-00010101000000-000000000000
	golang.org/x/sys v0.49.0
)

require (
	github.com/containernetworking/cni v1.1.2 // indirect
	github.com/vishvananda/netlink v1.3.1 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
)
