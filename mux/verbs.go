package mux

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"
)

// Funcs returns the verbs for skel. Errors leave them as *types.Error with
// the spec's code: this is the one place where that conversion happens.
func (p *Plugin) Funcs() skel.CNIFuncs {
	cni := func(err error) error { return toCNIError(err) }
	return skel.CNIFuncs{
		Add:    func(args *skel.CmdArgs) error { return cni(p.Add(context.Background(), args)) },
		Check:  func(args *skel.CmdArgs) error { return cni(p.Check(context.Background(), args)) },
		Del:    func(args *skel.CmdArgs) error { return cni(p.Del(context.Background(), args)) },
		GC:     func(args *skel.CmdArgs) error { return cni(p.GC(context.Background(), args)) },
		Status: func(args *skel.CmdArgs) error { return cni(p.Status(context.Background(), args)) },
	}
}

// Add attaches every interface of the attachment file and prints the merged
// result. On any failure it releases what it attached and leaves no state
// behind (Nomad retries a failed ADD with no DEL in between).
func (p *Plugin) Add(ctx context.Context, args *skel.CmdArgs) error { return p.run(ctx, "ADD", args) }

// Check verifies every recorded interface independently: its chain's CHECK
// with its own recorded result as prevResult and its own CNI_IFNAME, and
// nicmux's own netlink check that the link is up with the recorded MAC and
// addresses. All failures are reported together, each naming its
// interface. CHECK only reads: it works on a read-only state folder.
//
// It checks what ADD set up, not the current attachment file: a changed
// file is logged as drift and never fails CHECK, because a false failure
// makes Nomad tear down the namespace and kill the allocation.
func (p *Plugin) Check(ctx context.Context, args *skel.CmdArgs) error {
	return p.run(ctx, "CHECK", args)
}

// Del releases every recorded interface in reverse order, each with the
// configuration, arguments and result recorded at ADD. It goes on past a
// failing interface and returns all failures; the state is removed once
// every interface is released, so a repeated DEL finishes the job. What
// cannot be read is released from what is left (the result records, the
// attachment file); without any state it releases the attachment file's
// chains, which delegates treat as a no-op when they hold nothing.
func (p *Plugin) Del(ctx context.Context, args *skel.CmdArgs) error { return p.run(ctx, "DEL", args) }

// GC (spec 1.1) releases, as DEL would, every container of this network
// whose attachment (container ID, runtime ifname) the runtime no longer
// lists as valid, then forwards GC to every chain of the attachment files,
// and to every chain's IPAM plugin whatever the chain's version, with the
// attachments nicmux still knows, so that a delegate never collects a live
// one. A valid attachment is never collected, whatever
// state nicmux has or lacks for it: a container whose record cannot be read
// is neither released nor left out of what the delegates are told is
// valid. It goes on past failures and reports them all.
func (p *Plugin) GC(ctx context.Context, args *skel.CmdArgs) error { return p.run(ctx, "GC", args) }

// Status (spec 1.1) reports whether nicmux can serve its verbs: the state
// folder is usable. Otherwise it fails with code 50 naming the folder. It
// asks every chain at 1.1.0 or later of the attachment files for STATUS,
// and logs a chain that is not ready, naming it, without failing: STATUS
// does not say which verb follows, and Nomad skips the teardown when it
// fails, so a chain that is only not ready to ADD (nicmux-ipam while etcd
// is away) would leak every allocation stopped meanwhile. Its ADDs fail on
// their own with its error, and roll back.
//
// An attachment file that does not parse is logged, never a failure: Nomad
// 1.9.5 and later run STATUS before every ADD and every teardown of a
// 1.1.0 list and skip the teardown when it fails, so a typo in one set
// would leak every allocation's interfaces; the ADDs that use that set fail
// with its error anyway, and `nicmux validate` reports it.
func (p *Plugin) Status(ctx context.Context, args *skel.CmdArgs) error {
	return p.run(ctx, "STATUS", args)
}

// run runs verb name: it reads nicmux's entry, opens the log, runs the
// verb, and logs its outcome.
func (p *Plugin) run(ctx context.Context, name string, args *skel.CmdArgs) (err error) {
	v, err := p.start(name, args)
	if err != nil {
		return err
	}
	defer func() { v.finish(err) }()
	switch name {
	case "ADD":
		return v.add(ctx)
	case "CHECK":
		return v.check(ctx)
	case "DEL":
		return v.del(ctx)
	case "GC":
		return v.gc(ctx)
	}
	return v.status(ctx)
}
