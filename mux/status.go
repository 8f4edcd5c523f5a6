package mux

import (
	"context"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
)

// status reports whether nicmux can serve its verbs (see Plugin.Status); a
// chain that is not ready is logged, never a failure.
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
	// Asked at once: Nomad waits for STATUS before every setup and
	// teardown, and a chain that is not ready may take its plugin's whole
	// timeout to say so.
	var calls []func()
	for _, c := range onePerNetwork(all, func(c *conf.Chain) bool { return conf.AtLeast(c.CNIVersion, "1.1.0") }) {
		calls = append(calls, func() {
			if err := v.runner.Status(ctx, c); err != nil {
				v.log.Warn("STATUS: a chain is not ready; ADDs that use it fail, teardowns go on", "interface", c.IfName,
					"network", c.Network, "delegate", pluginOf(err), "code", codeOf(err), "error", err)
			}
		})
	}
	if len(calls) > 0 {
		together(calls...)
	}
	return nil
}

// pluginOf names the plugin a delegate failure came from, or "".
func pluginOf(err error) string {
	var pe *delegate.PluginError
	if errors.As(err, &pe) {
		return pe.Plugin
	}
	return ""
}
