package mux

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
)

// status reports whether nicmux can serve its verbs (see Plugin.Status).
func (v *invocation) status(ctx context.Context) error {
	notReady := func(err error) error { return withCode(types.ErrPluginNotAvailable, fmt.Errorf("not ready: %w", err)) }
	if err := v.openStore(false); err != nil {
		return notReady(err)
	}
	if err := v.store.CheckWritable(); err != nil {
		return notReady(err)
	}
	all, errs := v.sets.every()
	for _, err := range errs {
		v.log.Warn("STATUS: an attachment file does not parse; ADDs that use it fail", "error", err)
	}
	for _, c := range onePerNetwork(all, func(c *conf.Chain) bool { return conf.AtLeast(c.CNIVersion, "1.1.0") }) {
		if err := v.runner.Status(ctx, c); err != nil {
			err = fmt.Errorf("not ready: %s (network %s): %w", c.IfName, c.Network, err)
			if code := codeOf(err); code == types.ErrPluginNotAvailable || code == types.ErrLimitedConnectivity {
				return err
			}
			return withCode(types.ErrPluginNotAvailable, err)
		}
	}
	return nil
}
