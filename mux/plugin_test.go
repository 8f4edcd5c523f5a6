package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nicmux/nicmux/delegate/delegatetest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
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
	store    *state.Store
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
	h.p = &Plugin{Exec: h.fake, Stdout: h.stdout, Stderr: h.stderr, LockTimeout: 5 * time.Second}
	h.store = &state.Store{Dir: h.stateDir}
	return h
}

func (h *harness) write(name, data string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, name), []byte(data), 0o600); err != nil {
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

func (h *harness) containerDir() string { return h.store.ContainerDir(testID) }
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

func TestAdd(t *testing.T) {
	modes(t, func(t *testing.T, h *harness) {
		h.mustAdd(h.args("IgnoreUnknown=true"))

		calls := h.fake.Calls()
		if !h.assertCalls("calls", calls, expectCalls("ADD", false, 0, 1, 2)) {
			t.FailNow()
		}
		wantNet := map[string]string{"eth0": "svc", "eth1": "storage", "eth2": "multi-eth2"}
		wantVer := map[string]string{"eth0": "1.0.0", "eth1": "0.4.0", "eth2": "1.0.0"}
		for _, c := range calls {
			if c.ContainerID != testID || c.NetNS != h.netns || c.Args != "IgnoreUnknown=true" || c.Path != testPath {
				t.Errorf("%s: env = %+v", c, c)
			}
			if c.Str("name") != wantNet[c.IfName] || c.Str("cniVersion") != wantVer[c.IfName] {
				t.Errorf("%s: name/cniVersion = %s/%s", c, c.Str("name"), c.Str("cniVersion"))
			}
			pi := pluginIndex(c)
			if pi == 0 {
				if c.HasPrevResult() {
					t.Errorf("%s: first plugin of its chain got a prevResult: %s", c, c.Conf["prevResult"])
				}
				continue
			}
			prev := c.PrevResult(t)
			if prev == nil {
				t.Errorf("%s: no prevResult", c)
				continue
			}
			if got := names(prev); !reflect.DeepEqual(got, []string{c.IfName}) {
				t.Errorf("%s: prevResult interfaces = %v, want only its own", c, got)
			}
			before := chainPlugins[chainIndex(c.IfName)][pi-1]
			if want := delegatetest.DefaultIP(before, c.IfName); delegatetest.IPOf(prev) != want || len(prev.IPs) != 1 {
				t.Errorf("%s: prevResult IPs = %v, want only %s (from %s)", c, prev.IPs, want, before)
			}
		}
		if got := string(calls[0].Conf["mtu"]); calls[0].Plugin == "alpha" && got != "1500" {
			t.Errorf("mtu = %s, want 1500", got)
		}

		// stdout holds the merged result, in file order.
		var hdr struct {
			CNIVersion string `json:"cniVersion"`
		}
		if err := json.Unmarshal(h.stdout.Bytes(), &hdr); err != nil || hdr.CNIVersion != "1.0.0" {
			t.Fatalf("stdout = %q (%v), want a 1.0.0 result", h.stdout, err)
		}
		merged := delegatetest.DecodeResult(t, h.stdout.Bytes())
		if !reflect.DeepEqual(names(merged), chainIfs) {
			t.Errorf("merged interfaces = %v, want %v", names(merged), chainIfs)
		}
		assertIndicesValid(t, merged)
		for k, ifname := range chainIfs {
			if k < len(merged.Interfaces) && merged.Interfaces[k].Sandbox != h.netns {
				t.Errorf("%s sandbox = %q", ifname, merged.Interfaces[k].Sandbox)
			}
			want := delegatetest.DefaultIP(chainPlugins[k][1], ifname)
			if k >= len(merged.IPs) || merged.IPs[k].Address.IP.String() != want || *merged.IPs[k].Interface != k {
				t.Errorf("merged IPs = %v, want %s on %d", merged.IPs, want, k)
			}
		}

		// State.
		c, err := h.store.LoadContainer(testID)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Complete || !reflect.DeepEqual(c.Interfaces, chainIfs) || c.NetNS != h.netns || c.Set != "" ||
			c.AttachmentFile != h.attach || c.IfName != "eth0" || c.ListName != "multi" || c.CNIVersion != "1.0.0" {
			t.Errorf("container record = %+v", c)
		}
		for k, ifname := range chainIfs {
			if !exists(h.store.InterfacePath(testID, ifname)) {
				t.Errorf("no record file for %s", ifname)
			}
			rec, err := h.store.LoadInterface(testID, ifname)
			if err != nil {
				t.Errorf("%s: %v", ifname, err)
				continue
			}
			if len(rec.Result) == 0 || rec.CNIVersion != wantVer[ifname] || rec.CNIArgs != "IgnoreUnknown=true" || rec.NetNS != h.netns {
				t.Errorf("%s record = %+v", ifname, rec)
				continue
			}
			if got := delegatetest.IPOf(delegatetest.DecodeResult(t, rec.Result)); got != delegatetest.DefaultIP(chainPlugins[k][1], ifname) {
				t.Errorf("%s stored result IP = %s", ifname, got)
			}
		}
		if !exists(h.lockFile()) {
			t.Errorf("lock file missing after ADD (it is kept while state exists)")
		}
	})
}

func TestAddFailureRollsBack(t *testing.T) {
	const code = 117
	for k := range chainIfs {
		for _, at := range []int{0, 1} {
			t.Run(fmt.Sprintf("chain%d/plugin%d", k, at), func(t *testing.T) {
				modes(t, func(t *testing.T, h *harness) {
					testAddFailureRollsBack(t, h, k, at, code)
				})
			})
		}
	}
}

// testAddFailureRollsBack fails plugin at of chain k and checks the
// rollback: serially, chains k..0 are released, last first, chain k only as
// far as it ran; in parallel, the chains after k ran too and are released
// as well.
func testAddFailureRollsBack(t *testing.T, h *harness, k, at int, code uint) {
	failing := chainPlugins[k][at]
	h.fake.FailOn(failing, "ADD", chainIfs[k], code)
	err := h.add(h.args(""))
	if err == nil {
		t.Fatal("ADD succeeded")
	}
	if h.stdout.Len() != 0 {
		t.Errorf("stdout = %q after a failed ADD", h.stdout)
	}
	if !strings.HasPrefix(err.Error(), chainIfs[k]+": plugin "+failing+": ") {
		t.Errorf("error %q does not name the interface and plugin", err)
	}
	if CodeOf(err) != code {
		t.Errorf("CodeOf = %d, want the delegate's %d", CodeOf(err), code)
	}

	last := k // the last chain that ran
	if h.parallel {
		last = len(chainIfs) - 1
	}
	var wantAdd, wantDel []string
	for j := 0; j <= last; j++ {
		if j != k {
			wantAdd = append(wantAdd, expectCalls("ADD", false, j)...)
			continue
		}
		for i := 0; i <= at; i++ {
			wantAdd = append(wantAdd, "ADD "+chainPlugins[k][i]+"/"+chainIfs[k])
		}
	}
	for j := last; j >= 0; j-- {
		if j != k {
			wantDel = append(wantDel, expectCalls("DEL", true, j)...)
			continue
		}
		for i := at; i >= 0; i-- {
			wantDel = append(wantDel, "DEL "+chainPlugins[k][i]+"/"+chainIfs[k])
		}
	}
	calls := h.fake.Calls()
	if len(calls) != len(wantAdd)+len(wantDel) {
		t.Fatalf("calls =\n%v\nwant ADDs\n%v\nthen DELs\n%v", delegatetest.Summary(calls), wantAdd, wantDel)
	}
	h.assertCalls("ADD calls", calls[:len(wantAdd)], wantAdd)
	// The rollback runs after every ADD, last chain first, always serially.
	if got := delegatetest.Summary(calls[len(wantAdd):]); !reflect.DeepEqual(got, wantDel) {
		t.Errorf("rollback calls =\n%v\nwant\n%v", got, wantDel)
	}
	// Rollback DELs carry each chain's own result (the partial one for
	// chain k).
	for _, c := range calls[len(wantAdd):] {
		if c.NetNS != h.netns {
			t.Errorf("%s: CNI_NETNS = %q", c, c.NetNS)
		}
		kc := chainIndex(c.IfName)
		switch {
		case kc == k && at == 0:
			if c.HasPrevResult() {
				t.Errorf("%s: prevResult %s, but no plugin of the chain succeeded", c, c.Conf["prevResult"])
			}
		case kc == k:
			if got := delegatetest.IPOf(c.PrevResult(t)); got != delegatetest.DefaultIP(chainPlugins[k][0], c.IfName) {
				t.Errorf("%s: prevResult IP %s, want the partial result", c, got)
			}
		default:
			prev := c.PrevResult(t)
			if got := delegatetest.IPOf(prev); got != delegatetest.DefaultIP(chainPlugins[kc][1], c.IfName) || !reflect.DeepEqual(names(prev), []string{c.IfName}) {
				t.Errorf("%s: prevResult %s, want the chain's own result", c, c.Conf["prevResult"])
			}
		}
	}
	h.assertNoState()
}

func TestAddSeveralFailuresInParallel(t *testing.T) {
	h := newHarnessMode(t, true)
	h.fake.FailOn("gamma2", "ADD", "eth2", 11)
	h.fake.FailOn("alpha", "ADD", "eth0", 7)
	err := h.add(h.args(""))
	if err == nil {
		t.Fatal("ADD succeeded")
	}
	// Failures come back in file order: eth0's code wins.
	if CodeOf(err) != 7 || !strings.HasPrefix(err.Error(), "eth0: plugin alpha: ") || !strings.Contains(err.Error(), "eth2: plugin gamma2: ") {
		t.Errorf("error = %q (code %d), want eth0's then eth2's failure", err, CodeOf(err))
	}
	dels := delegatetest.Summary(h.fake.CallsOf("DEL"))
	want := []string{"DEL gamma2/eth2", "DEL gamma/eth2", "DEL beta2/eth1", "DEL beta/eth1", "DEL alpha/eth0"}
	if !reflect.DeepEqual(dels, want) {
		t.Errorf("rollback = %v, want %v", dels, want)
	}
	h.assertNoState()
}

func TestAddNotFoundRollsBack(t *testing.T) {
	h := newHarness(t)
	h.fake.NotFound("beta2")
	err := h.add(h.args(""))
	if err == nil {
		t.Fatal("ADD succeeded")
	}
	var nf *delegate.NotFoundError
	if !errors.As(err, &nf) || CodeOf(err) != types.ErrInvalidNetworkConfig {
		t.Errorf("error = %v (code %d), want a NotFoundError with code 7", err, CodeOf(err))
	}
	if !strings.Contains(err.Error(), "eth1: plugin beta2") {
		t.Errorf("error %q does not name the interface and plugin", err)
	}
	want := append(expectCalls("ADD", false, 0), "ADD beta/eth1", "DEL beta/eth1")
	want = append(want, expectCalls("DEL", true, 0)...)
	if got := delegatetest.Summary(h.fake.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v (beta2 never ran, so it gets no DEL)", got, want)
	}
	h.assertNoState()
}

// failedRollback makes an ADD whose chain eth2 fails and whose rollback
// cannot release eth1.
func failedRollback(t *testing.T, h *harness) {
	t.Helper()
	h.fake.FailOn("gamma", "ADD", "eth2", 7)
	h.fake.FailOn("beta2", "DEL", "eth1", 11)
	err := h.add(h.args("K=V"))
	if err == nil {
		t.Fatal("ADD succeeded")
	}
	if !strings.Contains(err.Error(), "rollback") || !strings.Contains(err.Error(), "eth1: plugin beta2") {
		t.Errorf("error %q does not report the rollback failure", err)
	}
	if CodeOf(err) != 7 {
		t.Errorf("CodeOf = %d, want the ADD failure's 7", CodeOf(err))
	}
	// The rollback goes on past eth1's failure.
	want := append(expectCalls("ADD", false, 0, 1), "ADD gamma/eth2", "DEL gamma/eth2")
	want = append(want, expectCalls("DEL", true, 1, 0)...)
	if got := delegatetest.Summary(h.fake.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	c, err := h.store.LoadContainer(testID)
	if err != nil {
		t.Fatalf("container state gone after a failed rollback: %v", err)
	}
	if c.Complete {
		t.Error("state marked complete after a failed ADD")
	}
	for _, ifname := range []string{"eth0", "eth2"} {
		if exists(h.store.InterfacePath(testID, ifname)) {
			t.Errorf("%s was released but its record is left", ifname)
		}
	}
	if _, err := h.store.LoadInterface(testID, "eth1"); err != nil {
		t.Errorf("eth1's record gone though its release failed: %v", err)
	}
	h.fake.ClearFailures()
	h.fake.Reset()
}

func TestAddFailedRollbackThenAddReleasesFirst(t *testing.T) {
	h := newHarness(t)
	failedRollback(t, h)

	// BUG: since commit 8af5141 Plugin.addChains (mux/add.go) no longer
	// records a chain's result when its ADD succeeds: Plugin.complete
	// records all results only after every chain succeeded. eth1's ADD
	// succeeded and its rollback DEL failed, so its record is all that is
	// left to release it with, and it has no result: the later DEL of this
	// 0.4.0 chain runs without prevResult (same after a crash between the
	// chains' ADDs and complete).
	if rec, err := h.store.LoadInterface(testID, "eth1"); err != nil || len(rec.Result) == 0 {
		t.Errorf("eth1's record after its failed release has no result (err %v)", err)
	}

	h.mustAdd(h.args(""))
	calls := h.fake.Calls()
	want := append(expectCalls("DEL", true, 1), expectCalls("ADD", false, 0, 1, 2)...)
	if !reflect.DeepEqual(delegatetest.Summary(calls), want) {
		t.Fatalf("calls = %v, want %v (release eth1 first, then ADD)", delegatetest.Summary(calls), want)
	}
	for _, c := range calls[:2] {
		// Released with what the failed ADD recorded: its CNI_ARGS and
		// eth1's result (a 0.4.0 chain, so DEL gets a prevResult).
		if c.Args != "K=V" || c.NetNS != h.netns {
			t.Errorf("%s: args/netns = %q/%q, want the recorded K=V/%s", c, c.Args, c.NetNS, h.netns)
		}
		// BUG: (same as above) no prevResult.
		if got := delegatetest.IPOf(c.PrevResult(t)); got != delegatetest.DefaultIP("beta2", "eth1") {
			t.Errorf("%s: prevResult IP %q, want eth1's stored result", c, got)
		}
	}
	c, err := h.store.LoadContainer(testID)
	if err != nil || !c.Complete {
		t.Errorf("state after the new ADD = %+v, %v", c, err)
	}
}

func TestAddAgainReleasesStaleState(t *testing.T) {
	// A second ADD for the same container whose recorded links are not in
	// the namespace (a plain file here, which netlink cannot enter): the
	// old attachment is released and the ADD starts clean.
	for _, recreated := range []bool{false, true} {
		t.Run(fmt.Sprintf("recreated=%v", recreated), func(t *testing.T) {
			h := newHarness(t)
			h.mustAdd(h.args(""))
			h.fake.Reset()
			oldNetNS := h.netns
			if recreated {
				h.netns = h.newNetNS("netns-b")
			}
			h.mustAdd(h.args(""))
			calls := h.fake.Calls()
			want := append(expectCalls("DEL", true, 2, 1, 0), expectCalls("ADD", false, 0, 1, 2)...)
			if !reflect.DeepEqual(delegatetest.Summary(calls), want) {
				t.Fatalf("calls = %v, want %v", delegatetest.Summary(calls), want)
			}
			for _, c := range calls[:6] {
				// A recreated namespace: the old links went with the old
				// one, and nothing in the new one may be touched.
				wantNS := oldNetNS
				if recreated {
					wantNS = ""
				}
				if c.NetNS != wantNS {
					t.Errorf("%s: CNI_NETNS = %q, want %q", c, c.NetNS, wantNS)
				}
				if !c.HasPrevResult() {
					t.Errorf("%s: released without its stored result", c)
				}
			}
			c, err := h.store.LoadContainer(testID)
			if err != nil || !c.Complete || c.NetNS != h.netns {
				t.Errorf("state = %+v, %v", c, err)
			}
		})
	}
}

func TestDelUsesStoredConfig(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args("A=1"))
	h.fake.Reset()
	if err := os.Remove(h.attach); err != nil {
		t.Fatal(err)
	}
	if err := h.del(h.args("")); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	calls := h.fake.Calls()
	if want := expectCalls("DEL", true, 2, 1, 0); !reflect.DeepEqual(delegatetest.Summary(calls), want) {
		t.Fatalf("calls = %v, want %v", delegatetest.Summary(calls), want)
	}
	for _, c := range calls {
		k := map[string]int{"eth0": 0, "eth1": 1, "eth2": 2}[c.IfName]
		if c.NetNS != h.netns || c.ContainerID != testID || c.Args != "A=1" {
			t.Errorf("%s: env = %+v, want the netns and the ADD's CNI_ARGS", c, c)
		}
		if got := delegatetest.IPOf(c.PrevResult(t)); got != delegatetest.DefaultIP(chainPlugins[k][1], c.IfName) {
			t.Errorf("%s: prevResult IP %s, want the chain's stored result", c, got)
		}
	}
	h.assertNoState()

	// DEL again: no state, and no attachment file to fall back on.
	h.fake.Reset()
	h.write("multi.yaml", multiYAML)
	if err := h.del(h.args("")); err != nil {
		t.Errorf("second DEL: %v", err)
	}
	h.assertNoState()
}

func TestDelTwice(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args(""))
	for i := 0; i < 2; i++ {
		h.fake.Reset()
		if err := h.del(h.args("")); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
		if want := expectCalls("DEL", true, 2, 1, 0); !reflect.DeepEqual(delegatetest.Summary(h.fake.Calls()), want) {
			t.Errorf("DEL #%d calls = %v, want %v", i+1, delegatetest.Summary(h.fake.Calls()), want)
		}
		h.assertNoState()
	}
}

func TestDelWithoutStateAndAttachmentFile(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args(""))
	if err := h.del(h.args("")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(h.attach); err != nil {
		t.Fatal(err)
	}
	h.fake.Reset()
	err := h.del(h.args(""))
	// BUG: Del (mux/del.go, delWithoutState) fails a repeated DEL once
	// the attachment file is gone, although the container has no state
	// (nicmux records before it attaches anything, so nothing is held).
	// The spec asks DEL to succeed when resources are already gone;
	// runtimes retry a failing DEL indefinitely.
	if err != nil {
		t.Errorf("repeated DEL with no state and no attachment file: %v", err)
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls with nothing to release", n)
	}
}

func TestDelWithoutStateFallsBack(t *testing.T) {
	h := newHarness(t)
	if err := h.del(h.args("X=1")); err != nil {
		t.Fatal(err)
	}
	calls := h.fake.Calls()
	if want := expectCalls("DEL", true, 2, 1, 0); !reflect.DeepEqual(delegatetest.Summary(calls), want) {
		t.Fatalf("calls = %v, want %v", delegatetest.Summary(calls), want)
	}
	for _, c := range calls {
		if c.HasPrevResult() {
			t.Errorf("%s: prevResult without state: %s", c, c.Conf["prevResult"])
		}
		if c.NetNS != h.netns || c.Args != "X=1" {
			t.Errorf("%s: env = %+v", c, c)
		}
	}
	h.assertNoState()
}

func TestDelWithoutStateReportsAllFailures(t *testing.T) {
	h := newHarness(t)
	h.fake.FailOn("gamma2", "DEL", "eth2", 11)
	h.fake.FailOn("alpha", "DEL", "eth0", 5)
	err := h.del(h.args(""))
	if err == nil {
		t.Fatal("DEL succeeded")
	}
	if want := expectCalls("DEL", true, 2, 1, 0); !reflect.DeepEqual(delegatetest.Summary(h.fake.Calls()), want) {
		t.Errorf("calls = %v, want %v (going on past failures)", delegatetest.Summary(h.fake.Calls()), want)
	}
	for _, s := range []string{"eth2: plugin gamma2", "eth0: plugin alpha"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if CodeOf(err) != 11 {
		t.Errorf("CodeOf = %d, want the first failure's 11", CodeOf(err))
	}
}

func TestDelFailureKeepsState(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args(""))
	h.fake.Reset()
	h.fake.FailOn("beta", "DEL", "eth1", 11)
	err := h.del(h.args(""))
	if err == nil || CodeOf(err) != 11 || !strings.Contains(err.Error(), "eth1: plugin beta") {
		t.Fatalf("DEL error = %v (code %d)", err, CodeOf(err))
	}
	if want := expectCalls("DEL", true, 2, 1, 0); !reflect.DeepEqual(delegatetest.Summary(h.fake.Calls()), want) {
		t.Errorf("calls = %v, want %v", delegatetest.Summary(h.fake.Calls()), want)
	}
	// Only eth1 is left to release.
	for ifname, want := range map[string]bool{"eth0": false, "eth1": true, "eth2": false} {
		if got := exists(h.store.InterfacePath(testID, ifname)); got != want {
			t.Errorf("%s record exists = %v, want %v", ifname, got, want)
		}
	}
	if !exists(h.containerDir()) || !exists(h.lockFile()) {
		t.Error("state removed though eth1 was not released")
	}
	h.fake.ClearFailures()
	h.fake.Reset()
	if err := h.del(h.args("")); err != nil {
		t.Fatal(err)
	}
	if want := expectCalls("DEL", true, 1); !reflect.DeepEqual(delegatetest.Summary(h.fake.Calls()), want) {
		t.Errorf("retry calls = %v, want %v", delegatetest.Summary(h.fake.Calls()), want)
	}
	h.assertNoState()
}

func TestDelInAnotherNetNS(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args(""))
	h.fake.Reset()
	h.netns = h.newNetNS("netns-b")
	if err := h.del(h.args("")); err != nil {
		t.Fatal(err)
	}
	for _, c := range h.fake.Calls() {
		if c.NetNS != "" {
			t.Errorf("%s: CNI_NETNS = %q, want empty (not the namespace ADD attached)", c, c.NetNS)
		}
	}
	h.assertNoState()
}

func TestLockTimeout(t *testing.T) {
	h := newHarness(t)
	h.p.LockTimeout = 100 * time.Millisecond
	unlock, err := h.store.Lock(context.Background(), testID)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock(false)
	for name, verb := range map[string]func(context.Context, *skel.CmdArgs) error{
		"ADD": h.p.Add, "DEL": h.p.Del, "CHECK": h.p.Check,
	} {
		start := time.Now()
		err := verb(context.Background(), h.args(""))
		if err == nil {
			t.Errorf("%s succeeded while the lock is held", name)
			continue
		}
		if !errors.Is(err, state.ErrLockTimeout) || CodeOf(err) != types.ErrTryAgainLater {
			t.Errorf("%s: error = %v (code %d), want a lock timeout with code 11", name, err, CodeOf(err))
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s waited %v", name, d)
		}
		var te *types.Error
		if cni := ToCNIError(err); !errors.As(cni, &te) || te.Code != 11 {
			t.Errorf("%s: ToCNIError = %v", name, cni)
		}
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls while the lock is held", n)
	}
	if exists(h.containerDir()) {
		t.Error("state written while the lock is held")
	}
}

func TestAttachmentSet(t *testing.T) {
	h := newHarness(t)
	const args = "IgnoreUnknown=true;NICMUX_ATTACHMENTS=storage"
	h.mustAdd(h.args(args))
	calls := h.fake.Calls()
	if want := []string{"ADD sigma/eth0", "ADD tau/stor0"}; !reflect.DeepEqual(delegatetest.Summary(calls), want) {
		t.Fatalf("calls = %v, want %v (storage.yaml)", delegatetest.Summary(calls), want)
	}
	for _, c := range calls {
		if c.Args != args {
			t.Errorf("%s: CNI_ARGS = %q, want %q verbatim", c, c.Args, args)
		}
	}
	if calls[0].Str("name") != "multi-eth0" || calls[1].Str("name") != "san" {
		t.Errorf("network names = %s, %s", calls[0].Str("name"), calls[1].Str("name"))
	}
	c, err := h.store.LoadContainer(testID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Set != "storage" || c.AttachmentFile != filepath.Join(h.dir, "storage.yaml") || !reflect.DeepEqual(c.Interfaces, []string{"eth0", "stor0"}) {
		t.Errorf("container record = %+v", c)
	}
	merged := delegatetest.DecodeResult(t, h.stdout.Bytes())
	if !reflect.DeepEqual(names(merged), []string{"eth0", "stor0"}) {
		t.Errorf("merged interfaces = %v", names(merged))
	}

	h.fake.Reset()
	if err := h.del(h.args("")); err != nil {
		t.Fatal(err)
	}
	calls = h.fake.Calls()
	if want := []string{"DEL tau/stor0", "DEL sigma/eth0"}; !reflect.DeepEqual(delegatetest.Summary(calls), want) {
		t.Fatalf("DEL calls = %v, want %v (the recorded set's chains)", delegatetest.Summary(calls), want)
	}
	for _, c := range calls {
		if c.Args != args {
			t.Errorf("%s: CNI_ARGS = %q, want the recorded %q", c, c.Args, args)
		}
	}
	h.assertNoState()
}

func TestAttachmentSetUnknown(t *testing.T) {
	h := newHarness(t)
	err := h.add(h.args("NICMUX_ATTACHMENTS=nosuch"))
	if err == nil || CodeOf(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("error = %v (code %d), want code 7 naming the set", err, CodeOf(err))
	}
	err = h.add(h.args("NICMUX_ATTACHMENTS=../etc/passwd"))
	if err == nil || CodeOf(err) != types.ErrInvalidEnvironmentVariables {
		t.Errorf("error = %v (code %d), want code 4", err, CodeOf(err))
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls", n)
	}
	h.assertNoState()
}

func TestAddBadInput(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name string
		mod  func(a *skel.CmdArgs)
		code uint
	}{
		{"missing netns", func(a *skel.CmdArgs) { a.Netns = filepath.Join(h.dir, "nonexistent") }, types.ErrInvalidEnvironmentVariables},
		{"empty netns", func(a *skel.CmdArgs) { a.Netns = "" }, types.ErrInvalidEnvironmentVariables},
		{"bad netconf", func(a *skel.CmdArgs) { a.StdinData = []byte(`{"cniVersion":`) }, types.ErrDecodingFailure},
		{"unsupported version", func(a *skel.CmdArgs) {
			a.StdinData = bytes.Replace(a.StdinData, []byte(`"1.0.0"`), []byte(`"0.2.0"`), 1)
		}, types.ErrIncompatibleCNIVersion},
		{"missing attachment file", func(a *skel.CmdArgs) {
			a.StdinData = bytes.Replace(a.StdinData, []byte("multi.yaml"), []byte("gone.yaml"), 1)
		}, types.ErrInvalidNetworkConfig},
	} {
		a := h.args("")
		tc.mod(a)
		err := h.add(a)
		if err == nil || CodeOf(err) != tc.code {
			t.Errorf("%s: error = %v (code %d), want code %d", tc.name, err, CodeOf(err), tc.code)
		}
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls", n)
	}
	h.assertNoState()
}

func TestAddWithoutCNIVersion(t *testing.T) {
	// A netconf without cniVersion passes ParseNetConf. With every chain
	// giving its own version, the chains run; the merged result must still
	// be one nicmux supports (0.1.0/0.2.0 have no interface list).
	h := newHarness(t)
	h.write("multi.yaml", strings.ReplaceAll(strings.ReplaceAll(multiYAML, "  - ifname: eth0\n", "  - ifname: eth0\n    cniVersion: 1.0.0\n"),
		"  - ifname: eth2\n", "  - ifname: eth2\n    cniVersion: 1.0.0\n"))
	a := h.args("")
	a.StdinData = bytes.Replace(a.StdinData, []byte(`"cniVersion":"1.0.0",`), nil, 1)
	err := h.add(a)
	if err != nil {
		// Refusing the configuration is fine too, but before any delegate
		// runs.
		if n := len(h.fake.CallsOf("ADD")); n != 0 {
			t.Errorf("ADD failed (%v) after %d delegate ADDs", err, n)
		}
		return
	}
	var hdr struct {
		CNIVersion string            `json:"cniVersion"`
		Interfaces []json.RawMessage `json:"interfaces"`
	}
	if err := json.Unmarshal(h.stdout.Bytes(), &hdr); err != nil {
		t.Fatal(err)
	}
	// BUG: Plugin.complete (mux/add.go) passes the netconf's empty cniVersion to
	// Merge, whose GetAsVersion("") converts to 0.1.0: the runtime gets
	// {"cniVersion":"0.1.0","ip4":...} with no interfaces, the format
	// conf.SupportedVersions excludes because it cannot express several
	// interfaces. conf.NetConf.validate accepts an empty cniVersion.
	if !slices.Contains(conf.SupportedVersions(), hdr.CNIVersion) || len(hdr.Interfaces) != 3 {
		t.Errorf("result without a netconf cniVersion: %s", h.stdout)
	}
}

func TestCheckNoState(t *testing.T) {
	h := newHarness(t)
	err := h.p.Check(context.Background(), h.args(""))
	if err == nil || CodeOf(err) != types.ErrUnknownContainer {
		t.Errorf("CHECK without state: %v (code %d), want code 3", err, CodeOf(err))
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls", n)
	}
}

func TestCheckIncompleteAdd(t *testing.T) {
	h := newHarness(t)
	failedRollback(t, h)
	err := h.p.Check(context.Background(), h.args(""))
	if err == nil || CodeOf(err) != types.ErrUnknownContainer || !strings.Contains(err.Error(), "did not complete") {
		t.Errorf("CHECK after an incomplete ADD: %v (code %d), want code 3", err, CodeOf(err))
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls", n)
	}
}

func TestCheckNetNSMismatch(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args(""))
	h.fake.Reset()
	for _, netns := range []string{h.newNetNS("netns-b"), filepath.Join(h.dir, "gone")} {
		a := h.args("")
		a.Netns = netns
		err := h.p.Check(context.Background(), a)
		if err == nil || !strings.Contains(err.Error(), "not the namespace ADD attached") {
			t.Errorf("CHECK in %s: %v, want a namespace mismatch", netns, err)
			continue
		}
		for _, ifname := range chainIfs {
			if !strings.Contains(err.Error(), ifname) {
				t.Errorf("error %q does not name %s", err, ifname)
			}
		}
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls", n)
	}
	// CHECK leaves the state alone.
	if c, err := h.store.LoadContainer(testID); err != nil || !c.Complete {
		t.Errorf("state after CHECK: %+v, %v", c, err)
	}
}

func TestFuncsConvertErrors(t *testing.T) {
	h := newHarness(t)
	h.fake.FailOn("beta", "ADD", "eth1", 11)
	err := h.p.Funcs().Add(h.args(""))
	var te *types.Error
	if !errors.As(err, &te) || te.Code != 11 || !strings.HasPrefix(te.Msg, "eth1: plugin beta: ") {
		t.Errorf("Funcs().Add error = %#v", err)
	}
	if err := h.p.Funcs().Check(h.args("")); !errors.As(err, &te) || te.Code != types.ErrUnknownContainer {
		t.Errorf("Funcs().Check error = %#v", err)
	}
}

// The merged result of an ADD is also a valid 1.0.0 types100 result.
func TestAddStdoutParses(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args(""))
	r, err := types100.NewResult(h.stdout.Bytes())
	if err != nil {
		t.Fatalf("stdout does not parse: %v", err)
	}
	if r.Version() != "1.0.0" {
		t.Errorf("version = %s", r.Version())
	}
}

func TestDelParallel(t *testing.T) {
	h := newHarnessMode(t, true)
	h.mustAdd(h.args(""))
	h.fake.Reset()
	if err := h.del(h.args("")); err != nil {
		t.Fatal(err)
	}
	// Interfaces may be released at the same time; each chain's plugins
	// go last first.
	h.assertCalls("DEL calls", h.fake.Calls(), expectCalls("DEL", true, 2, 1, 0))
	for _, c := range h.fake.Calls() {
		k := chainIndex(c.IfName)
		if got := delegatetest.IPOf(c.PrevResult(t)); got != delegatetest.DefaultIP(chainPlugins[k][1], c.IfName) {
			t.Errorf("%s: prevResult IP %s, want its own chain's stored result", c, got)
		}
	}
	h.assertNoState()
}

func TestDelParallelFailureKeepsOnlyFailed(t *testing.T) {
	h := newHarnessMode(t, true)
	h.mustAdd(h.args(""))
	h.fake.Reset()
	h.fake.FailOn("alpha2", "DEL", "eth0", 11)
	h.fake.FailOn("gamma", "DEL", "eth2", 5)
	err := h.del(h.args(""))
	if err == nil {
		t.Fatal("DEL succeeded")
	}
	// Failures are reported last interface first, as a serial DEL would.
	if CodeOf(err) != 5 || !strings.HasPrefix(err.Error(), "eth2: plugin gamma: ") || !strings.Contains(err.Error(), "eth0: plugin alpha2: ") {
		t.Errorf("error = %q (code %d)", err, CodeOf(err))
	}
	h.assertCalls("DEL calls", h.fake.Calls(), expectCalls("DEL", true, 2, 1, 0))
	for ifname, want := range map[string]bool{"eth0": true, "eth1": false, "eth2": true} {
		if got := exists(h.store.InterfacePath(testID, ifname)); got != want {
			t.Errorf("%s record exists = %v, want %v", ifname, got, want)
		}
	}
}

// bridgeYAML has two chains on the same bridge and one on its own.
const bridgeYAML = `interfaces:
  - ifname: eth0
    plugins:
      - {type: bridge, bridge: br0}
      - {type: tune}
  - ifname: eth1
    plugins:
      - {type: macvlan, master: eth9}
  - ifname: eth2
    plugins:
      - {type: bridge, bridge: br0}
`

func TestAddParallelKeepsSharedBridgeSerial(t *testing.T) {
	h := newHarnessMode(t, true)
	h.write("multi.yaml", bridgeYAML)
	// bridge/eth0 waits until macvlan/eth1 has started: that only happens
	// if eth1 runs at the same time as eth0.
	eth1Started := make(chan struct{})
	var once sync.Once
	h.fake.SetHook(func(c delegatetest.Call) {
		switch c.String() {
		case "ADD macvlan/eth1":
			once.Do(func() { close(eth1Started) })
		case "ADD bridge/eth0":
			select {
			case <-eth1Started:
			case <-time.After(5 * time.Second):
			}
		}
	})
	start := time.Now()
	h.mustAdd(h.args(""))
	if d := time.Since(start); d >= 5*time.Second {
		t.Errorf("ADD took %v: eth1 did not run beside eth0", d)
	}
	got := delegatetest.Summary(h.fake.Calls())
	pos := func(s string) int { return slices.Index(got, s) }
	if pos("ADD macvlan/eth1") > pos("ADD tune/eth0") {
		t.Errorf("calls = %v: eth1 should run beside eth0", got)
	}
	if pos("ADD bridge/eth2") < pos("ADD tune/eth0") {
		t.Errorf("calls = %v: eth2 shares br0 with eth0 and must wait for it", got)
	}
	merged := delegatetest.DecodeResult(t, h.stdout.Bytes())
	if !reflect.DeepEqual(names(merged), chainIfs) {
		t.Errorf("merged interfaces = %v, want file order %v", names(merged), chainIfs)
	}
}

func TestAddParallelFailureStopsSharedBridgeGroup(t *testing.T) {
	h := newHarnessMode(t, true)
	h.write("multi.yaml", bridgeYAML)
	h.fake.FailOn("tune", "ADD", "eth0", 11)
	err := h.add(h.args(""))
	if err == nil || CodeOf(err) != 11 || !strings.HasPrefix(err.Error(), "eth0: plugin tune: ") {
		t.Fatalf("error = %v (code %d)", err, CodeOf(err))
	}
	adds := delegatetest.Summary(h.fake.CallsOf("ADD"))
	if slices.Contains(adds, "ADD bridge/eth2") {
		t.Errorf("ADD calls = %v: eth2 is in eth0's group and must not run after eth0 failed", adds)
	}
	if !slices.Contains(adds, "ADD macvlan/eth1") {
		t.Errorf("ADD calls = %v: eth1 is independent and runs", adds)
	}
	dels := delegatetest.Summary(h.fake.CallsOf("DEL"))
	if want := []string{"DEL macvlan/eth1", "DEL tune/eth0", "DEL bridge/eth0"}; !reflect.DeepEqual(dels, want) {
		t.Errorf("rollback = %v, want %v (eth2 never ran)", dels, want)
	}
	h.assertNoState()
}
