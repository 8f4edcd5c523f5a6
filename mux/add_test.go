package mux

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
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
	"github.com/nicmux/nicmux/delegate/delegatetest"
)

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
		c := h.mustRecord()
		if !c.Complete || !reflect.DeepEqual(c.IfNames(), chainIfs) || c.Plan.NetNS != h.netns || c.Plan.Set != "" ||
			c.Plan.AttachmentFile != h.attach || c.Plan.IfName != "eth0" || c.Plan.ListName != "multi" || c.Plan.CNIVersion != "1.0.0" {
			t.Errorf("container record = %+v", c.Plan)
		}
		for k, ifname := range chainIfs {
			if !exists(filepath.Join(h.containerDir(), "if-"+ifname+".json")) {
				t.Errorf("no record file for %s", ifname)
			}
			rec := c.Interface(ifname)
			if rec == nil {
				t.Errorf("%s: not in the record", ifname)
				continue
			}
			if len(rec.Result) == 0 || rec.CNIVersion != wantVer[ifname] || rec.CNIArgs != "IgnoreUnknown=true" || rec.Released {
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
	if codeOf(err) != code {
		t.Errorf("codeOf = %d, want the delegate's %d", codeOf(err), code)
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

// TestAddOutcomeAfterRollback: the outcome line of a failed ADD whose
// rollback released everything says what ADD did with each interface (the
// one that failed: failed), and that the rollback succeeded.
func TestAddOutcomeAfterRollback(t *testing.T) {
	h := newHarness(t)
	h.fake.FailOn("beta2", "ADD", "eth1", 11)
	if err := h.add(h.args("")); err == nil {
		t.Fatal("ADD succeeded")
	}
	line := h.stderr.String()
	for _, re := range []string{`interfaces\.eth0="ok [0-9.]+[µm]?s"`, `interfaces\.eth1="failed [0-9.]+[µm]?s"`, `interfaces\.eth2="not run"`, `rollback=ok`} {
		if !regexp.MustCompile(re).MatchString(line) {
			t.Errorf("the outcome line lacks %s:\n%s", re, line)
		}
	}
	h.assertNoState()
}

// TestAddWithRefusedArgs: a delegate that refuses the runtime's CNI_ARGS
// (cnitool sends a job's without IgnoreUnknown) fails the ADD with its own
// words; the rollback, which replays them, converges; nothing is left, and
// a DEL with the same arguments succeeds.
func TestAddWithRefusedArgs(t *testing.T) {
	for _, args := range []string{"NICMUX_ATTACHMENTS=storage;JOB=web", "IgnoreUnknown=1;;NICMUX_ATTACHMENTS=storage;JOB=web"} {
		t.Run(args, func(t *testing.T) {
			h := newHarness(t)
			h.fake.RefuseArgs("tau")
			err := h.add(h.args(args))
			if err == nil || !strings.HasPrefix(err.Error(), "stor0: plugin tau: ARGS: ") || strings.Contains(err.Error(), "NICMUX") {
				t.Fatalf("ADD: %v, want tau's refusal of the runtime's arguments only", err)
			}
			if !strings.Contains(h.stderr.String(), "rollback=ok") {
				t.Errorf("the rollback did not converge:\n%s", h.stderr)
			}
			h.assertNoState()
			if err := h.del(h.args(args)); err != nil {
				t.Errorf("DEL: %v", err)
			}
			h.assertNoState()
		})
	}
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
	if codeOf(err) != 7 || !strings.HasPrefix(err.Error(), "eth0: plugin alpha: ") || !strings.Contains(err.Error(), "eth2: plugin gamma2: ") {
		t.Errorf("error = %q (code %d), want eth0's then eth2's failure", err, codeOf(err))
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
	if !errors.As(err, &nf) || codeOf(err) != types.ErrInvalidNetworkConfig {
		t.Errorf("error = %v (code %d), want a NotFoundError with code 7", err, codeOf(err))
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
	if codeOf(err) != 7 {
		t.Errorf("codeOf = %d, want the ADD failure's 7", codeOf(err))
	}
	// The rollback goes on past eth1's failure.
	// eth1's DEL stops at beta2, its first plugin to release (as libcni
	// does: beta still holds what beta2 needs for a retry); the rollback
	// goes on to eth0.
	want := append(expectCalls("ADD", false, 0, 1), "ADD gamma/eth2", "DEL gamma/eth2", "DEL beta2/eth1")
	want = append(want, expectCalls("DEL", true, 0)...)
	if got := delegatetest.Summary(h.fake.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	c, err := h.record()
	if err != nil {
		t.Fatalf("container state gone after a failed rollback: %v", err)
	}
	if c.Complete {
		t.Error("state marked complete after a failed ADD")
	}
	for _, ifname := range []string{"eth0", "eth2"} {
		if h.pending(ifname) {
			t.Errorf("%s was released but is still pending in the record", ifname)
		}
	}
	if !h.pending("eth1") {
		t.Errorf("eth1 not pending though its release failed")
	}
	h.fake.ClearFailures()
	h.fake.Reset()
}

func TestAddFailedRollbackThenAddReleasesFirst(t *testing.T) {
	h := newHarness(t)
	failedRollback(t, h)

	// eth1's ADD succeeded and its rollback DEL failed: its record is all
	// that is left to release it with, result included (a 0.4.0 chain's
	// DEL gets a prevResult).
	if rec, err := h.record(); err != nil || len(rec.Interface("eth1").Result) == 0 {
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
		if got := delegatetest.IPOf(c.PrevResult(t)); got != delegatetest.DefaultIP("beta2", "eth1") {
			t.Errorf("%s: prevResult IP %q, want eth1's stored result", c, got)
		}
	}
	if c, err := h.record(); err != nil || !c.Complete {
		t.Errorf("state after the new ADD = %+v, %v", c, err)
	}
}

func TestAddAgainReleasesStaleState(t *testing.T) {
	// A second ADD for the same container whose recorded links are not in
	// the namespace (a plain file here, which netlink cannot enter): the
	// old attachment is released and the ADD starts clean. Where it is
	// released depends on what became of the namespace it was attached in.
	held := func(ns string) bool { return strings.HasPrefix(ns, fmt.Sprintf("/proc/%d/fd/", os.Getpid())) }
	for _, tc := range []struct {
		name string
		move func(h *harness) // what happens to the namespace between the ADDs
		// wantNS says whether a DEL's CNI_NETNS is right, given the
		// namespace ADD attached first.
		wantNS func(ns, old string) bool
	}{
		{"same namespace", func(h *harness) {}, func(ns, old string) bool { return ns == old }},
		// Nomad's rebuild: its old links went with it, and nothing in the
		// new one may be touched.
		// (The new file is made while the old one lives: a file system
		// hands a freed inode out again, and files have no cookie.)
		{"recreated at its path", func(h *harness) {
			if err := os.Rename(h.newNetNS("netns-new"), h.netns); err != nil {
				h.t.Fatal(err)
			}
		}, func(ns, old string) bool { return ns == "" }},
		{"another path, the old one gone", func(h *harness) {
			old := h.netns
			h.netns = h.newNetNS("netns-b")
			if err := os.Remove(old); err != nil {
				h.t.Fatal(err)
			}
		}, func(ns, old string) bool { return ns == "" }},
		// The container still attached in its old namespace: released
		// there, held open, links and leases together.
		{"another path, the old one still there", func(h *harness) { h.netns = h.newNetNS("netns-b") },
			func(ns, old string) bool { return held(ns) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustAdd(h.args(""))
			h.fake.Reset()
			oldNetNS := h.netns
			tc.move(h)
			h.mustAdd(h.args(""))
			calls := h.fake.Calls()
			want := append(expectCalls("DEL", true, 2, 1, 0), expectCalls("ADD", false, 0, 1, 2)...)
			if !reflect.DeepEqual(delegatetest.Summary(calls), want) {
				t.Fatalf("calls = %v, want %v", delegatetest.Summary(calls), want)
			}
			for _, c := range calls[:6] {
				if !tc.wantNS(c.NetNS, oldNetNS) {
					t.Errorf("%s: CNI_NETNS = %q (attached in %s)", c, c.NetNS, oldNetNS)
				}
				if !c.HasPrevResult() {
					t.Errorf("%s: released without its stored result", c)
				}
			}
			if c, err := h.record(); err != nil || !c.Complete || c.Plan.NetNS != h.netns {
				t.Errorf("state = %+v, %v", c, err)
			}
		})
	}
}

func TestAttachmentSet(t *testing.T) {
	h := newHarness(t)
	// The set is nicmux's argument: the delegates get the runtime's.
	const args, delegated = "IgnoreUnknown=true;NICMUX_ATTACHMENTS=storage", "IgnoreUnknown=true"
	h.mustAdd(h.args(args))
	calls := h.fake.Calls()
	if want := []string{"ADD sigma/eth0", "ADD tau/stor0"}; !reflect.DeepEqual(delegatetest.Summary(calls), want) {
		t.Fatalf("calls = %v, want %v (storage.yaml)", delegatetest.Summary(calls), want)
	}
	for _, c := range calls {
		if c.Args != delegated {
			t.Errorf("%s: CNI_ARGS = %q, want %q", c, c.Args, delegated)
		}
	}
	if calls[0].Str("name") != "multi-eth0" || calls[1].Str("name") != "san" {
		t.Errorf("network names = %s, %s", calls[0].Str("name"), calls[1].Str("name"))
	}
	c := h.mustRecord()
	if c.Plan.Set != "storage" || c.Plan.AttachmentFile != filepath.Join(h.dir, "storage.yaml") || !reflect.DeepEqual(c.IfNames(), []string{"eth0", "stor0"}) {
		t.Errorf("container record = %+v", c.Plan)
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
		if c.Args != delegated {
			t.Errorf("%s: CNI_ARGS = %q, want the recorded %q", c, c.Args, delegated)
		}
	}
	h.assertNoState()
}

func TestAttachmentSetUnknown(t *testing.T) {
	h := newHarness(t)
	err := h.add(h.args("NICMUX_ATTACHMENTS=nosuch"))
	if err == nil || codeOf(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("error = %v (code %d), want code 7 naming the set", err, codeOf(err))
	}
	err = h.add(h.args("NICMUX_ATTACHMENTS=../etc/passwd"))
	if err == nil || codeOf(err) != types.ErrInvalidEnvironmentVariables {
		t.Errorf("error = %v (code %d), want code 4", err, codeOf(err))
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
		if err == nil || codeOf(err) != tc.code {
			t.Errorf("%s: error = %v (code %d), want code %d", tc.name, err, codeOf(err), tc.code)
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
	// A merged result must be at a version that can express several
	// interfaces (not 0.1.0, which GetAsVersion("") would give).
	if !slices.Contains(conf.SupportedVersions(), hdr.CNIVersion) || len(hdr.Interfaces) != 3 {
		t.Errorf("result without a netconf cniVersion: %s", h.stdout)
	}
}

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
	if err == nil || codeOf(err) != 11 || !strings.HasPrefix(err.Error(), "eth0: plugin tune: ") {
		t.Fatalf("error = %v (code %d)", err, codeOf(err))
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

// The namespace at CNI_NETNS replaced (code 11: a retry attaches the new
// one) or removed (code 4) while ADD runs, after eth1's first plugin ran:
// whatever the chains attached is released, every chain in the namespace
// the ADD started with (held open, named under /proc) and, when another
// is at the path now, there too; no state is left.
func TestAddNetNSChangedMidAdd(t *testing.T) {
	held := fmt.Sprintf("/proc/%d/fd/", os.Getpid())
	for _, tc := range []struct {
		name   string
		change func(h *harness)
		code   uint
		where  []string // the namespaces each chain's DEL gets, in order
	}{
		{"replaced", func(h *harness) {
			if err := os.Rename(h.newNetNS("netns-new"), h.netns); err != nil {
				h.t.Error(err)
			}
		}, types.ErrTryAgainLater, []string{"path", "held"}},
		{"removed", func(h *harness) {
			if err := os.Remove(h.netns); err != nil {
				h.t.Error(err)
			}
		}, types.ErrInvalidEnvironmentVariables, []string{"held"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var once sync.Once
			h.fake.SetHook(func(c delegatetest.Call) {
				if c.Command == "ADD" && c.Plugin == "beta" {
					once.Do(func() { tc.change(h) })
				}
			})
			err := h.add(h.args(""))
			var e *types.Error
			if !errors.As(toCNIError(err), &e) || e.Code != tc.code || !strings.Contains(e.Msg, "CNI_NETNS") {
				t.Fatalf("ADD = %v, want code %d naming CNI_NETNS", err, tc.code)
			}
			got := map[string][]string{}
			for _, c := range h.fake.CallsOf("DEL") {
				where := c.NetNS
				switch {
				case where == h.netns:
					where = "path"
				case strings.HasPrefix(where, held):
					where = "held"
				}
				got[c.Plugin] = append(got[c.Plugin], where)
			}
			for _, ps := range chainPlugins {
				for _, p := range ps {
					if !slices.Equal(got[p], tc.where) {
						t.Errorf("DEL of %s in %v, want %v", p, got[p], tc.where)
					}
				}
			}
			h.assertNoState()
		})
	}
}
