package mux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/nicmux/nicmux/delegate/delegatetest"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// multiYAML has three interfaces of two plugins each, at mixed versions.
const multiYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - {type: alpha, mtu: 1500}
      - {type: alpha2}
  - ifname: eth1
    network: storage
    cniVersion: 0.4.0
    plugins:
      - {type: beta}
      - {type: beta2}
  - ifname: eth2
    plugins:
      - {type: gamma}
      - {type: gamma2, capabilities: {portMappings: true}}
`

// chainPlugins is multiYAML's plugins by interface.
var chainPlugins = [][]string{{"alpha", "alpha2"}, {"beta", "beta2"}, {"gamma", "gamma2"}}
var chainIfs = []string{"eth0", "eth1", "eth2"}

const storageYAML = `interfaces:
  - plugins:
      - {type: sigma}
  - ifname: stor0
    network: san
    plugins:
      - {type: tau}
`

const testID = "ctr-0123"
const testPath = "/opt/cni/bin"

// harness is a nicmux Plugin on a fake Exec, with its files in a temp dir.
type harness struct {
	t        *testing.T
	dir      string
	attach   string
	stateDir string
	netns    string // a regular file standing in for a netns
	fake     *delegatetest.Exec
	p        *Plugin
	stdout   *bytes.Buffer
	stderr   *bytes.Buffer
	// parallel leaves nicmux's default (independent chains at the same
	// time); otherwise the netconf says "parallel": false.
	parallel bool
}

// newHarness returns a harness whose chains run one after the other, in
// file order.
func newHarness(t *testing.T) *harness { return newHarnessMode(t, false) }

func newHarnessMode(t *testing.T, parallel bool) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{
		t:        t,
		parallel: parallel,
		dir:      dir,
		attach:   filepath.Join(dir, "multi.yaml"),
		stateDir: filepath.Join(dir, "state"),
		fake:     delegatetest.New(),
		stdout:   &bytes.Buffer{},
		stderr:   &bytes.Buffer{},
	}
	h.netns = h.newNetNS("netns-a")
	h.write("multi.yaml", multiYAML)
	h.write("storage.yaml", storageYAML)
	h.p = &Plugin{Exec: h.fake, Stdout: h.stdout, Stderr: h.stderr, LockTimeout: 5 * time.Second, Identify: identifyFile}
	return h
}

// identifyFile is the harness's Plugin.Identify: a regular file stands in
// for a namespace, its inode its identity (it has no cookie); what is not
// there is none.
func identifyFile(path string) (ns.NetNSID, error) {
	if path == "" {
		return ns.NetNSID{}, nil
	}
	var st syscall.Stat_t
	err := syscall.Stat(path, &st)
	if errors.Is(err, fs.ErrNotExist) {
		return ns.NetNSID{}, nil
	}
	if err != nil {
		return ns.NetNSID{}, err
	}
	return ns.NetNSID{Dev: st.Dev, Ino: st.Ino}, nil
}

func (h *harness) write(name, data string) {
	h.t.Helper()
	if err := writeSettled(filepath.Join(h.dir, name), []byte(data), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) newNetNS(name string) string {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) netconf() []byte {
	nc := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"multi","type":"nicmux","attachments":%q,"stateDir":%q}`, h.attach, h.stateDir)
	if !h.parallel {
		nc = strings.TrimSuffix(nc, "}") + `,"parallel":false}`
	}
	return []byte(nc)
}

func (h *harness) args(cniArgs string) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: testID, Netns: h.netns, IfName: "eth0", Args: cniArgs, Path: testPath, StdinData: h.netconf()}
}

func (h *harness) add(a *skel.CmdArgs) error {
	h.stdout.Reset()
	return h.p.Add(context.Background(), a)
}

func (h *harness) mustAdd(a *skel.CmdArgs) {
	h.t.Helper()
	if err := h.add(a); err != nil {
		h.t.Fatalf("ADD: %v\nstderr: %s", err, h.stderr)
	}
}

func (h *harness) del(a *skel.CmdArgs) error { return h.p.Del(context.Background(), a) }

func (h *harness) containerDir() string { return filepath.Join(h.stateDir, "containers", testID) }

// record reads the container's record as the next verb would; an error
// unless its plan was read whole.
func (h *harness) record() (*state.Record, error) {
	h.t.Helper()
	s, err := state.Open(h.stateDir)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	rec := s.Load(testID)
	if rec.Status != state.Whole {
		return rec, fmt.Errorf("status %v: %v", rec.Status, rec.Err)
	}
	return rec, nil
}

// mustRecord reads the container's record, which must be there.
func (h *harness) mustRecord() *state.Record {
	h.t.Helper()
	rec, err := h.record()
	if err != nil {
		h.t.Fatalf("loading the record: %v", err)
	}
	return rec
}

// pending reports whether ifname's chain is still to be released: it is
// in the record and not marked released.
func (h *harness) pending(ifname string) bool {
	h.t.Helper()
	rec, err := h.record()
	if err != nil {
		return false
	}
	it := rec.Interface(ifname)
	return it != nil && !it.Released
}
func (h *harness) lockFile() string {
	return filepath.Join(h.stateDir, "locks", testID+".lock")
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// assertNoState checks that the container left no state and no lock file.
func (h *harness) assertNoState() {
	h.t.Helper()
	if exists(h.containerDir()) {
		entries, _ := os.ReadDir(h.containerDir())
		h.t.Errorf("state folder %s left behind: %v", h.containerDir(), entries)
	}
	if exists(h.lockFile()) {
		h.t.Errorf("lock file %s left behind", h.lockFile())
	}
}

// expectCalls lists verb's calls of the given chains, each chain's plugins
// in order (or reversed), chains in the given order.
func expectCalls(verb string, reversePlugins bool, chains ...int) []string {
	var out []string
	for _, k := range chains {
		ps := chainPlugins[k]
		for i := range ps {
			p := ps[i]
			if reversePlugins {
				p = ps[len(ps)-1-i]
			}
			out = append(out, verb+" "+p+"/"+chainIfs[k])
		}
	}
	return out
}

// modes runs f with chains serial (file order) and parallel (the default).
func modes(t *testing.T, f func(t *testing.T, h *harness)) {
	for _, parallel := range []bool{false, true} {
		name := "serial"
		if parallel {
			name = "parallel"
		}
		t.Run(name, func(t *testing.T) { f(t, newHarnessMode(t, parallel)) })
	}
}

// byIf groups call summaries by interface, in call order.
func byIf(calls []string) map[string][]string {
	out := map[string][]string{}
	for _, c := range calls {
		ifname := c[strings.LastIndex(c, "/")+1:]
		out[ifname] = append(out[ifname], c)
	}
	return out
}

// assertCalls checks calls against want: exactly when chains run serially;
// when they run in parallel, the same calls in the same order per interface.
func (h *harness) assertCalls(what string, calls []delegatetest.Call, want []string) bool {
	h.t.Helper()
	got := delegatetest.Summary(calls)
	if !h.parallel {
		if !reflect.DeepEqual(got, want) {
			h.t.Errorf("%s =\n%v\nwant\n%v", what, got, want)
			return false
		}
		return true
	}
	if !reflect.DeepEqual(byIf(got), byIf(want)) {
		h.t.Errorf("%s =\n%v\nwant, per interface in this order,\n%v", what, got, want)
		return false
	}
	return true
}

// chainIndex returns the position of ifname in multiYAML.
func chainIndex(ifname string) int { return slices.Index(chainIfs, ifname) }

// pluginIndex returns the position of plugin in its chain.
func pluginIndex(c delegatetest.Call) int {
	return slices.Index(chainPlugins[chainIndex(c.IfName)], c.Plugin)
}

// writeSettled is os.WriteFile for a configuration file, dated an hour
// back as a file deployed before the verb is: nicmux reads one written
// less than 100 ms ago again once it is older (see conf.readSettled).
func writeSettled(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return err
	}
	past := time.Now().Add(-time.Hour)
	return os.Chtimes(path, past, past)
}
