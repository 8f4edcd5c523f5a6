package mux

import (
	"context"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/delegate/delegatetest"
)

// aheadExec is the fake runner with delegate.Starter: it logs when each
// plugin (as "plugin/ifname") is started, fed and aborted, and checks that
// no ADD delegate is fed before nicmux's plan is on disk.
type aheadExec struct {
	*delegatetest.Exec
	h *harness

	mu     sync.Mutex
	events []string
	early  []string // ADD delegates fed before the plan was complete
}

func (a *aheadExec) log(e string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
}

func (a *aheadExec) StartPlugin(_ context.Context, path string, environ []string) (delegate.Started, error) {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	p := &aheadProc{a: a, path: path, environ: environ, name: filepath.Base(path) + "/" + env["CNI_IFNAME"], verb: env["CNI_COMMAND"]}
	a.log("start " + p.name)
	return p, nil
}

type aheadProc struct {
	a          *aheadExec
	path, name string
	verb       string
	environ    []string
}

func (p *aheadProc) Feed(ctx context.Context, stdin []byte) ([]byte, error) {
	p.a.log("feed " + p.name)
	if p.verb == "ADD" && !p.a.planned() {
		p.a.mu.Lock()
		p.a.early = append(p.a.early, p.name)
		p.a.mu.Unlock()
	}
	return p.a.ExecPlugin(ctx, p.path, stdin, p.environ)
}

func (p *aheadProc) Abort() { p.a.log("abort " + p.name) }

// planned reports whether the container record and every interface record
// of multiYAML are on disk.
func (a *aheadExec) planned() bool {
	if _, err := a.h.store.LoadContainer(testID); err != nil {
		return false
	}
	for _, ifname := range chainIfs {
		if _, err := a.h.store.LoadInterface(testID, ifname); err != nil {
			return false
		}
	}
	return true
}

// settled checks that every process started was fed or aborted, once.
func (a *aheadExec) settled(t *testing.T) {
	t.Helper()
	open := map[string]int{}
	for _, e := range a.events {
		what, name, _ := strings.Cut(e, " ")
		switch what {
		case "start":
			open[name]++
		default:
			if open[name] == 0 {
				t.Errorf("%s without a start: %v", e, a.events)
			}
			open[name]--
		}
	}
	for name, n := range open {
		if n != 0 {
			t.Errorf("%s: %d processes started and never fed or aborted: %v", name, n, a.events)
		}
	}
}

func newAheadHarness(t *testing.T, parallel bool) (*harness, *aheadExec) {
	h := newHarnessMode(t, parallel)
	a := &aheadExec{Exec: h.fake, h: h}
	h.p.Exec = a
	h.p.AheadLimit = 8
	return h, a
}

// In file order, every plugin is started ahead (each chain's next plugin
// and the next chain's first while the one before runs), fed in order, and
// none before the plan is on disk.
func TestPrestartSerialOrder(t *testing.T) {
	h, a := newAheadHarness(t, false)
	h.mustAdd(h.args(""))
	var started, fed []string
	for _, e := range a.events {
		what, name, _ := strings.Cut(e, " ")
		switch what {
		case "start":
			started = append(started, name)
		case "feed":
			fed = append(fed, name)
		}
	}
	want := []string{"alpha/eth0", "alpha2/eth0", "beta/eth1", "beta2/eth1", "gamma/eth2", "gamma2/eth2"}
	if !reflect.DeepEqual(fed, want) {
		t.Errorf("fed %v, want %v", fed, want)
	}
	sort.Strings(started)
	if !reflect.DeepEqual(started, want) {
		t.Errorf("started ahead %v, want every plugin %v", started, want)
	}
	if len(a.early) > 0 {
		t.Errorf("fed before the plan was on disk: %v", a.early)
	}
	a.settled(t)
}

// Whatever fails, every process started ahead is fed or killed, and none
// gets its configuration after its chain, or the ADD, stopped.
func TestPrestartSettles(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		for _, fail := range []string{"", "alpha", "alpha2", "beta", "gamma2"} {
			name := "serial/"
			if parallel {
				name = "parallel/"
			}
			t.Run(name+"fail="+fail, func(t *testing.T) {
				h, a := newAheadHarness(t, parallel)
				if fail != "" {
					h.fake.FailOn(fail, "ADD", "*", 11)
				}
				err := h.add(h.args(""))
				if (err != nil) != (fail != "") {
					t.Fatalf("ADD: %v", err)
				}
				if len(a.early) > 0 {
					t.Errorf("fed before the plan was on disk: %v", a.early)
				}
				a.settled(t)
				// The ADD calls the fake saw are those fed; with a failure
				// none comes after the failed plugin in its chain.
				for _, c := range h.fake.CallsOf("ADD") {
					if fail != "" && c.Plugin == fail+"2" {
						t.Errorf("%s/%s got its configuration after %s failed", c.Plugin, c.IfName, fail)
					}
				}
				if fail == "" {
					// On the fake namespace only nicmux's own netlink check
					// can fail; the delegates' CHECK must not.
					if err := h.p.Check(context.Background(), h.args("")); err != nil {
						for _, line := range strings.Split(err.Error(), "\n") {
							if !strings.Contains(line, "plugin nicmux (netlink check)") {
								t.Errorf("CHECK: %s", line)
							}
						}
					}
					if got := len(h.fake.CallsOf("CHECK")); got != 6 {
						t.Errorf("CHECK ran %d delegates, want 6", got)
					}
					if err := h.del(h.args("")); err != nil {
						t.Errorf("DEL: %v", err)
					}
					a.settled(t)
				}
				h.assertNoState()
			})
		}
	}
}
