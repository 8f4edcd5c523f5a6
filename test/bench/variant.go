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
)

// kind is how a scenario's chains are attached.
type kind int

const (
	directSerial       kind = iota // N go-cni networks: SetupSerially, Check, Remove
	directParallel                 // N go-cni networks: Setup; CHECK and DEL in goroutines
	nicmuxSerial                   // one go-cni network: nicmux, "parallel": false
	nicmuxParallel                 // one go-cni network: nicmux, "parallel": true
	nicmuxSerialCold               // nicmuxSerial with "prestart": false
	nicmuxParallelCold             // nicmuxParallel with "prestart": false
)

var kinds = []kind{directSerial, directParallel, nicmuxSerial, nicmuxParallel, nicmuxSerialCold, nicmuxParallelCold}

func (k kind) String() string {
	return [...]string{"direct-serial", "direct-parallel", "nicmux-serial", "nicmux-parallel",
		"nicmux-serial-noprestart", "nicmux-parallel-noprestart"}[k]
}

func (k kind) nicmux() bool { return k >= nicmuxSerial }

// parallel and prestart are nicmux's settings of those names.
func (k kind) parallel() bool { return k == nicmuxParallel || k == nicmuxParallelCold }
func (k kind) prestart() bool { return k == nicmuxSerial || k == nicmuxParallel }

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

// sample is one measured iteration: a container and its verbs' wall times.
type sample struct {
	id string
	d  [nVerbs]time.Duration
}

// variant is one scenario attached one way, with its own IPAM folder (and
// bridge, state folder and log), so that variants never share a lease.
type variant struct {
	env     *env
	kind    kind
	scen    scenario
	label   string
	res     resources
	chains  []chain
	cni     gocni.CNI
	lib     *libcni.CNIConfig           // for direct-parallel CHECK and DEL
	lists   []*libcni.NetworkConfigList // direct: one per chain, eth0...
	state   string                      // nicmux: stateDir
	logFile string                      // nicmux: logFile
	samples []sample
}

// newVariant sets up scenario s attached the k way, on the given macvlan
// masters.
func newVariant(e *env, s scenario, k kind, masters []string) *variant {
	return newVariantIn(e, s, k, masters, e.pluginDirs())
}

// newVariantIn is newVariant with the runtime's plugin folders (CNI_PATH).
func newVariantIn(e *env, s scenario, k kind, masters, dirs []string) *variant {
	label := s.Name + "/" + k.String()
	dir := e.folder(strings.NewReplacer("/", "_", "=", "").Replace(label) + "-" + e.name(""))
	v := &variant{env: e, kind: k, scen: s, label: label,
		res: resources{env: e, ipamDir: filepath.Join(dir, "ipam"), masters: masters}}
	if s.Bridged {
		v.res.bridge = e.name("br")
	}
	v.chains = s.chains(v.res)
	// go-cni names network i "eth<i>" from the options before it.
	opts := []gocni.Opt{gocni.WithPluginDir(dirs), gocni.WithInterfacePrefix("eth")}
	if k.nicmux() {
		opts = append(opts, gocni.WithConfListBytes(v.nicmuxList(dir)))
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
	return nicmuxConflist(v.env.name("mux"), att, v.state, v.logFile, v.kind.parallel(), v.kind.prestart())
}

func (v *variant) add(ctx context.Context, id, ns string) (*gocni.Result, error) {
	if v.kind == directSerial || v.kind == nicmuxSerial {
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
// namespace, timing only the three verb calls.
func (v *variant) iterate() sample {
	ns := v.env.newNetns()
	defer v.env.destroyNetns(ns)
	s := sample{id: v.env.name("c")}
	var res *gocni.Result
	s.d[vADD] = v.timed(vADD, s.id, func(ctx context.Context) (err error) {
		res, err = v.add(ctx, s.id, ns)
		return err
	})
	must(v.verifyAdded(res, ns), "%s: after ADD of %s", v.label, s.id)
	s.d[vCHECK] = v.timed(vCHECK, s.id, func(ctx context.Context) error { return v.check(ctx, s.id, ns) })
	s.d[vDEL] = v.timed(vDEL, s.id, func(ctx context.Context) error { return v.del(ctx, s.id, ns) })
	must(verifyEmpty(ns), "%s: after DEL of %s", v.label, s.id)
	return s
}

func (v *variant) timed(verb int, id string, f func(context.Context) error) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	d := time.Since(start)
	if err != nil {
		fatalf("%s: %s of container %s: %v%s", v.label, verbNames[verb], id, err, v.logTail())
	}
	return d
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
	got, err := nsLinks(ns)
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
	links, err := nsLinks(ns)
	if err != nil {
		return err
	}
	if len(links) > 0 {
		return fmt.Errorf("links left in the netns: %v", links)
	}
	return nil
}
