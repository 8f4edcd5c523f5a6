package mux

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/delegate/delegatetest"
)

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
	// The container has no state (nicmux records before it attaches
	// anything, so nothing is held): the spec asks DEL to succeed when
	// resources are already gone, and runtimes retry a failing DEL.
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
	// Going on past a failing interface; a chain's DEL stops at its first
	// failing plugin (gamma2), as libcni does.
	if want := append([]string{"DEL gamma2/eth2"}, expectCalls("DEL", true, 1, 0)...); !reflect.DeepEqual(delegatetest.Summary(h.fake.Calls()), want) {
		t.Errorf("calls = %v, want %v (going on past failures)", delegatetest.Summary(h.fake.Calls()), want)
	}
	for _, s := range []string{"eth2: plugin gamma2", "eth0: plugin alpha"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if codeOf(err) != 11 {
		t.Errorf("codeOf = %d, want the first failure's 11", codeOf(err))
	}
}

func TestDelFailureKeepsState(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args(""))
	h.fake.Reset()
	h.fake.FailOn("beta", "DEL", "eth1", 11)
	err := h.del(h.args(""))
	if err == nil || codeOf(err) != 11 || !strings.Contains(err.Error(), "eth1: plugin beta") {
		t.Fatalf("DEL error = %v (code %d)", err, codeOf(err))
	}
	if want := expectCalls("DEL", true, 2, 1, 0); !reflect.DeepEqual(delegatetest.Summary(h.fake.Calls()), want) {
		t.Errorf("calls = %v, want %v", delegatetest.Summary(h.fake.Calls()), want)
	}
	// Only eth1 is left to release.
	for ifname, want := range map[string]bool{"eth0": false, "eth1": true, "eth2": false} {
		if got := h.pending(ifname); got != want {
			t.Errorf("%s still to release = %v, want %v", ifname, got, want)
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
	if codeOf(err) != 5 || !strings.HasPrefix(err.Error(), "eth2: plugin gamma: ") || !strings.Contains(err.Error(), "eth0: plugin alpha2: ") {
		t.Errorf("error = %q (code %d)", err, codeOf(err))
	}
	// eth0's DEL stops at alpha2, its first failing plugin.
	h.assertCalls("DEL calls", h.fake.Calls(), append(expectCalls("DEL", true, 2, 1), "DEL alpha2/eth0"))
	for ifname, want := range map[string]bool{"eth0": true, "eth1": false, "eth2": true} {
		if got := h.pending(ifname); got != want {
			t.Errorf("%s still to release = %v, want %v", ifname, got, want)
		}
	}
}
