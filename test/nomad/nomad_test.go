package nomad

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"

	"github.com/nicmux/nicmux/test/netnsutil"
)

// This file re-implements, from NOMAD.md, how a Nomad client drives CNI
// through go-cni. Nothing here is Nomad's code.

// nomadNode is a Nomad client agent's CNI settings.
type nomadNode struct {
	CNIPath   string // cni_path: a colon-separated list of folders
	ConfigDir string // cni_config_dir
}

// setupTries and setupInterval are Nomad's retry of a failed network setup,
// with no teardown between tries.
const (
	setupTries    = 3
	setupInterval = time.Second
)

// networkName is the CNI network a job's mode names: Nomad lower-cases
// "cni/<name>".
func networkName(mode string) (string, error) {
	name, ok := strings.CutPrefix(strings.ToLower(mode), "cni/")
	if !ok || name == "" {
		return "", fmt.Errorf("network mode %q is not cni/<name>", mode)
	}
	return name, nil
}

// findConfig returns the configuration for the network: the first file of
// the config dir, sorted, with a .conf, .conflist or .json extension whose
// name matches. isList reports a .conflist.
func (n nomadNode) findConfig(name string) (data []byte, isList bool, err error) {
	files, err := libcni.ConfFiles(n.ConfigDir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, false, err
	}
	sort.Strings(files)
	for _, f := range files {
		data, isList, got, err := readConfig(f)
		if err == nil && got == name {
			return data, isList, nil
		}
	}
	return nil, false, fmt.Errorf("no CNI network config found in %s with name %q", n.ConfigDir, name)
}

func readConfig(file string) (data []byte, isList bool, name string, err error) {
	if data, err = os.ReadFile(file); err != nil {
		return nil, false, "", err
	}
	if strings.HasSuffix(file, ".conflist") {
		l, err := libcni.ConfListFromBytes(data)
		if err != nil {
			return nil, false, "", err
		}
		return data, true, l.Name, nil
	}
	c, err := libcni.ConfFromBytes(data)
	if err != nil {
		return nil, false, "", err
	}
	return data, false, c.Network.Name, nil
}

// client makes a fresh go-cni client as Nomad does and loads the network
// the mode names.
func (n nomadNode) client(mode string) (gocni.CNI, error) {
	c, err := gocni.New(gocni.WithPluginDir(filepath.SplitList(n.CNIPath)), gocni.WithInterfacePrefix("eth"))
	if err != nil {
		return nil, err
	}
	name, err := networkName(mode)
	if err != nil {
		return nil, err
	}
	data, isList, err := n.findConfig(name)
	if err != nil {
		return nil, err
	}
	load := gocni.WithConf(data)
	if isList {
		load = gocni.WithConfListBytes(data)
	}
	return c, c.Load(load)
}

// alloc is one allocation's network as Nomad's network hook sees it.
type alloc struct {
	ID, Region, Namespace, JobID, Group string
	NetNS                               string
	Mode                                string
	// Ports are the port mappings: one per port and protocol.
	Ports []gocni.PortMapping
	// Args are the job's network.cni.args, verbatim.
	Args map[string]string
	// Release is the Nomad client release whose CNI_ARGS the allocation
	// gets (see labels); "" for the newest.
	Release string
}

// labels are the CNI_ARGS Nomad gives ADD and CHECK: IgnoreUnknown=true,
// from 1.8.2 the job's args, from 1.9.4 the allocation's identity
// (NOMAD.md).
func (a *alloc) labels() map[string]string {
	sends := func(from string) bool { return a.Release == "" || compareVersions(a.Release, from) >= 0 }
	l := map[string]string{"IgnoreUnknown": "true"}
	if sends("1.9.4") {
		l["NOMAD_REGION"] = a.Region
		l["NOMAD_NAMESPACE"] = a.Namespace
		l["NOMAD_JOB_ID"] = a.JobID
		l["NOMAD_GROUP_NAME"] = a.Group
		l["NOMAD_ALLOC_ID"] = a.ID
	}
	if sends("1.8.2") {
		for k, v := range a.Args {
			l[k] = v
		}
	}
	return l
}

func (a *alloc) setupOpts() []gocni.NamespaceOpts {
	return []gocni.NamespaceOpts{gocni.WithCapabilityPortMap(a.Ports), gocni.WithLabels(a.labels())}
}

// setup is Nomad's network setup: up to three tries, a second apart, with
// no Remove between. It returns the result and every failed try's error.
func (n nomadNode) setup(a *alloc) (*gocni.Result, []error) {
	c, err := n.client(a.Mode)
	if err != nil {
		return nil, []error{err}
	}
	var errs []error
	for try := 1; try <= setupTries; try++ {
		res, err := c.Setup(context.Background(), a.ID, a.NetNS, a.setupOpts()...)
		if err == nil {
			return res, errs
		}
		errs = append(errs, err)
		if try < setupTries {
			time.Sleep(setupInterval)
		}
	}
	return nil, errs
}

// setupOnce is one try of Nomad's setup, for a test that needs one.
func (n nomadNode) setupOnce(a *alloc) (*gocni.Result, error) {
	c, err := n.client(a.Mode)
	if err != nil {
		return nil, err
	}
	return c.Setup(context.Background(), a.ID, a.NetNS, a.setupOpts()...)
}

// check is the CHECK Nomad runs on restore, from a fresh client.
func (n nomadNode) check(a *alloc) error {
	c, err := n.client(a.Mode)
	if err != nil {
		return err
	}
	return c.Check(context.Background(), a.ID, a.NetNS, a.setupOpts()...)
}

// remove is Nomad's teardown: Status first (go-cni >= 1.1.11 asks plugins
// of a 1.1.0 list; an error skips the teardown), then Remove with the port
// mappings and no labels.
func (n nomadNode) remove(a *alloc) error {
	c, err := n.client(a.Mode)
	if err != nil {
		return err
	}
	if err := c.Status(); err != nil {
		return fmt.Errorf("status failed, teardown skipped: %w", err)
	}
	return c.Remove(context.Background(), a.ID, a.NetNS, gocni.WithCapabilityPortMap(a.Ports))
}

// restoreOutcome is what a client restart did to an allocation.
type restoreOutcome struct {
	Checked   bool  // the CHECK gate was open and CHECK ran
	CheckErr  error // CHECK's error
	Rebuilt   bool  // the netns was destroyed and set up again
	Result    *gocni.Result
	SetupErrs []error // the rebuild's failed tries
}

// restore is a client restart finding the allocation's netns: if the
// bridge plugin in cni_path is recent enough, CHECK from a fresh client; on
// failure destroy the netns WITHOUT Remove, make a new one at the same path
// and set up again with the same allocation ID.
func (n nomadNode) restore(a *alloc) restoreOutcome {
	var out restoreOutcome
	if _, err := os.Stat(a.NetNS); err != nil || !checkGateOpen(fingerprint(n.CNIPath)) {
		return out
	}
	out.Checked = true
	if out.CheckErr = n.check(a); out.CheckErr == nil {
		return out
	}
	out.Rebuilt = true
	if err := netnsutil.DestroyAt(a.NetNS); err != nil {
		out.SetupErrs = []error{err}
		return out
	}
	if err := netnsutil.CreateAt(a.NetNS); err != nil {
		out.SetupErrs = []error{err}
		return out
	}
	out.Result, out.SetupErrs = n.setup(a)
	return out
}

var versionRE = regexp.MustCompile(`v?(\d+)\.(\d+)\.(\d+)`)

// fingerprint runs every file in cni_path with no arguments and no
// CNI_COMMAND (3 s each) and returns the version each printed first, or ""
// when it printed none.
func fingerprint(cniPath string) map[string]string {
	out := map[string]string{}
	for _, dir := range filepath.SplitList(cniPath) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			info, err := e.Info()
			if err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 && !strings.HasPrefix(e.Name(), ".") {
				out[e.Name()] = pluginVersion(filepath.Join(dir, e.Name()))
			}
		}
	}
	return out
}

func pluginVersion(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CNI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	b, _ := cmd.CombinedOutput() // CNI's skel prints it on stderr
	first, _, _ := strings.Cut(string(b), "\n")
	if m := versionRE.FindStringSubmatch(first); m != nil {
		return m[1] + "." + m[2] + "." + m[3]
	}
	return ""
}

// checkGateOpen is Nomad's CHECK gate: the bridge plugin in cni_path
// reports version 1.3.0 or later.
func checkGateOpen(fp map[string]string) bool {
	return fp["bridge"] != "" && compareVersions(fp["bridge"], "1.3.0") >= 0
}

// newAlloc makes an allocation of the example job in this world: a fresh
// netns at /var/run/netns/<allocID>, one port mapping per port and
// protocol, and the given job CNI args (nil for none).
func (w *world) newAlloc(args map[string]string) *alloc {
	w.t.Helper()
	return w.allocOf(w.job, args)
}

// allocOf makes an allocation of job in this world, as newAlloc does, in
// the job's namespace.
func (w *world) allocOf(job jobSpec, args map[string]string) *alloc {
	w.t.Helper()
	a := &alloc{ID: newUUID(), Region: "global", Namespace: job.Namespace, JobID: job.Job, Group: job.Group,
		Mode: job.Mode, Args: args}
	a.NetNS = filepath.Join(netnsDir, a.ID)
	for _, p := range job.Ports {
		host := 20000 + int(hostPorts.Add(1))
		for _, proto := range []string{"tcp", "udp"} {
			a.Ports = append(a.Ports, gocni.PortMapping{HostPort: int32(host), ContainerPort: int32(p.To), Protocol: proto})
		}
	}
	failIf(w.t, netnsutil.CreateAt(a.NetNS), "creating the allocation's netns")
	w.t.Cleanup(func() { _ = netnsutil.DestroyAt(a.NetNS) })
	return a
}

// hostPorts hands out Nomad's dynamic host ports, unique within the run.
var hostPorts atomic.Int32

// mustSetup sets the allocation up as Nomad does and wants it to work on
// the first try.
func (w *world) mustSetup(a *alloc) *gocni.Result {
	w.t.Helper()
	res, errs := w.node.setup(a)
	if res == nil || len(errs) > 0 {
		w.t.Fatalf("setup of %s: %v", a.ID, errs)
	}
	return res
}
