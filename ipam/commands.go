package ipam

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

const showHelp = `Prints each pool etcd holds: every range set's size, used and free
addresses, the blocks each node claims, and every lease with its owner
(container, interface, node, network) and age. -node keeps that node's
blocks and leases only. show only reads.

Exit status: 0 ok, 1 etcd cannot be read, -pool names no pool, or a record
cannot be read, 2 usage error.`

// connect dials etcd as the flags say and lists its pools, only the one
// named pool when it is set.
func (e *env) connect(cfg EtcdConfig, pool string) (*conn, error) {
	s, err := e.dial(cfg)
	if err != nil {
		return nil, err
	}
	// A command walks every pool: give it more than one verb's bound.
	ctx, cancel := context.WithTimeout(context.Background(), 4*cfg.Timeout+30*time.Second)
	c := &conn{cfg: cfg, store: s, ctx: ctx, close: func() { cancel(); s.Close() }}
	pools, bad, err := listPools(ctx, s, cfg.Prefix)
	if err != nil {
		c.close()
		return nil, unreachable(cfg, err)
	}
	c.bad = bad
	for _, p := range pools {
		if pool == "" || p.Name == pool {
			c.pools = append(c.pools, p)
		}
	}
	if pool != "" && len(c.pools) == 0 {
		c.close()
		return nil, fmt.Errorf("%s holds no pool %q under %s", cfg, pool, cfg.Prefix)
	}
	return c, nil
}

// open parses a command's flags, checks them with need (a usage error
// when it says one), then connects as they say; ok false means stop with
// code.
func (f *flags) open(e *env, ef *etcdFlags, args []string, pool *string, need func() string) (*conn, int, bool) {
	if code, ok := f.parse(e, args); !ok {
		return nil, code, false
	}
	if need != nil {
		if msg := need(); msg != "" {
			return nil, f.fail(e, "%s", msg), false
		}
	}
	cfg, err := ef.config(e)
	if err != nil {
		return nil, f.fail(e, "%v", err), false
	}
	c, err := e.connect(cfg, *pool)
	if err != nil {
		fmt.Fprintf(e.stderr, "nicmux-ipam %s: %v\n", f.name, err)
		return nil, exitFail, false
	}
	return c, 0, true
}

// conn is a command's connection to etcd and the pools it works on.
type conn struct {
	cfg   EtcdConfig
	store Store
	ctx   context.Context
	close func()
	pools []*pool
	bad   []error // pool definitions that cannot be read
}

func (c *conn) alloc(p *pool, node string) *allocator {
	return newAllocator(c.store, p, c.cfg.Prefix, node, nil)
}

func runShow(e *env, args []string) int {
	f := newFlags("show", showHelp)
	var ef etcdFlags
	ef.register(f)
	pool := f.String("pool", "", "show `POOL` only")
	node := f.String("node", "", "show the blocks and leases of `NODE` only")
	asJSON := f.Bool("json", false, "print one JSON object")
	c, code, ok := f.open(e, &ef, args, pool, nil)
	if !ok {
		return code
	}
	defer c.close()
	out := struct {
		Pools  []*poolReport `json:"pools"`
		Errors []string      `json:"errors,omitempty"`
	}{Pools: []*poolReport{}}
	for _, err := range c.bad {
		out.Errors = append(out.Errors, err.Error())
	}
	for _, p := range c.pools {
		r, err := c.alloc(p, "").Report(c.ctx, *node)
		if err != nil {
			out.Errors = append(out.Errors, unreachable(c.cfg, err).Error())
			continue
		}
		out.Pools = append(out.Pools, r)
		out.Errors = append(out.Errors, r.Errors...)
	}
	if *asJSON {
		printJSON(e.stdout, out)
	} else {
		printPools(e.stdout, out.Pools, e.now())
		for _, s := range out.Errors {
			fmt.Fprintf(e.stdout, "error: %s\n", s)
		}
	}
	if len(out.Errors) > 0 {
		return exitFail
	}
	return exitOK
}

func printPools(w io.Writer, pools []*poolReport, now time.Time) {
	if len(pools) == 0 {
		fmt.Fprintln(w, "no pool")
	}
	for i, r := range pools {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "pool %s\n", r.Pool)
		for _, s := range r.Sets {
			fmt.Fprintf(w, "  range set %s: %s addresses, %d used, %s free\n", s.Ranges, s.Size, s.Used, s.Free)
		}
		for _, nb := range r.Blocks {
			fmt.Fprintf(w, "  node %s: %d blocks: %s\n", nb.Node, len(nb.Blocks), strings.Join(nb.Blocks, " "))
		}
		if len(r.Leases) == 0 {
			fmt.Fprintln(w, "  no lease")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  ADDRESSES\tCONTAINER\tIFNAME\tNODE\tNETWORK\tAGE")
		for _, l := range r.Leases {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", ipList(l), l.ContainerID, l.IfName, l.Node, l.Network, now.Sub(l.Time).Truncate(time.Second))
		}
		_ = tw.Flush()
	}
}

const checkHelp = `Compares a node's own records (its data folder) with etcd, pool by pool,
after completing the releases queued there while etcd was away. It reports:

  missing in etcd   the node records a lease etcd does not: etcd lost it (a
                    restore from an older snapshot); its address may be handed
                    out again, and is named if it already was
  differs           etcd records another claim or other addresses for the owner
  not recorded      etcd records a lease of the node that the node does not
                    (a crash between the claim and the record, or lost records)
  queued            a release that etcd did not answer yet

Run it on the node, with the dataDir and node name of its configuration.

Exit status: 0 the records agree, 1 they disagree, a release stays queued,
or etcd or the records cannot be read, 2 usage error.`

// finding is one disagreement check reports.
type finding struct {
	Pool   string `json:"pool"`
	Owner  string `json:"owner"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

func runCheck(e *env, args []string) int {
	f := newFlags("check", checkHelp)
	var ef etcdFlags
	ef.register(f)
	host, _ := os.Hostname()
	node := f.String("node", host, "the node's `NAME` (its configuration's node)")
	dataDir := f.String("data-dir", DefaultDataDir, "the node's data folder `DIR`")
	pool := f.String("pool", "", "check `POOL` only")
	asJSON := f.Bool("json", false, "print one JSON object")
	c, code, ok := f.open(e, &ef, args, pool, nil)
	if !ok {
		return code
	}
	defer c.close()
	var findings []finding
	var completed []queuedRelease
	for _, p := range c.pools {
		fs, done, err := c.checkPool(p, *node, *dataDir)
		if err != nil {
			findings = append(findings, finding{Pool: p.Name, Kind: "error", Detail: err.Error()})
		}
		findings, completed = append(findings, fs...), append(completed, done...)
	}
	if *asJSON {
		printJSON(e.stdout, map[string]any{"node": *node, "completed": completed, "findings": findings})
	} else {
		for _, q := range completed {
			fmt.Fprintf(e.stdout, "completed the release of %s queued %s (%s)\n", q.Owner(), q.Queued.Format(time.RFC3339), q.Why)
		}
		for _, fd := range findings {
			fmt.Fprintf(e.stdout, "pool %s: %s %s: %s\n", fd.Pool, fd.Kind, fd.Owner, fd.Detail)
		}
		if len(findings) == 0 {
			fmt.Fprintf(e.stdout, "node %s: its records agree with %s\n", *node, c.cfg)
		}
	}
	if len(findings) > 0 {
		return exitFail
	}
	return exitOK
}

// checkPool compares the node's records of p with etcd.
func (c *conn) checkPool(p *pool, node, dataDir string) ([]finding, []queuedRelease, error) {
	dir := filepath.Join(dataDir, p.Name)
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
		return nil, nil, nil // the node never used the pool
	}
	rec, err := openRecords(dataDir, p.Name)
	if err != nil {
		return nil, nil, err
	}
	defer rec.Close()
	a := c.alloc(p, node)
	done, err := drainQueue(c.ctx, rec, a, c.cfg)
	var out []finding
	if err != nil {
		out = append(out, finding{Pool: p.Name, Kind: "queued", Detail: err.Error()})
	}
	local, bad, err := rec.All()
	if err != nil {
		return out, done, err
	}
	for _, b := range bad {
		out = append(out, finding{Pool: p.Name, Kind: "unreadable", Detail: b.Error()})
	}
	held, badEtcd, err := a.Leases(c.ctx)
	if err != nil {
		return out, done, unreachable(c.cfg, err)
	}
	for _, b := range badEtcd {
		out = append(out, finding{Pool: p.Name, Kind: "unreadable", Detail: b.Error()})
	}
	return append(out, c.compare(a, p, node, local, held)...), done, nil
}

// compare matches the node's records with etcd's leases of the node.
func (c *conn) compare(a *allocator, p *pool, node string, local []*Lease, held []holding) []finding {
	var out []finding
	inEtcd := map[OwnerID]*Lease{}
	for _, h := range held {
		if h.Lease.Node == node {
			inEtcd[h.Lease.Owner()] = h.Lease
		}
	}
	for _, l := range local {
		e, ok := inEtcd[l.Owner()]
		delete(inEtcd, l.Owner())
		switch {
		case !ok:
			out = append(out, finding{Pool: p.Name, Owner: l.Owner().String(), Kind: "missing in etcd",
				Detail: fmt.Sprintf("the node records %s; etcd does not%s", ipList(l), c.takenBy(a, l))})
		case e.Claim != l.Claim || ipList(e) != ipList(l):
			out = append(out, finding{Pool: p.Name, Owner: l.Owner().String(), Kind: "differs",
				Detail: fmt.Sprintf("the node records %s (claim %s), etcd %s (claim %s)", ipList(l), l.Claim, ipList(e), e.Claim)})
		}
	}
	for id, e := range inEtcd {
		out = append(out, finding{Pool: p.Name, Owner: id.String(), Kind: "not recorded",
			Detail: fmt.Sprintf("etcd records %s for the node, claimed %s; the node has no record of it", ipList(e), e.Time.Format(time.RFC3339))})
	}
	return out
}

// takenBy names the owners that hold l's addresses now, if any.
func (c *conn) takenBy(a *allocator, l *Lease) string {
	var s []string
	for _, ad := range l.Addrs {
		got, err := c.store.Read(c.ctx, get(a.keys.lease(ad.Block, ad.IP)))
		if err != nil || len(got[0]) == 0 {
			continue
		}
		if h, err := decodeLease(got[0][0].Key, got[0][0].Value); err == nil {
			s = append(s, fmt.Sprintf("%s is now held by container %s (%s) on node %s", ad.IP, h.ContainerID, h.IfName, h.Node))
		}
	}
	if len(s) == 0 {
		return " (its addresses are free: the next claim may take them)"
	}
	return "; " + strings.Join(s, "; ")
}
