// Command nicmux is a CNI meta-plugin: one CNI entry that gives a container
// several interfaces, each through its own delegate plugin chain.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/mux"
)

func main() {
	skel.PluginMainFuncs(mux.New().Funcs(), version.PluginSupports(conf.SupportedVersions()...), mux.About())
}
