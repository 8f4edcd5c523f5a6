package mux

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/delegate/delegatetest"
)

// These tests hold DEL to its promise: it converges from whatever state is
// left (docs/verbs.md), releasing what can be released and ending with no
// record, and never pins a container with a record it cannot release.

func (h *harness) resultPath(ifname string) string {
	return filepath.Join(h.containerDir(), "if-"+ifname+".json")
}

func (h *harness) truncate(path string) {
	h.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
		h.t.Fatal(err)
	}
}

func TestDelConvergesWithoutAResult(t *testing.T) {
	for name, damage := range map[string]func(h *harness){
		"torn":    func(h *harness) { h.truncate(h.resultPath("eth1")) },
		"missing": func(h *harness) { _ = os.Remove(h.resultPath("eth1")) },
		"empty":   func(h *harness) { _ = os.WriteFile(h.resultPath("eth1"), nil, 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.mustAdd(h.args("A=1"))
			damage(h)
			h.fake.Reset()
			if err := h.del(h.args("")); err != nil {
				t.Fatalf("DEL with eth1's result %s: %v", name, err)
			}
			calls := h.fake.Calls()
			if want := expectCalls("DEL", true, 2, 1, 0); !reflect.DeepEqual(delegatetest.Summary(calls), want) {
				t.Fatalf("calls = %v, want %v", delegatetest.Summary(calls), want)
			}
			for _, c := range calls {
				// From the plan: its arguments, and a prevResult only
				// where the result is known.
				if c.Args != "A=1" || c.NetNS != h.netns {
					t.Errorf("%s: args/netns %q/%q", c, c.Args, c.NetNS)
				}
				if c.HasPrevResult() != (c.IfName != "eth1") {
					t.Errorf("%s: prevResult %v", c, c.HasPrevResult())
				}
			}
			h.assertNoState()
		})
	}
}

func TestDelConvergesWithoutAPlan(t *testing.T) {
	for name, damage := range map[string]func(h *harness){
		"corrupt": func(h *harness) { h.truncate(filepath.Join(h.containerDir(), "container.json")) },
		"missing": func(h *harness) { _ = os.Remove(filepath.Join(h.containerDir(), "container.json")) },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.mustAdd(h.args("A=1"))
			// eth2's result is lost too: its chain comes from the file.
			_ = os.Remove(h.resultPath("eth2"))
			damage(h)
			h.fake.Reset()
			if err := h.del(h.args("")); err != nil {
				t.Fatalf("DEL with the plan %s: %v", name, err)
			}
			got := delegatetest.Summary(h.fake.Calls())
			for _, want := range expectCalls("DEL", true, 0, 1, 2) {
				if !strings.Contains(strings.Join(got, ","), want) {
					t.Errorf("calls = %v, want %s among them", got, want)
				}
			}
			for _, c := range h.fake.Calls() {
				// The result records carry the arguments; eth2 from the
				// file has none recorded.
				if c.IfName != "eth2" && c.Args != "A=1" {
					t.Errorf("%s: CNI_ARGS %q, want the recorded A=1", c, c.Args)
				}
			}
			h.assertNoState()
		})
	}
}

func TestDelRemovesAFolderWithoutPlan(t *testing.T) {
	h := newHarness(t)
	if err := os.MkdirAll(h.containerDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.containerDir(), ".container.json.tmp-x"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.del(h.args("")); err != nil {
		t.Fatal(err)
	}
	h.assertNoState()
}

// TestDelFallsBackToTheFile: a chain whose recorded configuration its own
// plugin rejects (the "stuck record" of issue 11) is released with the
// attachment file's chain once an operator fixed it there.
func TestDelFallsBackToTheFile(t *testing.T) {
	h := newHarness(t)
	broken := strings.Replace(multiYAML, "{type: beta2}", "{type: beta2, broken: true}", 1)
	h.write("multi.yaml", broken)
	h.mustAdd(h.args(""))
	h.fake.FailOn("beta2", "DEL", "eth1", 999)

	// The file still holds the broken chain: DEL fails, eth1 is kept.
	err := h.del(h.args(""))
	if err == nil || !strings.Contains(err.Error(), "eth1: plugin beta2") {
		t.Fatalf("DEL with the recorded chain rejected: %v", err)
	}
	if !h.pending("eth1") || h.pending("eth0") {
		t.Errorf("eth1 pending %v, eth0 pending %v: want only eth1", h.pending("eth1"), h.pending("eth0"))
	}

	// Fixed in the file: beta2 takes the new configuration.
	h.write("multi.yaml", multiYAML)
	h.fake.Reset()
	h.fake.SetHook(func(c delegatetest.Call) {
		if c.Plugin == "beta2" && !strings.Contains(string(c.Stdin), "broken") {
			h.fake.ClearFailures()
		}
	})
	if err := h.del(h.args("")); err != nil {
		t.Fatalf("DEL after the file was fixed: %v", err)
	}
	got := delegatetest.Summary(h.fake.Calls())
	if want := []string{"DEL beta2/eth1", "DEL beta2/eth1", "DEL beta/eth1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v (recorded, stopping at beta2, then the file's)", got, want)
	}
	h.assertNoState()
}

// TestDelAbandonsWhatNothingCanRelease: a plugin binary gone from CNI_PATH
// cannot release anything; its interface is reported and dropped rather
// than pinning the container.
func TestDelAbandonsWhatNothingCanRelease(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args(""))
	h.fake.Reset()
	h.fake.NotFound("beta2")
	h.fake.NotFound("beta")
	if err := h.del(h.args("")); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	h.assertNoState()
	if !strings.Contains(h.stderr.String(), "abandoned") || !strings.Contains(h.stderr.String(), "eth1") {
		t.Errorf("no report of the abandoned interface:\n%s", h.stderr)
	}
}

func TestCheckNamesALostResult(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args(""))
	_ = os.Remove(h.resultPath("eth1"))
	h.fake.Reset()
	err := h.p.Check(t.Context(), h.args(""))
	if err == nil || !strings.Contains(err.Error(), "eth1: its result record was lost") {
		t.Fatalf("CHECK with eth1's result lost: %v", err)
	}
	for _, c := range h.fake.Calls() {
		if c.IfName == "eth1" {
			t.Errorf("%s: checked without its result", c)
		}
	}
}

func TestAddRefusesTheHostNamespace(t *testing.T) {
	h := newHarness(t)
	a := h.args("")
	a.Netns = "/proc/self/ns/net"
	err := h.add(a)
	if err == nil || codeOf(err) != 4 || !strings.Contains(err.Error(), "nicmux's own network namespace") {
		t.Fatalf("ADD into the host's namespace: %v (code %d)", err, codeOf(err))
	}
	if h.stdout.Len() != 0 || len(h.fake.Calls()) != 0 {
		t.Errorf("stdout %q, %d delegate calls", h.stdout, len(h.fake.Calls()))
	}
	h.assertNoState()
}

// A record written before nicmux refused names a namespace has of its own
// (conf.NamespaceOwn) is released with no namespace for such an
// interface: its DEL would delete the namespace's own link, or fail on it
// for ever. The other interfaces are released in theirs, and DEL
// converges.
func TestDelConvergesWithANamespaceOwnName(t *testing.T) {
	for _, name := range []string{"lo", "net%d", "gre0"} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.mustAdd(h.args(""))
			plan := filepath.Join(h.containerDir(), "container.json")
			b, err := os.ReadFile(plan)
			if err != nil {
				t.Fatal(err)
			}
			b = []byte(strings.ReplaceAll(string(b), `"ifname":"eth2"`, `"ifname":"`+name+`"`))
			if err := os.WriteFile(plan, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_ = os.Remove(h.resultPath("eth2"))
			h.fake.Reset()
			if err := h.del(h.args("")); err != nil {
				t.Fatalf("DEL of a record with an interface named %q: %v", name, err)
			}
			calls := h.fake.Calls()
			if len(calls) != 6 {
				t.Errorf("calls = %v, want each chain's two plugins", delegatetest.Summary(calls))
			}
			for _, c := range calls {
				want := h.netns
				if c.IfName == name {
					want = ""
				}
				if c.NetNS != want {
					t.Errorf("%s: CNI_NETNS %q, want %q", c, c.NetNS, want)
				}
			}
			h.assertNoState()
		})
	}
}
