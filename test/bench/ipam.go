package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nicmux/nicmux/test/etcdtest"
)

// nicmux-ipam's figures (issue 19), against one etcd member on loopback:
// the seed job with eth1's address from nicmux-ipam (through its node
// daemon, and nicmux-ipamd run directly for each call) beside the same job
// with host-local; many nodes' ADDs at once; and an ADD with the pool
// nearly empty beside one with it nearly full. The last two run
// nicmux-ipamd directly: what they measure is etcd's side.

const (
	concNodes   = 8  // nodes of the concurrent ADDs
	concPerNode = 32 // ADDs of each node at once
	// fillPool is the /16 of the fill figures, in /26 blocks.
	fillPool = "10.30.0.0/16"
)

// fillLevels are how full the pool is, in percent.
var fillLevels = []int{10, 90}

// ipamBench is the phase: its etcd, the two variants of the seed job, and
// what every run measured.
type ipamBench struct {
	e    *env
	etcd *etcdtest.Cluster
	cli  *clientv3.Client
	ipam string // bin/nicmux-ipamd, run directly for each call
	thin string // bin/nicmux-ipam, which calls the daemon
	// socket is the daemon's (nicmux-ipamd serve, for the phase).
	socket string
	// hl, mine and served are the seed job through nicmux (parallel),
	// eth1's address from host-local, from nicmux-ipamd run directly, and
	// from nicmux-ipam through the daemon.
	hl, mine, served *variant
	runs             []ipamRun
	bare             []*bareBin
	// alone are the IPAM plugins of the plugin-alone probe; hello and
	// floor its floors (ipamalone.go).
	alone        []*aloneBin
	hello, floor string
}

// ipamRun is what one run measured beyond the variants' samples.
type ipamRun struct {
	alone aloneRun
	conc  concRun
	// fill[level][path] are ADD wall times: path 0 a node whose block has
	// room, path 1 a node's first ADD (it claims a block).
	fill map[int][2][]time.Duration
}

// concRun is the concurrent ADDs of one run.
type concRun struct {
	add, del  []time.Duration
	addWall   time.Duration
	leased    int
	duplicate int
}

func newIPAMBench(e *env, variants string) *ipamBench {
	ib := &ipamBench{e: e, ipam: filepath.Join(e.bin, "nicmux-ipamd"), thin: filepath.Join(e.bin, "nicmux-ipam")}
	for _, bin := range []string{ib.ipam, ib.thin} {
		if _, err := os.Stat(bin); err != nil {
			fatalf("missing %s: run `make build` first (or `make bench`)", bin)
		}
	}
	var err error
	ib.etcd, err = etcdtest.Launch(e.folder("etcd"), 1)
	if ib.etcd != nil {
		atCleanup(ib.etcd.Stop)
	}
	must(err, "starting etcd")
	ib.cli, err = clientv3.New(clientv3.Config{Endpoints: ib.etcd.Endpoints(), Logger: zap.NewNop(), DialTimeout: 5 * time.Second})
	must(err, "etcd client")
	atCleanup(func() { ib.cli.Close() })
	ib.serve()
	master := e.addMaster()
	ib.hl = newVariant(e, seedScenario(), nicmuxParallel, []string{master})
	ib.mine = newVariant(e, scenario{Name: "seed-nicmux-ipamd", N: 2, Masters: 1, Bridged: true, chains: ib.seedChains("nicmux-ipamd", "")}, nicmuxParallel, []string{master})
	ib.served = newVariant(e, scenario{Name: "seed-nicmux-ipam", N: 2, Masters: 1, Bridged: true, chains: ib.seedChains("nicmux-ipam", ib.socket)}, nicmuxParallel, []string{master})
	ib.hl.iterate(-1)
	ib.mine.iterate(-1)
	ib.served.iterate(-1)
	ib.aloneSetup(variants)
	return ib
}

// seedChains is the seed job with eth1's address from the IPAM plugin typ,
// which calls the daemon on socket when it is set.
func (ib *ipamBench) seedChains(typ, socket string) func(r resources) []chain {
	return func(r resources) []chain {
		cs := seedChains(r)
		o := map[string]any{
			"type": typ, "pool": "seed", "node": "bench", "dataDir": filepath.Join(r.ipamDir, "nicmux-ipam"),
			"ranges": [][]map[string]string{{{"subnet": r.env.subnet()}}},
			"etcd":   map[string]any{"endpoints": ib.etcd.Endpoints(), "prefix": "/bench/seed-" + r.env.name("")},
		}
		if socket != "" {
			o["socket"] = socket
		}
		cs[1].Plugins[0]["ipam"] = o
		return cs
	}
}

// serve starts nicmux-ipamd serve for the phase, on a socket of its own
// (a folder under /tmp: a socket's path is short), and waits until it
// answers.
func (ib *ipamBench) serve() {
	dir, err := os.MkdirTemp("", "nmb-ipamd")
	must(err, "the daemon's folder")
	ib.socket = filepath.Join(dir, "ipamd.sock")
	cmd := exec.Command(ib.ipam, "serve", "-socket", ib.socket)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	must(cmd.Start(), "starting nicmux-ipamd serve")
	atCleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		os.RemoveAll(dir)
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if c, err := net.Dial("unix", ib.socket); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			fatalf("nicmux-ipamd serve does not answer on %s: %s", ib.socket, out.String())
		}
	}
}

// measure runs the phase's figures once, as run run.
func (ib *ipamBench) measure(reps, run int) {
	rng := rand.New(rand.NewPCG(seed+uint64(run), seed))
	vs := []*variant{ib.hl, ib.mine, ib.served}
	for range reps {
		for _, i := range rng.Perm(len(vs)) {
			vs[i].samples = append(vs[i].samples, vs[i].iterate(run))
		}
	}
	for _, v := range vs {
		v.assertNoLeaks(nil)
		v.costs()
	}
	ib.assertNoLeases("/bench/seed-")
	progress("run %d: nicmux-ipam alone beside host-local and the floors", run+1)
	r := ipamRun{alone: ib.measureAlone(reps, run)}
	progress("run %d: nicmux-ipam, %d nodes x %d ADDs at once", run+1, concNodes, concPerNode)
	r.conc = ib.concurrent(run)
	progress("run %d: nicmux-ipam, ADD with the pool %v%% full", run+1, fillLevels)
	r.fill = ib.fill(reps, run)
	ib.runs = append(ib.runs, r)
}

// call runs nicmux-ipamd as a plugin runs its IPAM, for verb, owner id,
// with the ipam object conf, and returns how long it took.
func (ib *ipamBench) call(verb, id, conf string) (time.Duration, error) {
	return ib.callBin(ib.ipam, verb, id, conf)
}

// ipamConf is an ipam object of the phase.
func (ib *ipamBench) ipamConf(pool, subnet, prefix, node string) string {
	return ib.ipamConfOn(pool, subnet, prefix, node, "")
}

// ipamConfOn is an ipam object that names the daemon's socket.
func (ib *ipamBench) ipamConfOn(pool, subnet, prefix, node, socket string) string {
	o := map[string]any{
		"type": "nicmux-ipam", "pool": pool, "node": node, "dataDir": filepath.Join(ib.e.dir, "nicmux-ipam", prefix, node),
		"ranges": [][]map[string]string{{{"subnet": subnet}}},
		"etcd":   map[string]any{"endpoints": ib.etcd.Endpoints(), "prefix": prefix, "timeout": "30s"},
	}
	if socket != "" {
		o["socket"] = socket
	}
	b, _ := json.Marshal(o)
	return string(b)
}

// concurrent runs concPerNode ADDs on each of concNodes nodes, all at
// once, checks that no address went twice, then DELs them all at once.
func (ib *ipamBench) concurrent(run int) concRun {
	prefix := fmt.Sprintf("/bench/conc-%d-%s", run, ib.e.name(""))
	var r concRun
	type owner struct{ id, conf string }
	var owners []owner
	for n := range concNodes {
		conf := ib.ipamConf("conc", "10.40.0.0/16", prefix, fmt.Sprintf("node-%d", n))
		for i := range concPerNode {
			owners = append(owners, owner{id: fmt.Sprintf("c-%d-%d", n, i), conf: conf})
		}
	}
	at := func(verb string) ([]time.Duration, time.Duration) {
		ds := make([]time.Duration, len(owners))
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i, o := range owners {
			wg.Go(func() {
				<-gate
				var err error
				ds[i], err = ib.call(verb, o.id, o.conf)
				must(err, "%d x %d at once", concNodes, concPerNode)
			})
		}
		start := time.Now()
		close(gate)
		wg.Wait()
		return ds, time.Since(start)
	}
	r.add, r.addWall = at("ADD")
	r.leased, r.duplicate = ib.leaseCount(prefix + "/pools/conc/owners/")
	if r.leased != len(owners) || r.duplicate != 0 {
		fatalf("%d x %d ADDs at once: %d owners leased, %d addresses twice", concNodes, concPerNode, r.leased, r.duplicate)
	}
	r.del, _ = at("DEL")
	ib.assertNoLeases(prefix)
	return r
}

// leaseCount reads the owner keys under prefix: how many, and how many
// addresses two owners share.
func (ib *ipamBench) leaseCount(prefix string) (owners, dups int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := ib.cli.Get(ctx, prefix, clientv3.WithPrefix())
	must(err, "reading %s", prefix)
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		var l struct {
			Addresses []struct {
				IP string `json:"ip"`
			} `json:"addresses"`
		}
		must(json.Unmarshal(kv.Value, &l), "lease %s", kv.Key)
		for _, a := range l.Addresses {
			if seen[a.IP] {
				dups++
			}
			seen[a.IP] = true
		}
	}
	return len(resp.Kvs), dups
}

// assertNoLeases ends the run if an owner key is left under prefix.
func (ib *ipamBench) assertNoLeases(prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := ib.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	must(err, "reading %s", prefix)
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key), "/owners/") {
			fatalf("lease left after DEL: %s", kv.Key)
		}
	}
}

// fill measures ADDs in pools filled to each level, interleaved: a node
// with room in its block (ADD, then DEL untimed), and a new node's first
// ADD (it claims a block; then DEL and release-node, untimed).
func (ib *ipamBench) fill(reps, run int) map[int][2][]time.Duration {
	prefixes := map[int]string{}
	for _, lvl := range fillLevels {
		prefixes[lvl] = fmt.Sprintf("/bench/fill%d-%d-%s", lvl, run, ib.e.name(""))
		ib.fillTo(prefixes[lvl], lvl)
	}
	out := map[int][2][]time.Duration{}
	rng := rand.New(rand.NewPCG(seed+uint64(run), seed+1))
	type job struct{ lvl, path int }
	var jobs []job
	for _, lvl := range fillLevels {
		for path := range 2 {
			jobs = append(jobs, job{lvl, path})
		}
	}
	for rep := range reps {
		for _, i := range rng.Perm(len(jobs)) {
			j := jobs[i]
			node := "bench"
			if j.path == 1 {
				node = fmt.Sprintf("new-%d-%d", run, rep)
			}
			conf := ib.ipamConf("fill", fillPool, prefixes[j.lvl], node)
			id := fmt.Sprintf("m-%d-%d", rep, j.path)
			d, err := ib.call("ADD", id, conf)
			must(err, "ADD in a pool %d%% full", j.lvl)
			_, err = ib.call("DEL", id, conf)
			must(err, "DEL in a pool %d%% full", j.lvl)
			if j.path == 1 {
				ib.releaseNode(prefixes[j.lvl], node)
			}
			f := out[j.lvl]
			f[j.path] = append(f[j.path], d)
			out[j.lvl] = f
		}
	}
	for _, p := range prefixes {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := ib.cli.Delete(ctx, p+"/", clientv3.WithPrefix())
		cancel()
		must(err, "emptying %s", p)
	}
	return out
}

// releaseNode frees a node's block with nicmux-ipamd's own command.
func (ib *ipamBench) releaseNode(prefix, node string) {
	cmd := exec.Command(ib.ipam, "release-node", "-node", node, "-force", "-endpoints", strings.Join(ib.etcd.Endpoints(), ","), "-prefix", prefix)
	out, err := cmd.CombinedOutput()
	must(err, "release-node %s: %s", node, out)
}

// fillTo makes the node "bench" hold a block of the pool under prefix (its
// first ADD writes the pool's definition), then fills whole blocks of
// other nodes until lvl percent of the pool's addresses are leased,
// writing the keys nicmux-ipam writes (docs/ipam.md, "Keys").
func (ib *ipamBench) fillTo(prefix string, lvl int) {
	conf := ib.ipamConf("fill", fillPool, prefix, "bench")
	_, err := ib.call("ADD", "anchor", conf)
	must(err, "the first ADD of %s", prefix)
	_, err = ib.call("DEL", "anchor", conf)
	must(err, "DEL of the first ADD of %s", prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := ib.cli.Get(ctx, prefix+"/pools/fill/nodes/bench/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	must(err, "reading the bench node's blocks")
	own := map[string]bool{}
	for _, kv := range resp.Kvs {
		own[string(kv.Key)[strings.LastIndexByte(string(kv.Key), '/')+1:]] = true
	}
	pool := netip.MustParsePrefix(fillPool)
	size, leased := 1<<(32-pool.Bits())-2, 0
	var ops []clientv3.Op
	flush := func(keep int) { // writes all but keep ops, in transactions of 120
		for len(ops) > keep {
			n := min(len(ops), 120)
			_, err := ib.cli.Txn(ctx).Then(ops[:n]...).Commit()
			must(err, "filling %s", prefix)
			ops = ops[n:]
		}
	}
	for i, b := range rand.New(rand.NewPCG(uint64(lvl), 7)).Perm(1 << (26 - pool.Bits())) {
		if leased*100 >= size*lvl {
			break
		}
		a := pool.Addr().As4()
		a[2], a[3] = byte(b>>2), byte(b&3)<<6
		if first := netip.AddrFrom4(a); !own[first.String()+"-26"] {
			more := fillBlock(prefix+"/pools/fill", first, fmt.Sprintf("filler-%d", i%64), pool)
			leased += (len(more) - 2) / 2
			ops = append(ops, more...)
		}
		flush(119)
	}
	flush(0)
	if got, dups := ib.leaseCount(prefix + "/pools/fill/owners/"); got != leased || dups != 0 {
		fatalf("filling %s: %d leases read back, %d written, %d twice", prefix, got, leased, dups)
	}
}

// fillBlock is the writes of the /26 block at first claimed by node, each
// of its addresses leased (but the pool's network and broadcast
// addresses): the block's key, the node's, and each lease's two keys.
func fillBlock(base string, first netip.Addr, node string, pool netip.Prefix) []clientv3.Op {
	id := first.String() + "-26"
	now := time.Now().UTC().Format(time.RFC3339Nano)
	ops := []clientv3.Op{clientv3.OpPut(base+"/blocks/"+id, fmt.Sprintf(`{"version":1,"node":%q,"time":%q}`, node, now)),
		clientv3.OpPut(base+"/nodes/"+node+"/"+id, "")}
	for a, k := first, 0; k < 64; a, k = a.Next(), k+1 {
		if a == pool.Addr() || a == lastOf(pool) {
			continue
		}
		owner := "fill-" + a.String()
		val := fmt.Sprintf(`{"version":1,"containerID":%q,"ifname":"eth1","network":"bench","node":%q,"addresses":[{"ip":%q,"block":%q}],"claim":"fill","time":%q}`,
			owner, node, a, id, now)
		ops = append(ops, clientv3.OpPut(base+"/leases/"+id+"/"+a.String(), val), clientv3.OpPut(base+"/owners/"+owner+"/eth1", val))
	}
	return ops
}

// lastOf is the last address of p.
func lastOf(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// --- the report -----------------------------------------------------------

func (ib *ipamBench) over(f func(run int) float64) figure { return overRuns(len(ib.runs), f) }

// overheadFig is v's median minus host-local's, run by run.
func (ib *ipamBench) overheadFig(v *variant, verb int) figure {
	return ib.over(func(run int) float64 {
		return toMS(median(durations(v.inRun(run), verb))) - toMS(median(durations(ib.hl.inRun(run), verb)))
	})
}

func (ib *ipamBench) verbFig(v *variant, verb int) figure {
	return ib.over(func(run int) float64 { return toMS(median(durations(v.inRun(run), verb))) })
}

func (ib *ipamBench) concFig(f func(c concRun) float64) figure {
	return ib.over(func(run int) float64 { return f(ib.runs[run].conc) })
}

func (ib *ipamBench) fillFig(lvl, path int) figure {
	return ib.over(func(run int) float64 { return toMS(median(ib.runs[run].fill[lvl][path])) })
}

func (ib *ipamBench) fillRatio(path int) figure {
	return ib.over(func(run int) float64 {
		f := ib.runs[run].fill
		return float64(median(f[90][path])) / float64(median(f[10][path]))
	})
}

// met words a target's verdict over a figure's runs.
func met(f figure, limit float64) string {
	switch {
	case f.hi <= limit:
		return "yes"
	case f.mid <= limit:
		return "yes, not in every run"
	}
	return "no"
}

// markdown is the phase's section of RESULTS.md.
func (ib *ipamBench) markdown(reps int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## nicmux-ipam (issue 19)\n\n")
	fmt.Fprintf(&b, "One etcd member on loopback (bin/tools/etcd, etcd's own main at the version test/etcdtest pins), in the "+
		"benchmark's private network namespace. %d run(s); a figure is the median of the runs' figures (their range). "+
		"The ADD and DEL times are the go-cni call's (seed job) or the plugin's process, from its start to its exit (the rest).\n\n", len(ib.runs))
	ib.writeTargets(&b)
	ib.writeSeed(&b, reps)
	ib.writeAlone(&b, reps)
	ib.writeConcurrent(&b)
	ib.writeFill(&b, reps)
	ib.writeBare(&b)
	b.WriteString("\n")
	return b.String()
}

func (ib *ipamBench) writeTargets(b *strings.Builder) {
	fmt.Fprintf(b, "| target | figure | met |\n|---|---:|---|\n")
	for _, v := range []struct {
		what string
		v    *variant
		bin  string
	}{{"nicmux-ipam through its daemon", ib.served, aloneServed}, {"nicmux-ipamd run directly", ib.mine, aloneDirect}} {
		add, del := ib.overheadFig(v.v, vADD), ib.overheadFig(v.v, vDEL)
		fmt.Fprintf(b, "| seed job, eth1's IPAM %s − host-local, ADD, ms ≤ 2 | %s | %s |\n", v.what, add.ms(), met(add, 2))
		fmt.Fprintf(b, "| seed job, eth1's IPAM %s − host-local, DEL, ms ≤ 2 | %s | %s |\n", v.what, del.ms(), met(del, 2))
		for _, verb := range []string{"ADD", "DEL"} {
			f := ib.aloneDiff(v.bin, "host-local", verb == "ADD")
			fmt.Fprintf(b, "| the plugin alone, %s − host-local, %s, ms ≤ 2 | %s | %s |\n", v.what, verb, f.ms(), met(f, 2))
		}
	}
	dups := ib.concFig(func(c concRun) float64 { return float64(c.duplicate) })
	fmt.Fprintf(b, "| %d nodes × %d ADDs at once: addresses leased twice = 0 | %s | %s |\n", concNodes, concPerNode, msf(dups.hi), met(dups, 0))
	for path, what := range fillPaths {
		r := ib.fillRatio(path)
		fmt.Fprintf(b, "| ADD, pool 90%% / 10%% full, %s ≤ 1.2 | %s | %s |\n", what, r.ratio(), met(r, 1.2))
	}
}

// fillPaths name the fill figures' two ADDs.
var fillPaths = [2]string{"by a node with room in its block (1 round trip)", "by a node's first ADD (claims a block: 4 round trips)"}

func (ib *ipamBench) writeSeed(b *strings.Builder, reps int) {
	fmt.Fprintf(b, "\nThe seed job (eth0 bridge + host-local, eth1 macvlan + tuning) through nicmux (parallel), eth1's address from "+
		"host-local, from nicmux-ipam through its node daemon (nicmux-ipamd serve), or from nicmux-ipamd run directly for each call "+
		"(pool of one /24, a node holding its block), %d interleaved repetitions per run, "+
		"each a fresh container in a fresh netns; ms, the median per run:\n\n", reps)
	fmt.Fprintf(b, "| verb | eth1 on host-local | nicmux-ipam, daemon | difference | nicmux-ipamd, direct | difference |\n|---|---:|---:|---:|---:|---:|\n")
	for verb := range nVerbs {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", verbNames[verb], ib.verbFig(ib.hl, verb).ms(),
			ib.verbFig(ib.served, verb).ms(), ib.overheadFig(ib.served, verb).ms(), ib.verbFig(ib.mine, verb).ms(), ib.overheadFig(ib.mine, verb).ms())
	}
}

func (ib *ipamBench) writeConcurrent(b *strings.Builder) {
	fmt.Fprintf(b, "\n%d nodes × %d ADDs of nicmux-ipamd at once (the plugin alone, as macvlan runs it, directly; %d processes started together "+
		"on %d cores), then as many DELs; one pool of a /16 in /26 blocks; ms:\n\n", concNodes, concPerNode, concNodes*concPerNode, runtime.NumCPU())
	fmt.Fprintf(b, "| | p50 | p99 | max | wall until the last |\n|---|---:|---:|---:|---:|\n")
	q := func(ds func(c concRun) []time.Duration, p float64) string {
		return ib.concFig(func(c concRun) float64 { return toMS(quantile(ds(c), p)) }).ms()
	}
	add := func(c concRun) []time.Duration { return c.add }
	del := func(c concRun) []time.Duration { return c.del }
	fmt.Fprintf(b, "| ADD | %s | %s | %s | %s |\n", q(add, 0.5), q(add, 0.99), q(add, 1),
		ib.concFig(func(c concRun) float64 { return toMS(c.addWall) }).ms())
	fmt.Fprintf(b, "| DEL | %s | %s | %s | |\n", q(del, 0.5), q(del, 0.99), q(del, 1))
}

func (ib *ipamBench) writeFill(b *strings.Builder, reps int) {
	fmt.Fprintf(b, "\nADD in a pool of a /16 (/26 blocks) with 10%% or 90%% of its addresses leased (whole blocks of 64 other nodes, "+
		"written as nicmux-ipam writes them), %d interleaved repetitions per run; nicmux-ipamd alone, directly, ms, the median per run:\n\n", reps)
	fmt.Fprintf(b, "| ADD | 10%% full | 90%% full | ratio |\n|---|---:|---:|---:|\n")
	for path, what := range fillPaths {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", what, ib.fillFig(10, path).ms(), ib.fillFig(90, path).ms(), ib.fillRatio(path).ratio())
	}
}

// writeBare is the bare starts of -only ipam (the full run has them in
// its own table).
func (ib *ipamBench) writeBare(b *strings.Builder) {
	if len(ib.bare) == 0 {
		return
	}
	fmt.Fprintf(b, "\nBare start (Nomad's fingerprint runs every binary of cni_path so, 3 s timeout), %d runs each, interleaved; ms:\n\n", bareRuns)
	fmt.Fprintf(b, "| binary | size MB | median | p90 |\n|---|---:|---:|---:|\n")
	for i, bin := range ib.bare {
		med := ib.over(func(run int) float64 { return toMS(median(ib.bare[i].runs[run])) })
		p := ib.over(func(run int) float64 { return toMS(p90(ib.bare[i].runs[run])) })
		fmt.Fprintf(b, "| %s | %.1f | %s | %s |\n", bin.label, sizeMB(bin.path), med.ms(), p.ms())
	}
}

func sizeMB(path string) float64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(st.Size()) / (1 << 20)
}

// runIPAMOnly runs the phase alone (-only ipam): it prints its section and
// puts it in place of the one in -out.
func runIPAMOnly(o options) {
	e := newEnv(o.bin, "")
	ib := newIPAMBench(e, o.ipamVariants)
	ib.bare = bareBins(e)
	for run := range o.runs {
		ib.measure(o.reps, run)
		progress("run %d: bare starts", run+1)
		bareStarts(ib.bare, run)
	}
	md := ib.markdown(o.reps)
	fmt.Print(md)
	if o.out != "" {
		old, _ := os.ReadFile(o.out)
		must(os.WriteFile(o.out, []byte(spliceSection(string(old), md)), 0o644), "writing %s", o.out)
		progress("wrote the nicmux-ipam section of %s", o.out)
	}
}

// spliceSection puts section (a "## " heading and its text) in place of
// the section with the same heading in doc, or at its end.
func spliceSection(doc, section string) string {
	heading, _, _ := strings.Cut(section, "\n")
	i := strings.Index(doc, heading+"\n")
	if i < 0 {
		return strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	end := len(doc)
	if j := strings.Index(doc[i+len(heading):], "\n## "); j >= 0 {
		end = i + len(heading) + j + 1
	}
	return doc[:i] + section + doc[end:]
}
