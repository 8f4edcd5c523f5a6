package mux

import (
	"context"
	"errors"

	"github.com/containernetworking/cni/pkg/skel"
)

// GC is not implemented yet.
func (p *Plugin) GC(ctx context.Context, args *skel.CmdArgs) error {
	return errors.New("GC is not implemented yet")
}

// Status is not implemented yet.
func (p *Plugin) Status(ctx context.Context, args *skel.CmdArgs) error {
	return errors.New("STATUS is not implemented yet")
}
