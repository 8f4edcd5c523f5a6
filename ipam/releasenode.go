package ipam

import (
	"fmt"
	"time"
)

// DefaultGrace is how recently a node may have written for release-node to
// refuse it.
const defaultGrace = 10 * time.Minute

const releaseNodeHelp = `Frees what a node that is gone for good holds, in every pool (or -pool):
its leases and its claims of blocks, so that other nodes hand the addresses
out again. The node's containers must be gone: their addresses are reused.

A node writes etcd on every ADD, DEL, GC and STATUS. release-node refuses a
node that wrote within the grace period (-grace, default 10m), so that it
cannot race a node coming back; -force overrides. -dry-run lists what would
be freed.

Exit status: 0 done (or nothing to free), 1 refused or failed, 2 usage error.`

// nodeRelease is what release-node frees, or would, in one pool.
type nodeRelease struct {
	Pool   string      `json:"pool"`
	Leases []*Lease    `json:"leases"`
	Blocks []blockInfo `json:"blocks"`
	Errors []string    `json:"errors,omitempty"`
}

func runReleaseNode(e *env, args []string) int {
	f := newPoolFlags("release-node", releaseNodeHelp, "release the node in `POOL` only")
	node := f.String("node", "", "the `NAME` of the node to release (required)")
	dryRun := f.Bool("dry-run", false, "list what would be freed, free nothing")
	force := f.Bool("force", false, "release even a node that wrote within the grace period")
	grace := f.Duration("grace", defaultGrace, "refuse a node that wrote within this `DURATION`")
	c, code, ok := f.open(e, args, func() string {
		if *node == "" {
			return "give -node NAME"
		}
		return ""
	})
	if !ok {
		return code
	}
	defer c.close()
	if msg := c.refuse(*node, *grace, *force, e.now()); msg != "" {
		fmt.Fprintf(e.stderr, "nicmux-ipam release-node: %s\n", msg)
		return exitFail
	}
	out, failed := []nodeRelease{}, false
	for _, p := range c.pools {
		r := c.releaseNode(p, *node, *dryRun)
		failed = failed || len(r.Errors) > 0
		out = append(out, r)
	}
	if !*dryRun && !failed && *f.pool == "" {
		if _, _, err := c.store.Txn(c.ctx, Txn{Then: []Op{del(keys{prefix: c.cfg.Prefix}.alive(*node))}}); err != nil {
			fmt.Fprintf(e.stderr, "nicmux-ipam release-node: forgetting node %s's last write: %v\n", *node, unreachable(c.cfg, err))
			failed = true
		}
	}
	if *f.asJSON {
		printJSON(e.stdout, map[string]any{"node": *node, "dryRun": *dryRun, "pools": out})
	} else {
		printNodeRelease(e, *node, *dryRun, out)
	}
	if failed {
		return exitFail
	}
	return exitOK
}

// refuse says why node may not be released, or "".
func (c *conn) refuse(node string, grace time.Duration, force bool, now time.Time) string {
	a := newAllocator(c.store, &pool{}, c.cfg.Prefix, "", nil)
	t, err := a.nodeTime(c.ctx, node)
	switch {
	case err != nil:
		return fmt.Sprintf("reading node %s's last write: %v", node, unreachable(c.cfg, err))
	case force || t.IsZero() || now.Sub(t) >= grace:
		return ""
	}
	return fmt.Sprintf("node %s wrote to etcd at %s, %s ago, within the grace period (%s): it may be alive; wait, or give -force if it is gone for good",
		node, t.Format(time.RFC3339), now.Sub(t).Truncate(time.Second), grace)
}

// releaseNode frees node's leases, then its blocks, in p.
func (c *conn) releaseNode(p *pool, node string, dryRun bool) nodeRelease {
	a := c.alloc(p, "")
	r := nodeRelease{Pool: p.Name, Leases: []*Lease{}, Blocks: []blockInfo{}}
	fail := func(err error) { r.Errors = append(r.Errors, unreachable(c.cfg, err).Error()) }
	held, _, err := a.Leases(c.ctx)
	if err != nil {
		fail(err)
		return r
	}
	for _, h := range held {
		if h.Lease.Node != node {
			continue
		}
		if !dryRun {
			if ok, err := a.Free(c.ctx, h); err != nil || !ok {
				fail(fmt.Errorf("%s: changed or not freed: %v", h.Lease, err))
				continue
			}
		}
		r.Leases = append(r.Leases, h.Lease)
	}
	blocks, _, err := a.Blocks(c.ctx)
	if err != nil {
		fail(err)
		return r
	}
	for _, b := range blocks {
		if b.Node != node {
			continue
		}
		if !dryRun {
			if ok, err := a.FreeBlock(c.ctx, b); err != nil || !ok {
				fail(fmt.Errorf("block %s: changed or not freed: %v", b.ID, err))
				continue
			}
		}
		r.Blocks = append(r.Blocks, b)
	}
	return r
}

func printNodeRelease(e *env, node string, dryRun bool, out []nodeRelease) {
	verb := "freed"
	if dryRun {
		verb = "would free"
	}
	for _, r := range out {
		for _, l := range r.Leases {
			fmt.Fprintf(e.stdout, "pool %s: %s lease %s\n", r.Pool, verb, l)
		}
		for _, b := range r.Blocks {
			fmt.Fprintf(e.stdout, "pool %s: %s block %s (claimed %s)\n", r.Pool, verb, b.ID, b.Time.Format(time.RFC3339))
		}
		for _, s := range r.Errors {
			fmt.Fprintf(e.stdout, "pool %s: error: %s\n", r.Pool, s)
		}
		fmt.Fprintf(e.stdout, "pool %s: node %s: %s %d leases, %d blocks\n", r.Pool, node, verb, len(r.Leases), len(r.Blocks))
	}
}
