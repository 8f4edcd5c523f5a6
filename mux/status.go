package mux

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
)

// Status (spec 1.1) reports whether nicmux can serve its verbs: the state
// folder is usable, and every chain at 1.1.0 or later of the attachment
// files answers STATUS. Otherwise it fails with code 50 naming the folder or
// chain, or with a delegate's own 50 or 51 (51: existing containers have
// limited connectivity).
//
// An attachment file that does not parse is logged, never a failure: Nomad
// 1.9.5 and later run STATUS before every ADD and every teardown of a
// 1.1.0 list and skip the teardown when it fails, so a typo in one set
// would leak every allocation's interfaces; the ADDs that use that set fail
// with its error anyway, and `nicmux validate` reports it.
func (p *Plugin) Status(ctx context.Context, args *skel.CmdArgs) error {
	return p.do(ctx, "STATUS", args, (*verb).status)
}

func (v *verb) status(ctx context.Context) error {
	notReady := func(err error) error { return withCode(types.ErrPluginNotAvailable, fmt.Errorf("not ready: %w", err)) }
	if err := v.openStore(false); err != nil {
		return notReady(err)
	}
	if err := v.store.CheckWritable(); err != nil {
		return notReady(err)
	}
	all, errs := v.everyChain()
	for _, err := range errs {
		v.log.Warn("STATUS: an attachment file does not parse; ADDs that use it fail", "error", err)
	}
	for _, c := range onePerNetwork(all, func(c *conf.Chain) bool { return conf.AtLeast(c.CNIVersion, "1.1.0") }) {
		if err := v.runner.Status(ctx, c); err != nil {
			err = fmt.Errorf("not ready: %s (network %s): %w", c.IfName, c.Network, err)
			if code := CodeOf(err); code == types.ErrPluginNotAvailable || code == types.ErrLimitedConnectivity {
				return err
			}
			return withCode(types.ErrPluginNotAvailable, err)
		}
	}
	return nil
}
