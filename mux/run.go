package mux

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/release"
)

// Run is nicmux's main: it checks the environment, naming any offending
// variable, and hands over to skel. It returns the error to print, if any.
func Run(p *Plugin, getenv func(string) string) *types.Error {
	if e := checkEnv(getenv); e != nil {
		return e
	}
	return skel.PluginMainFuncsWithError(p.Funcs(), version.PluginSupports(conf.SupportedVersions()...), release.About("nicmux"))
}
