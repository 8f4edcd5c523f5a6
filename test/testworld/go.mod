module github.com/nicmux/nicmux/test/testworld

go 1.26.8

replace github.com/nicmux/nicmux/test/netnsutil => ../netnsutil

require (
	github.com/containernetworking/cni v1.1.2
	github.com/nicmux/nicmux/test/netnsutil v0.0.0-00010101000000-000000000000
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sys v0.49.0
)
