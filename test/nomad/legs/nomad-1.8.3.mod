module github.com/nicmux/nicmux/test/nomad

go 1.26.8

require (
	github.com/containerd/go-cni v1.1.9
	github.com/containernetworking/cni v1.2.3
	github.com/hashicorp/hcl/v2 v2.25.0
	github.com/vishvananda/netlink v1.3.1
	github.com/zclconf/go-cty v1.19.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/vishvananda/netns v0.0.5 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

require (
	github.com/agext/levenshtein v1.2.1 // indirect
	github.com/apparentlymart/go-textseg/v15 v15.0.0 // indirect
	github.com/apparentlymart/go-textseg/v17 v17.0.1 // indirect
	github.com/mitchellh/go-wordwrap v1.0.1 // indirect
	github.com/nicmux/nicmux/test/netnsutil v0.0.0-00010101000000-000000000000
	github.com/nicmux/nicmux/test/testworld v0.0.0-00010101000000-000000000000
	golang.org/x/mod v0.29.0 // indirect
	golang.org/x/sync v0.18.0 // indirect
	golang.org/x/text v0.31.0 // indirect
	golang.org/x/tools v0.38.0 // indirect
)

replace github.com/nicmux/nicmux/test/netnsutil => ../netnsutil

replace github.com/nicmux/nicmux/test/testworld => ../testworld
