package ipam

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nicmux/nicmux/ipam/ipamd"
)

// supported are the CNI versions nicmux-ipam speaks.
func supported() version.PluginInfo {
	return version.PluginSupports(ipamd.CNIVersions()...)
}

// plugin runs nicmux-ipam's CNI verbs.
type plugin struct {
	// Dial connects to the store a configuration names.
	Dial func(EtcdConfig) (Store, error)
	// Hostname names the node when the configuration does not.
	Hostname func() (string, error)
	// Stdout receives ADD's result.
	Stdout io.Writer
	// Parent bounds the verbs with the daemon's call (nil: none).
	Parent context.Context
}

// Funcs are the verbs, for skel.
func (p *plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{
		Add:    p.verb("ADD", (*call).add),
		Del:    p.verb("DEL", (*call).del),
		Check:  p.verb("CHECK", (*call).check),
		GC:     p.verb("GC", (*call).gc),
		Status: p.verb("STATUS", (*call).status),
	}
}

// call is one verb's run: its configuration, the node's records, the
// allocator, and the deadline of all its etcd work.
type call struct {
	cfg *config
	id  OwnerID
	rec *records
	// hint is what the records said when the call began.
	hint   hint
	alloc  *allocator
	ctx    context.Context
	stdout io.Writer
	// For the metrics: the store's unanswered requests, and the pool's
	// leased addresses when the verb read them all (GC), else -1.
	unanswered int
	used       int
}

// verb runs f in a call; its error becomes the CNI error here, once. The
// store's connection is not closed: the process ends with the verb, and
// its exit closes it without delaying the answer.
func (p *plugin) verb(name string, f func(*call) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		start := time.Now()
		c, err := p.open(args)
		if err != nil {
			return toCNI(err)
		}
		defer c.rec.Close()
		parent := p.Parent
		if parent == nil {
			parent = context.Background()
		}
		ctx, cancel := context.WithTimeout(parent, c.cfg.Etcd.Timeout)
		defer cancel()
		c.ctx = ctx
		err = f(c)
		// A hint only: one not written costs a round trip later, never an
		// address.
		_ = c.rec.SetHint(&c.hint, &c.alloc.hint)
		c.record(name, err, time.Since(start))
		return toCNI(err)
	}
}

func (p *plugin) open(args *skel.CmdArgs) (*call, error) {
	cfg, err := parseConfig(args.StdinData, args.Args, p.Hostname)
	if err != nil {
		return nil, err
	}
	rec, err := openRecords(cfg.DataDir, cfg.Pool.Name)
	if err != nil {
		return nil, err
	}
	store, err := p.Dial(cfg.Etcd)
	if err != nil {
		rec.Close()
		return nil, configErr("ipam.etcd: %v", err)
	}
	h := rec.Hint()
	c := &call{
		cfg:    cfg,
		id:     OwnerID{ContainerID: args.ContainerID, IfName: args.IfName},
		rec:    rec,
		hint:   *h,
		stdout: p.Stdout,
		used:   -1,
	}
	c.alloc = newAllocator(&unanswered{Store: store, onUnanswered: func() { c.unanswered++ }}, cfg.Pool, cfg.Etcd.Prefix, cfg.Node, h)
	c.alloc.sticky = cfg.Sticky
	return c, nil
}

// unreachable names etcd and its endpoints in an error that says it did
// not answer.
func (c *call) unreachable(err error) error { return unreachable(c.cfg.Etcd, err) }

func unreachable(etcd EtcdConfig, err error) error {
	if !errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%s: no answer within %s: %w", etcd, etcd.Timeout, err)
}

// drain completes the releases queued on the node.
func (c *call) drain() error {
	_, err := drainQueue(c.ctx, c.rec, c.alloc, c.cfg.Etcd)
	return err
}

// drainQueue completes the releases queued in rec and returns them; it
// stops at the first that etcd does not answer.
func drainQueue(ctx context.Context, rec *records, a *allocator, etcd EtcdConfig) ([]queuedRelease, error) {
	qs, err := rec.Queued()
	if err != nil {
		return nil, err
	}
	var done []queuedRelease
	var errs []error
	for _, q := range qs {
		_, err := a.Release(ctx, q.Owner(), q.Claim, rec.Held(q.Owner()))
		if err != nil && !errors.Is(err, ErrUnreadable) {
			errs = append(errs, fmt.Errorf("the release of %s queued %s: %w", q.Owner(), q.Queued.Format(time.RFC3339), unreachable(etcd, err)))
			if errors.Is(err, ErrUnavailable) {
				break
			}
			continue
		}
		if err := rec.Done(q); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, q)
	}
	return done, errors.Join(errs...)
}

// add claims the owner's addresses. Releases queued on the node go first:
// one of them may be this owner's.
func (c *call) add() error {
	if err := c.drain(); err != nil {
		return fmt.Errorf("node %s: completing the releases queued while etcd was away: %w", c.cfg.Node, err)
	}
	claim := newClaimID()
	c.alloc.used = c.rec.Used(time.Now())
	got, err := c.alloc.Claim(c.ctx, c.id, c.cfg.Network, c.cfg.Requested, claim)
	if errors.Is(err, ErrUnavailable) {
		// The claim may be written although no answer came: queue its
		// release, so that the failed ADD leaves nothing once etcd is back.
		q := queuedRelease{ContainerID: c.id.ContainerID, IfName: c.id.IfName, Claim: claim, Queued: time.Now().UTC(), Why: "ADD got no answer from etcd"}
		return errors.Join(c.unreachable(err), c.rec.Queue(q))
	}
	if err != nil {
		return err
	}
	if err := c.rec.Hold(got.Lease, got.Raw); err != nil {
		if !got.Held {
			_, _ = c.alloc.Release(c.ctx, c.id, got.Lease.Claim, nil)
		}
		return err
	}
	return c.print(got.Lease)
}

// print writes ADD's result: each address with its subnet's prefix length
// and gateway, and the configured routes.
func (c *call) print(l *Lease) error {
	r := &types100.Result{CNIVersion: types100.ImplementedSpecVersion, Routes: c.cfg.Routes}
	for _, a := range l.IPs() {
		ipc := &types100.IPConfig{Address: net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(addrBits(a), addrBits(a))}}
		if b, ok := c.cfg.Pool.blockOf(a); ok {
			ipc.Address.Mask = net.CIDRMask(b.r.Subnet.Bits(), addrBits(a))
			if b.r.Gateway.IsValid() {
				ipc.Gateway = b.r.Gateway.AsSlice()
			}
		}
		r.IPs = append(r.IPs, ipc)
	}
	out, err := r.GetAsVersion(c.cfg.CNIVersion)
	if err != nil {
		return codeErr(types.ErrIncompatibleCNIVersion, err)
	}
	return out.PrintTo(c.stdout)
}

// del releases whatever the owner holds. When etcd does not answer, the
// release is queued in the node's records and DEL succeeds: the address
// stays taken until the next call on the node completes it.
func (c *call) del() error {
	_ = c.drain()
	held := c.rec.Held(c.id)
	released, err := c.alloc.Release(c.ctx, c.id, "", held)
	if errors.Is(err, ErrUnavailable) {
		// Limited to the recorded claim when there is one, so that a late
		// drain cannot release a later ADD's lease of the same owner.
		q := queuedRelease{ContainerID: c.id.ContainerID, IfName: c.id.IfName, Queued: time.Now().UTC(), Why: "DEL got no answer from etcd"}
		if held != nil {
			q.Claim = held.Lease.Claim
		}
		if qerr := c.rec.Queue(q); qerr != nil {
			return errors.Join(c.unreachable(err), qerr)
		}
		return c.rec.Drop(c.id)
	}
	var derr error
	if released != nil && c.cfg.Sticky > 0 {
		// etcd keeps the addresses for the owner: the node's guesses avoid
		// them as long as etcd may.
		derr = c.rec.Keep(c.id, time.Now().Add(2*c.cfg.Sticky))
	} else {
		derr = c.rec.Drop(c.id)
	}
	if derr != nil {
		return errors.Join(err, derr)
	}
	return err
}

// check verifies that etcd still records the owner's lease and that
// prevResult holds its addresses.
func (c *call) check() error {
	_ = c.drain()
	l, err := c.alloc.Lookup(c.ctx, c.id)
	from := c.cfg.Etcd.String()
	if errors.Is(err, ErrUnavailable) {
		// A failed CHECK makes Nomad rebuild the namespace and ADD again,
		// which etcd's absence fails too: the node's record stands in.
		l, err = nil, nil
		if h := c.rec.Held(c.id); h != nil {
			l = h.Lease
		}
		from = "node " + c.cfg.Node + "'s records (etcd does not answer)"
	}
	if err != nil {
		return err
	}
	if l == nil {
		return codeErr(types.ErrUnknownContainer, fmt.Errorf("pool %s: %s records no lease for %s", c.cfg.Pool.Name, from, c.id))
	}
	prev, err := prevIPs(c.cfg)
	if err != nil {
		return err
	}
	for _, a := range l.IPs() {
		if !slices.Contains(prev, a) {
			return codeErr(types.ErrUnknownContainer, fmt.Errorf("pool %s: %s records %s for %s, which prevResult does not hold (it has %v)", c.cfg.Pool.Name, from, a, c.id, prev))
		}
	}
	return nil
}

// prevIPs are the addresses of CHECK's prevResult.
func prevIPs(cfg *config) ([]netip.Addr, error) {
	if len(cfg.PrevResult) == 0 {
		return nil, configErr("prevResult: missing: CHECK needs the result of ADD")
	}
	res, err := version.NewResult(cfg.CNIVersion, cfg.PrevResult)
	if err != nil {
		return nil, codeErr(types.ErrDecodingFailure, fmt.Errorf("prevResult: %w", err))
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, codeErr(types.ErrDecodingFailure, fmt.Errorf("prevResult: %w", err))
	}
	var out []netip.Addr
	for _, ipc := range r.IPs {
		if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

// gc releases the node's leases of this network whose owners are not in
// the valid list (CNI 1.1 GC). The runtime runs no ADD or DEL meanwhile.
func (c *call) gc() error {
	errs := []error{c.drain()}
	valid := map[OwnerID]bool{}
	for _, v := range c.cfg.Valid {
		valid[OwnerID{ContainerID: v.ContainerID, IfName: v.IfName}] = true
	}
	held, bad, err := c.alloc.Leases(c.ctx)
	if err != nil {
		return errors.Join(append(errs, c.unreachable(err))...)
	}
	errs = append(errs, bad...)
	c.used = 0
	for _, h := range held {
		l := h.Lease
		c.used += len(l.IPs())
		if l.Node != c.cfg.Node || l.Network != c.cfg.Network || valid[l.Owner()] {
			continue
		}
		if _, err := c.alloc.Free(c.ctx, h); err != nil {
			errs = append(errs, c.unreachable(err))
			continue
		}
		c.used -= len(l.IPs())
		errs = append(errs, c.rec.Drop(l.Owner()))
	}
	// Records etcd has no lease for (released elsewhere, or lost in a
	// restore) go too, when not valid.
	local, _, err := c.rec.All()
	errs = append(errs, err)
	for _, l := range local {
		if l.Network == c.cfg.Network && !valid[l.Owner()] {
			errs = append(errs, c.rec.Drop(l.Owner()))
		}
	}
	return errors.Join(errs...)
}

// status reports whether etcd answers, with a write of the node's
// last-write key: code 50 when it does not.
func (c *call) status() error {
	_ = c.drain()
	if err := c.alloc.Touch(c.ctx); err != nil {
		return codeErr(types.ErrPluginNotAvailable, fmt.Errorf("not ready: %w", c.unreachable(err)))
	}
	return nil
}
