package torture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// verbDeadline bounds every verb the suite's runtime issues unless a
// trial says otherwise: a verb still running then is SIGKILLed (as libcni
// does when the runtime's context ends) and counts as hung.
const verbDeadline = 15 * time.Second

var worldCount atomic.Int32

// world is one trial's CNI world: its folders, its bridge and macvlan
// master, its network namespaces, its runtime (libcni with an Exec that
// records every nicmux run) and the containers it made.
type world struct {
	tr *trial
	id string // the trial marker (see trialEnv)
	testworld.Files
	Marker      string // the torture plugins' marker file
	ArmFile     string // the torture plugins' arm file
	Attachments string
	Bridge      string
	Master      string
	Name        string
	CNIVersion  string
	svcNet      string // eth0's subnet
	stoNet      string // eth1's subnet
	// extra are keys added to nicmux's own conflist entry.
	extra map[string]any
	opts  chainOpts

	cni      *libcni.CNIConfig
	ex       *tExec
	baseLink map[string]bool
	mu       sync.Mutex
	nets     map[string]bool // netns paths made (and maybe destroyed)
	ctrs     []*ctr
	mounts   []string
	ports    int
	// deadline, when set, replaces verbDeadline.
	deadline time.Duration
	// quiet leaves the verbs out of the trial's log: a class that runs
	// thousands logs what it counts.
	quiet bool
}

// ctr is one container of the world.
type ctr struct {
	id    string
	netns string
	port  int
	args  [][2]string // CNI_ARGS
}

func newWorld(tr *trial) *world {
	k := int(worldCount.Add(1)) % 200
	dir, err := os.MkdirTemp("", "nicmux-torture-")
	if err != nil {
		tr.fatalf("temp dir: %v", err)
	}
	w := &world{
		tr:         tr,
		id:         "t" + testworld.RandHex(6),
		Files:      testworld.FilesIn(dir),
		Marker:     filepath.Join(dir, "marker"),
		ArmFile:    filepath.Join(dir, "armed"),
		Bridge:     "tb" + testworld.RandHex(4),
		Master:     "tm" + testworld.RandHex(4),
		Name:       "torture",
		CNIVersion: "1.1.0",
		svcNet:     fmt.Sprintf("10.77.%d.0/24", k),
		stoNet:     fmt.Sprintf("10.88.%d.0/24", k),
		extra:      map[string]any{},
		nets:       map[string]bool{},
		ports:      20000 + k*100,
		opts:       defaultChains(),
	}
	w.ex = &tExec{w: w}
	w.cni = libcni.NewCNIConfigWithCacheDir(testworld.CNIPath(), filepath.Join(dir, "cache"), w.ex)
	w.baseLink = map[string]bool{}
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			w.baseLink[l.Attrs().Name] = true
		}
	}
	if _, err := netnsutil.AddVethMaster(w.Master); err != nil {
		tr.fatalf("macvlan master: %v", err)
	}
	w.Attachments = filepath.Join(dir, "att", "multi.yaml")
	if err := os.MkdirAll(filepath.Dir(w.Attachments), 0o755); err != nil {
		tr.fatalf("%v", err)
	}
	w.writeAttachments()
	return w
}

// --- chains ------------------------------------------------------------------

type plugin = map[string]any

// chainOpts shapes the seed job: eth0 = bridge (host-local) + portmap,
// eth1 = macvlan (host-local) + tuning, and the faults planted in it.
type chainOpts struct {
	ipMasq bool
	faults []fault
	// only, when set, replaces the seed job by these chains.
	only map[string][]plugin
}

func defaultChains() chainOpts { return chainOpts{} }

// fault plants the torture plugin in a chain: wrapping the plugin at pos
// (which it then execs after its fault), or, with insert, as a pass-through
// plugin before pos (pos = len(chain) appends it).
type fault struct {
	ifname string
	pos    int
	insert bool
	s      map[string]any // the torture settings
}

func (f fault) String() string {
	how := "wrapping plugin"
	if f.insert {
		how = "inserted before plugin"
	}
	b, _ := json.Marshal(f.s)
	return fmt.Sprintf("%s %s %d: %s", f.ifname, how, f.pos, b)
}

// chainLen is the length of the seed chains.
const chainLen = 2

func (w *world) seedChains() map[string][]plugin {
	if w.opts.only != nil {
		return w.opts.only
	}
	bridge := plugin{"type": "bridge", "bridge": w.Bridge, "isGateway": true,
		"ipam": plugin{"type": "host-local", "dataDir": w.IPAMDir,
			"ranges": []any{[]any{plugin{"subnet": w.svcNet}}}, "routes": []any{plugin{"dst": "0.0.0.0/0"}}}}
	if w.opts.ipMasq {
		bridge["ipMasq"] = true
	}
	return map[string][]plugin{
		"eth0": {bridge, {"type": "portmap", "capabilities": plugin{"portMappings": true}, "snat": true}},
		"eth1": {
			{"type": "macvlan", "master": w.Master, "mode": "bridge",
				"ipam": plugin{"type": "host-local", "dataDir": w.IPAMDir, "ranges": []any{[]any{plugin{"subnet": w.stoNet}}}}},
			// An MTU makes tuning keep a backup file (a sysctl alone does not).
			{"type": "tuning", "dataDir": w.TuningDir, "mtu": 1400, "sysctl": plugin{"net.ipv4.conf.IFNAME.arp_ignore": "1"}},
		},
	}
}

// networkOf names each interface's delegate network (host-local's folder).
var networkOf = map[string]string{"eth0": "svc", "eth1": "storage"}

// writeAttachments writes the attachment file (JSON, which is YAML) for
// the world's chains and faults.
func (w *world) writeAttachments() {
	chains := w.seedChains()
	for _, f := range w.opts.faults {
		c := chains[f.ifname]
		s := map[string]any{"marker": w.Marker}
		for k, v := range f.s {
			s[k] = v
		}
		if f.insert {
			p := plugin{"type": "torture", "torture": s}
			c = append(c[:f.pos:f.pos], append([]plugin{p}, c[f.pos:]...)...)
		} else {
			orig := c[f.pos]
			p := plugin{}
			for k, v := range orig {
				p[k] = v
			}
			p["type"], p["exec"], p["torture"] = "torture", orig["type"], s
			c = append(append(c[:f.pos:f.pos], p), c[f.pos+1:]...)
		}
		chains[f.ifname] = c
	}
	var ifs []any
	for _, ifname := range []string{"eth0", "eth1"} {
		if c, ok := chains[ifname]; ok {
			net := networkOf[ifname]
			ifs = append(ifs, map[string]any{"ifname": ifname, "network": net, "plugins": c})
		}
	}
	b, err := json.MarshalIndent(map[string]any{"interfaces": ifs}, "", "  ")
	if err != nil {
		w.tr.fatalf("%v", err)
	}
	if err := os.WriteFile(w.Attachments, b, 0o644); err != nil {
		w.tr.fatalf("%v", err)
	}
	// Dated back, as a file deployed before the allocation lands: nicmux
	// reads one changed less than 100 ms ago again once it is older.
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(w.Attachments, past, past); err != nil {
		w.tr.fatalf("%v", err)
	}
}

// setFaults replaces the planted faults and rewrites the attachment file.
func (w *world) setFaults(f ...fault) {
	w.opts.faults = f
	w.writeAttachments()
}

func (w *world) arm()    { _ = os.WriteFile(w.ArmFile, nil, 0o644) }
func (w *world) disarm() { _ = os.Remove(w.ArmFile) }

// markerCount counts the torture plugins' calls of verb so far.
func (w *world) markerCount(verb string) int {
	b, _ := os.ReadFile(w.Marker)
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, verb+" ") {
			n++
		}
	}
	return n
}

// conflist is nicmux's configuration list.
func (w *world) conflist() *libcni.NetworkConfigList {
	b, err := w.Conflist(w.CNIVersion, w.Name, w.Attachments, w.extra)
	if err != nil {
		w.tr.fatalf("%v", err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		w.tr.fatalf("conflist: %v", err)
	}
	return l
}

// --- namespaces and containers ---------------------------------------------

func (w *world) newNetns() string {
	path := filepath.Join(testworld.NetnsDir, "torture-"+testworld.RandHex(6))
	if err := netnsutil.CreateAt(path); err != nil {
		w.tr.fatalf("netns: %v", err)
	}
	w.mu.Lock()
	w.nets[path] = true
	w.mu.Unlock()
	return path
}

// newCtr makes a container: an ID and a fresh netns.
func (w *world) newCtr() *ctr {
	w.mu.Lock()
	w.ports++
	port := w.ports
	w.mu.Unlock()
	c := &ctr{id: "t" + testworld.RandHex(8), netns: w.newNetns(), port: port}
	w.mu.Lock()
	w.ctrs = append(w.ctrs, c)
	w.mu.Unlock()
	return c
}

// destroyNetns removes a container's netns (its links die with it).
func (w *world) destroyNetns(c *ctr) {
	if err := netnsutil.DestroyAt(c.netns); err != nil {
		w.tr.fatalf("destroying netns: %v", err)
	}
}

// rebuildNetns is Nomad's rebuild: the netns destroyed and a new one made
// at the same path.
func (w *world) rebuildNetns(c *ctr) {
	w.destroyNetns(c)
	if err := netnsutil.CreateAt(c.netns); err != nil {
		w.tr.fatalf("recreating netns: %v", err)
	}
}

func (w *world) rt(c *ctr) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: c.id, NetNS: c.netns, IfName: "eth0", Args: c.args,
		CapabilityArgs: map[string]any{"portMappings": []map[string]any{
			{"hostPort": c.port, "containerPort": 80, "protocol": "tcp"}}}}
}

// --- verbs -------------------------------------------------------------------

// outcome is what a verb returned to the runtime.
type outcome struct {
	verb    string
	err     error
	res     *types100.Result
	dur     time.Duration
	hung    bool // the suite's deadline ended it
	killed  bool // the trial's deliberate kill ended it
	attempt int
}

func (o outcome) ok() bool { return o.err == nil }

func (o outcome) code() uint { return testworld.CNICode(o.err) }

func (o outcome) String() string {
	switch {
	case o.err == nil:
		return fmt.Sprintf("%s ok in %s", o.verb, o.dur.Round(time.Millisecond))
	case o.hung:
		return fmt.Sprintf("%s hung: killed by the suite after %s", o.verb, o.dur.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s failed in %s: code %d: %s", o.verb, o.dur.Round(time.Millisecond), o.code(), short(o.err.Error(), 400))
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d bytes)", len(s))
}

// run issues one verb with the suite's deadline, or the trial's own
// context when ctx is not nil.
func (w *world) run(ctx context.Context, verb string, c *ctr, gcValid []types.GCAttachment) outcome {
	deadline := verbDeadline
	if w.deadline > 0 {
		deadline = w.deadline
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	l := w.conflist()
	start := time.Now()
	o := outcome{verb: verb}
	switch verb {
	case "ADD":
		var r types.Result
		r, o.err = w.cni.AddNetworkList(ctx, l, w.rt(c))
		if o.err == nil {
			o.res, o.err = types100.NewResultFromResult(r)
		}
	case "CHECK":
		o.err = w.cni.CheckNetworkList(ctx, l, w.rt(c))
	case "DEL":
		o.err = w.cni.DelNetworkList(ctx, l, w.rt(c))
	case "GC":
		o.err = w.cni.GCNetworkList(ctx, l, &libcni.GCArgs{ValidAttachments: gcValid})
	default:
		panic(verb)
	}
	o.dur = time.Since(start)
	if o.err != nil && ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && o.dur >= deadline-50*time.Millisecond {
			o.hung = true
		} else {
			o.killed = true
		}
	}
	if !w.quiet {
		w.tr.logf("%s %s: %s", verb, idOf(c), o)
	}
	return o
}

func idOf(c *ctr) string {
	if c == nil {
		return "-"
	}
	return c.id
}

func (w *world) add(c *ctr) outcome   { return w.run(nil, "ADD", c, nil) }
func (w *world) check(c *ctr) outcome { return w.run(nil, "CHECK", c, nil) }
func (w *world) del(c *ctr) outcome   { return w.run(nil, "DEL", c, nil) }

// gc issues GC with these containers valid (their eth0 attachment).
func (w *world) gc(ctx context.Context, valid ...*ctr) outcome {
	va := []types.GCAttachment{}
	for _, c := range valid {
		va = append(va, types.GCAttachment{ContainerID: c.id, IfName: "eth0"})
	}
	return w.run(ctx, "GC", nil, va)
}

// dropCache forgets libcni's cached results, so that GC goes to nicmux
// alone (libcni would DEL the attachments it cached and GC does not list).
func (w *world) dropCache() { _ = os.RemoveAll(filepath.Join(w.Dir, "cache")) }

// addRetry is Nomad's ADD: up to 3 tries, no DEL in between (Nomad waits
// 1 s; the suite 250 ms).
func (w *world) addRetry(c *ctr) outcome {
	var o outcome
	for i := 1; i <= 3; i++ {
		o = w.add(c)
		o.attempt = i
		if o.ok() {
			return o
		}
		time.Sleep(250 * time.Millisecond)
	}
	return o
}

// killSpec says when the trial SIGKILLs nicmux (by ending the runtime's
// context, as libcni does): after a delay, or once a torture plugin has
// logged a call of a verb in the marker file.
type killSpec struct {
	after  time.Duration
	marker string // verb to wait for in the marker file
}

func (k killSpec) String() string {
	if k.marker != "" {
		return "kill at the torture plugin's " + k.marker
	}
	return "kill after " + k.after.String()
}

// runKilled issues a verb and SIGKILLs nicmux as k says.
func (w *world) runKilled(verb string, c *ctr, k killSpec) outcome {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if k.marker != "" {
		before := w.markerCount(k.marker)
		go func() {
			for ctx.Err() == nil {
				if w.markerCount(k.marker) > before {
					cancel()
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	} else {
		t := time.AfterFunc(k.after, cancel)
		defer t.Stop()
	}
	return w.run(ctx, verb, c, nil)
}

// logTail is the end of nicmux's log.
func (w *world) logTail(lines int) string {
	all := strings.Split(strings.TrimRight(w.Log(), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	for i, l := range all {
		all[i] = "    " + short(l, 800)
	}
	return strings.Join(all, "\n")
}

// leasesOf returns the IPs a container holds in a network.
func (w *world) leasesOf(network string, c *ctr) []string {
	leases, err := w.Leases(network)
	if err != nil {
		w.tr.fatalf("reading the %s leases: %v", network, err)
	}
	return slices.Collect(maps.Keys(testworld.HeldBy(leases, c.id)))
}

// --- mounts ------------------------------------------------------------------

// mountTmpfs makes dir a tmpfs with these options (size=, nr_inodes=).
func (w *world) mountTmpfs(dir, opts string) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		w.tr.fatalf("%v", err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		w.tr.fatalf("mounting tmpfs on %s: %v", dir, err)
	}
	w.mounts = append(w.mounts, dir)
}

// readOnly bind-mounts dir read-only on itself; the returned func undoes it.
func (w *world) readOnly(dir string) func() {
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		w.tr.fatalf("bind mount %s: %v", dir, err)
	}
	if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		w.tr.fatalf("remount %s read-only: %v", dir, err)
	}
	w.mounts = append(w.mounts, dir)
	done := false
	return func() {
		if !done {
			done = true
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	}
}
