package ipam

import (
	"context"
	"fmt"
	"io"
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

// poolFlags are the flags of a command that works on etcd's pools: the
// etcd settings, -pool and -json, beside the command's own.
type poolFlags struct {
	*flags
	etcd   etcdFlags
	pool   *string
	asJSON *bool
}

func newPoolFlags(name, help, poolUsage string) *poolFlags {
	f := &poolFlags{flags: newFlags(name, help)}
	f.etcd.register(f.flags)
	f.pool = f.String("pool", "", poolUsage)
	f.asJSON = f.Bool("json", false, "print one JSON object")
	return f
}

// open parses a command's flags, checks them with need (a usage error
// when it says one), then connects as they say; ok false means stop with
// code.
func (f *poolFlags) open(e *env, args []string, need func() string) (*conn, int, bool) {
	if code, ok := f.parse(e, args); !ok {
		return nil, code, false
	}
	if need != nil {
		if msg := need(); msg != "" {
			return nil, f.fail(e, "%s", msg), false
		}
	}
	cfg, err := f.etcd.config(e)
	if err != nil {
		return nil, f.fail(e, "%v", err), false
	}
	c, err := e.connect(cfg, *f.pool)
	if err != nil {
		fmt.Fprintf(e.stderr, "nicmux-ipam %s: %v\n", f.Name(), err)
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
	f := newPoolFlags("show", showHelp, "show `POOL` only")
	node := f.String("node", "", "show the blocks and leases of `NODE` only")
	c, code, ok := f.open(e, args, nil)
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
	if *f.asJSON {
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
			fmt.Fprintf(w, "  range set %s: %s addresses, %d used, %d kept for released owners, %s free\n", s.Ranges, s.Size, s.Used, s.Kept, s.Free)
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
