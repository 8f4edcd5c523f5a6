package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nicmux/nicmux/test/netnsutil"
)

// kind is how a scenario's chains are attached.
type kind int

const (
	directSerial       kind = iota // N go-cni networks: SetupSerially, Check, Remove
	directParallel                 // N go-cni networks: Setup; CHECK and DEL in goroutines
	nicmuxSerial                   // one go-cni network: nicmux, "parallel": false
	nicmuxParallel                 // one go-cni network: nicmux, "parallel": true
	nicmuxSerialBase               // nicmuxSerial run by the -baseline binary
	nicmuxParallelBase             // nicmuxParallel run by the -baseline binary
)

var kinds = []kind{directSerial, directParallel, nicmuxSerial, nicmuxParallel, nicmuxSerialBase, nicmuxParallelBase}

func (k kind) String() string {
	return [...]string{"direct-serial", "direct-parallel", "nicmux-serial", "nicmux-parallel",
		"nicmux-serial-base", "nicmux-parallel-base"}[k]
}

func (k kind) nicmux() bool { return k >= nicmuxSerial }

// base reports whether the -baseline binary runs the variant.
func (k kind) base() bool { return k == nicmuxSerialBase || k == nicmuxParallelBase }

// parallel is nicmux's setting of that name.
func (k kind) parallel() bool { return k == nicmuxParallel || k == nicmuxParallelBase }

// serial reports whether the chains are attached one after the other.
func (k kind) serial() bool { return k == directSerial || (k.nicmux() && !k.parallel()) }

// The verbs, in the order an iteration runs them.
const (
	vADD = iota
	vCHECK
	vDEL
	nVerbs
)

var verbNames = [nVerbs]string{"ADD", "CHECK", "DEL"}

// verbTimeout bounds one verb call: a hang is a failure, not a data point.
const verbTimeout = 2 * time.Minute

// sample is one measured iteration: a container and its verbs' wall
// times, in run run (-runs).
type sample struct {
	id  string
	run int
	d   [nVerbs]time.Duration
}

// variant is one scenario attached one way, with its own IPAM folder (and
// bridge, state folder and log), so that variants never share a lease.
type variant struct {
	env      *env
	kind     kind
	scen     scenario
	label    string
	res      resources
	chains   []chain
	cni      gocni.CNI
	lib      *libcni.CNIConfig           // for direct-parallel CHECK and DEL
	lists    []*libcni.NetworkConfigList // direct: one per chain, eth0...
	state    string                      // nicmux: stateDir
	logFile  string                      // nicmux: logFile
	conflist []byte                      // nicmux: the runtime's conflist
	dirs     []string                    // the runtime's CNI_PATH
	samples  []sample
}

// newVariant sets up scenario s attached the k way, on the given macvlan
// masters.
func newVariant(e *env, s scenario, k kind, masters []string) *variant {
	dirs := e.pluginDirs()
	if k.base() {
		dirs = e.baselineDirs()
	}
	return newVariantIn(e, s, k, masters, dirs)
}

// newVariantIn is newVariant with the runtime's plugin folders (CNI_PATH).
func newVariantIn(e *env, s scenario, k kind, masters, dirs []string) *variant {
	label := s.Name + "/" + k.String()
	dir := e.folder(strings.NewReplacer("/", "_", "=", "").Replace(label) + "-" + e.name(""))
	v := &variant{env: e, kind: k, scen: s, label: label, dirs: dirs,
		res: resources{env: e, ipamDir: filepath.Join(dir, "ipam"), masters: masters}}
	if s.Bridged {
		v.res.bridge = e.name("br")
	}
	v.chains = s.chains(v.res)
	// go-cni names network i "eth<i>" from the options before it.
	opts := []gocni.Opt{gocni.WithPluginDir(dirs), gocni.WithInterfacePrefix("eth")}
	if k.nicmux() {
		v.conflist = v.nicmuxList(dir)
		opts = append(opts, gocni.WithConfListBytes(v.conflist))
	} else {
		for _, c := range v.chains {
			l, err := libcni.ConfListFromBytes(c.conflist())
			must(err, "%s: chain %s", label, c.IfName)
			v.lists = append(v.lists, l)
			opts = append(opts, gocni.WithConfListBytes(c.conflist()))
		}
	}
	var err error
	v.cni, err = gocni.New(opts...)
	must(err, "%s: go-cni", label)
	// The same libcni go-cni builds (default cache folder and exec).
	v.lib = libcni.NewCNIConfig(dirs, &invoke.DefaultExec{
		RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}})
	return v
}

// nicmuxList writes the attachment file and returns nicmux's conflist.
func (v *variant) nicmuxList(dir string) []byte {
	att := filepath.Join(dir, "attachments.yaml")
	must(os.WriteFile(att, attachmentYAML(v.chains), 0o644), "writing %s", att)
	v.state = filepath.Join(dir, "state")
	v.logFile = filepath.Join(dir, "nicmux.log")
	return nicmuxConflist(v.env.name("mux"), att, v.state, v.logFile, v.kind.parallel())
}

func (v *variant) add(ctx context.Context, id, ns string) (*gocni.Result, error) {
	if v.kind.serial() {
		return v.cni.SetupSerially(ctx, id, ns)
	}
	return v.cni.Setup(ctx, id, ns)
}

// check and del: go-cni's Check and Remove walk the networks one after the
// other, so direct-parallel calls libcni for every network at once.
func (v *variant) check(ctx context.Context, id, ns string) error {
	if v.kind == directParallel {
		return v.eachList(ctx, id, ns, v.lib.CheckNetworkList)
	}
	return v.cni.Check(ctx, id, ns)
}

func (v *variant) del(ctx context.Context, id, ns string) error {
	if v.kind == directParallel {
		return v.eachList(ctx, id, ns, v.lib.DelNetworkList)
	}
	return v.cni.Remove(ctx, id, ns)
}

type listVerb func(context.Context, *libcni.NetworkConfigList, *libcni.RuntimeConf) error

func (v *variant) eachList(ctx context.Context, id, ns string, f listVerb) error {
	errs := make([]error, len(v.lists))
	var wg sync.WaitGroup
	for i, l := range v.lists {
		rt := &libcni.RuntimeConf{ContainerID: id, NetNS: ns, IfName: v.chains[i].IfName}
		wg.Go(func() { errs[i] = f(ctx, l, rt) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// iterate attaches, checks and detaches a fresh container in a fresh
// namespace, timing only the three verb calls; the sample belongs to run.
func (v *variant) iterate(run int) sample {
	ns := v.env.newNetns()
	defer v.env.destroyNetns(ns)
	s := sample{id: v.env.name("c"), run: run}
	var res *gocni.Result
	v.timed(&s, vADD, func(ctx context.Context) (err error) {
		res, err = v.add(ctx, s.id, ns)
		return err
	})
	must(v.verifyAdded(res, ns), "%s: after ADD of %s", v.label, s.id)
	v.timed(&s, vCHECK, func(ctx context.Context) error { return v.check(ctx, s.id, ns) })
	v.timed(&s, vDEL, func(ctx context.Context) error { return v.del(ctx, s.id, ns) })
	must(verifyEmpty(ns), "%s: after DEL of %s", v.label, s.id)
	return s
}

// timed runs one verb's call and records in s how long it took.
func (v *variant) timed(s *sample, verb int, f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	d := time.Since(start)
	if err != nil {
		fatalf("%s: %s of container %s: %v%s", v.label, verbNames[verb], s.id, err, v.logTail())
	}
	s.d[verb] = d
}

// inRun is the variant's samples of one run.
func (v *variant) inRun(run int) []sample { return inRun(v.samples, run) }

// inRun picks the samples of one run.
func inRun(samples []sample, run int) []sample {
	var out []sample
	for _, s := range samples {
		if s.run == run {
			out = append(out, s)
		}
	}
	return out
}

// logTail is the end of nicmux's log, for a failure message.
func (v *variant) logTail() string {
	if v.logFile == "" {
		return ""
	}
	b, _ := os.ReadFile(v.logFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return "\nlast lines of nicmux's log:\n" + strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// verifyAdded checks the merged result and the namespace: every chain's
// interface is there, in the namespace, with an address.
func (v *variant) verifyAdded(res *gocni.Result, ns string) error {
	var want []string
	for _, c := range v.chains {
		cfg := res.Interfaces[c.IfName]
		if cfg == nil || cfg.Sandbox != ns || len(cfg.IPConfigs) == 0 {
			return fmt.Errorf("result lacks %s in %s with an address: %+v", c.IfName, ns, cfg)
		}
		want = append(want, c.IfName)
	}
	got, err := netnsutil.Links(ns)
	if err != nil {
		return err
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("links in the netns are %v, want %v", got, want)
	}
	return nil
}

func verifyEmpty(ns string) error {
	links, err := netnsutil.Links(ns)
	if err != nil {
		return err
	}
	if len(links) > 0 {
		return fmt.Errorf("links left in the netns: %v", links)
	}
	return nil
}
