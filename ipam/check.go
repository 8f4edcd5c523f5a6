package ipam

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const checkHelp = `Compares a node's own records (its data folder) with etcd, pool by pool,
after completing the releases queued there while etcd was away. It reports:

  missing in etcd   the node records a lease etcd does not: etcd lost it (a
                    restore from an older snapshot); its address may be handed
                    out again, and is named if it already was
  differs           etcd records another claim or other addresses for the owner
  not recorded      etcd records a lease of the node that the node does not
                    (a crash between the claim and the record, or lost records)
  unreadable        a record that cannot be read (a crash cut a lease record:
                    etcd's lease stands)
  queued            a release that etcd did not answer yet

Under each disagreement it prints the commands that recover from it: this
nicmux-ipam run as the plugin, with the pool's ranges as etcd defines them,
the node's name and data folder, and the etcd settings check was given.

Run it on the node, with the dataDir and node name of its configuration.

Exit status: 0 the records agree, 1 they disagree, a release stays queued,
or etcd or the records cannot be read, 2 usage error.`

// finding is one disagreement check reports, and the commands that
// recover from it.
type finding struct {
	Pool     string   `json:"pool"`
	Owner    string   `json:"owner"`
	Kind     string   `json:"kind"`
	Detail   string   `json:"detail"`
	Recovery []string `json:"recovery,omitempty"`
}

func runCheck(e *env, args []string) int {
	f := newPoolFlags("check", checkHelp, "check `POOL` only")
	host, _ := os.Hostname()
	node := f.String("node", host, "the node's `NAME` (its configuration's node)")
	dataDir := f.String("data-dir", DefaultDataDir, "the node's data folder `DIR`")
	c, code, ok := f.open(e, args, nil)
	if !ok {
		return code
	}
	defer c.close()
	r := newRecovery(c.cfg, f.etcd.file, *node, *dataDir)
	var findings []finding
	var completed []queuedRelease
	for _, p := range c.pools {
		fs, done, err := c.checkPool(p, r)
		if err != nil {
			findings = append(findings, finding{Pool: p.Name, Kind: "error", Detail: err.Error()})
		}
		findings, completed = append(findings, fs...), append(completed, done...)
	}
	if *f.asJSON {
		printJSON(e.stdout, map[string]any{"node": *node, "completed": completed, "findings": findings})
	} else {
		printFindings(e, completed, findings)
		if len(findings) == 0 {
			fmt.Fprintf(e.stdout, "node %s: its records agree with %s\n", *node, c.cfg)
		}
	}
	if len(findings) > 0 {
		return exitFail
	}
	return exitOK
}

func printFindings(e *env, completed []queuedRelease, findings []finding) {
	for _, q := range completed {
		fmt.Fprintf(e.stdout, "completed the release of %s queued %s (%s)\n", q.Owner(), q.Queued.Format(time.RFC3339), q.Why)
	}
	for _, fd := range findings {
		fmt.Fprintf(e.stdout, "pool %s: %s %s: %s\n", fd.Pool, fd.Kind, fd.Owner, fd.Detail)
		for _, cmd := range fd.Recovery {
			fmt.Fprintf(e.stdout, "  %s\n", cmd)
		}
	}
}

// checkPool compares the node's records of p with etcd.
func (c *conn) checkPool(p *pool, r *recovery) ([]finding, []queuedRelease, error) {
	if st, err := os.Lstat(filepath.Join(r.dataDir, p.Name)); err != nil || !st.IsDir() {
		return nil, nil, nil // the node never used the pool
	}
	rec, err := openRecords(r.dataDir, p.Name)
	if err != nil {
		return nil, nil, err
	}
	defer rec.Close()
	a := c.alloc(p, r.node)
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
	return append(out, c.compare(a, r, local, held)...), done, nil
}

// compare matches the node's records with etcd's leases of the node.
func (c *conn) compare(a *allocator, r *recovery, local []*Lease, held []holding) []finding {
	var out []finding
	inEtcd := map[OwnerID]*Lease{}
	for _, h := range held {
		if h.Lease.Node == r.node {
			inEtcd[h.Lease.Owner()] = h.Lease
		}
	}
	p := a.pool
	for _, l := range local {
		e, ok := inEtcd[l.Owner()]
		delete(inEtcd, l.Owner())
		switch {
		case !ok:
			holders := c.holders(a, l)
			out = append(out, finding{Pool: p.Name, Owner: l.Owner().String(), Kind: "missing in etcd",
				Detail: fmt.Sprintf("the node records %s; etcd does not%s", ipList(l), takenBy(holders)), Recovery: r.missing(p, l, holders)})
		case e.Claim != l.Claim || ipList(e) != ipList(l):
			out = append(out, finding{Pool: p.Name, Owner: l.Owner().String(), Kind: "differs",
				Detail:   fmt.Sprintf("the node records %s (claim %s), etcd %s (claim %s)", ipList(l), l.Claim, ipList(e), e.Claim),
				Recovery: r.differs(p, l)})
		}
	}
	for id, e := range inEtcd {
		out = append(out, finding{Pool: p.Name, Owner: id.String(), Kind: "not recorded",
			Detail:   fmt.Sprintf("etcd records %s for the node, claimed %s; the node has no record of it", ipList(e), e.Time.Format(time.RFC3339)),
			Recovery: r.notRecorded(p, e)})
	}
	return out
}

// holders are the leases that hold l's addresses now.
func (c *conn) holders(a *allocator, l *Lease) []*Lease {
	var out []*Lease
	for _, ad := range l.Addrs {
		got, err := c.store.Read(c.ctx, get(a.keys.lease(ad.Block, ad.IP)))
		if err != nil || len(got[0]) == 0 {
			continue
		}
		if h, err := decodeLease(got[0][0].Key, got[0][0].Value); err == nil {
			out = append(out, h)
		}
	}
	return out
}

// takenBy words who holds a lost lease's addresses now.
func takenBy(holders []*Lease) string {
	if len(holders) == 0 {
		return " (its addresses are free: the next claim may take them)"
	}
	var s []string
	for _, h := range holders {
		s = append(s, fmt.Sprintf("%s is now held by container %s (%s) on node %s", ipList(h), h.ContainerID, h.IfName, h.Node))
	}
	return "; " + strings.Join(s, "; ")
}

// recovery writes the commands that bring a node's records and etcd back
// into agreement: this nicmux-ipam run as the plugin, as a runtime runs
// it, with an ipam configuration made of the pool's definition in etcd,
// the node's name and data folder, and the etcd settings check was given.
type recovery struct {
	bin, node, dataDir string
	etcd               *etcdConf
	etcdFile           string
}

func newRecovery(cfg EtcdConfig, file, node, dataDir string) *recovery {
	r := &recovery{bin: "nicmux-ipam", node: node, dataDir: dataDir}
	if exe, err := os.Executable(); err == nil {
		r.bin = exe
	}
	if file != "" {
		if abs, err := filepath.Abs(file); err == nil {
			file = abs
		}
		r.etcdFile = file
		return r
	}
	r.etcd = &etcdConf{Endpoints: cfg.Endpoints, CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile,
		Prefix: cfg.Prefix, Timeout: cfg.Timeout.String()}
	return r
}

// missing recovers a lease etcd lost: the plugin's ADD asking for its
// addresses, when they are free; when another owner holds one, the
// allocation stops, and its scheduler places it again with a fresh
// address.
func (r *recovery) missing(p *pool, l *Lease, holders []*Lease) []string {
	if len(holders) > 0 {
		return []string{fmt.Sprintf("# two allocations share an address: stop this one (its teardown drops the node's record), and Nomad places it again: nomad alloc stop %s", l.ContainerID)}
	}
	return []string{"# claim it back for its owner:", r.command("ADD", p, l, true)}
}

// notRecorded recovers a lease etcd holds for the node that the node does
// not record: a release the restore undid, or a record the node lost.
func (r *recovery) notRecorded(p *pool, l *Lease) []string {
	return []string{fmt.Sprintf("# if allocation %s no longer runs on node %s, release its lease:", l.ContainerID, r.node), r.command("DEL", p, l, false)}
}

// differs recovers an owner claimed again since the snapshot: its
// container uses what the node records.
func (r *recovery) differs(p *pool, l *Lease) []string {
	return []string{"# release what etcd records, then claim what the node records (the container uses it):",
		r.command("DEL", p, l, false), r.command("ADD", p, l, true)}
}

// command is the plugin's run for verb on l's owner; withIPs asks for l's
// addresses.
func (r *recovery) command(verb string, p *pool, l *Lease, withIPs bool) string {
	network := l.Network
	if network == "" {
		network = p.Name
	}
	d := p.def()
	ipam := struct {
		Type              string        `json:"type"`
		Pool              string        `json:"pool"`
		Ranges            [][]rangeConf `json:"ranges"`
		BlockPrefixLength blockLengths  `json:"blockPrefixLength"`
		Etcd              *etcdConf     `json:"etcd,omitempty"`
		EtcdConfig        string        `json:"etcdConfig,omitempty"`
		Node              string        `json:"node"`
		DataDir           string        `json:"dataDir"`
	}{"nicmux-ipam", p.Name, d.Ranges, d.BlockPrefixLength, r.etcd, r.etcdFile, r.node, r.dataDir}
	conf, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": network, "ipam": ipam})
	env := []string{"CNI_COMMAND=" + verb, "CNI_CONTAINERID=" + shellWord(l.ContainerID), "CNI_IFNAME=" + shellWord(l.IfName),
		"CNI_NETNS=" + shellWord("/var/run/netns/"+l.ContainerID), "CNI_PATH=" + shellWord(filepath.Dir(r.bin))}
	if withIPs {
		env = append(env, "CNI_ARGS="+shellWord("IgnoreUnknown=true;IP="+ipList(l)))
	}
	return "echo " + shellWord(string(conf)) + " | " + strings.Join(env, " ") + " " + shellWord(r.bin)
}

// shellWord is s as one word of a POSIX shell: quoted unless every
// character of it is plain.
func shellWord(s string) string {
	plain := s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.,:/=@%+-") == ""
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
