package nomad

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/nicmux/nicmux/test/testworld"
)

// TestJobSets: the example job's cni args (NICMUX_ATTACHMENTS = "storage")
// pick storage.yaml, while a job without them on the same node gets
// multi.yaml. Remove, which Nomad calls without the job's args, releases
// the interfaces of the set the allocation got.
func TestJobSets(t *testing.T) {
	w := newWorld(t)
	w.install()
	if w.job.CNIArgs["NICMUX_ATTACHMENTS"] != "storage" {
		t.Fatalf("the example job's cni args = %v, want NICMUX_ATTACHMENTS = storage", w.job.CNIArgs)
	}
	withSet := w.newAlloc(w.job.CNIArgs)
	plain := w.newAlloc(nil)
	resSet := w.mustSetup(withSet)
	resPlain := w.mustSetup(plain)

	w.wantAttached(withSet, resSet, "storage")
	w.wantAttached(plain, resPlain, "multi")
	if got := testworld.Link(t, withSet.NetNS, "eth1").Attrs().MTU; got != 9000 {
		t.Errorf("storage eth1 MTU = %d, want storage.yaml's 9000", got)
	}
	w.wantAllocAddress(resSet, withSet, "eth0")
	failIf(t, w.node.check(withSet), "CHECK of the storage allocation")

	failIf(t, w.node.remove(withSet), "remove of the storage allocation")
	w.assertAllocGone(withSet, networks(t, "storage")...)
	w.wantBridgePorts(1)                     // the default allocation's
	w.wantAttached(plain, resPlain, "multi") // untouched
	failIf(t, w.node.remove(plain), "remove of the default allocation")
	w.assertClean(plain, networks(t, "multi", "storage")...)
}

// TestJobArgsReachDelegates: the job's cni args reach the delegates as
// Nomad sent them (IgnoreUnknown, its identity, a key of the job's own,
// 10,000 more unknown pairs), without NICMUX_ATTACHMENTS, which is
// nicmux's; CHECK passes with them, and Remove (no args) leaves nothing.
func TestJobArgsReachDelegates(t *testing.T) {
	w := newWorld(t)
	var edits []chainEdit
	for _, si := range exampleSet(t, "storage") {
		edits = append(edits, w.withRecorder("storage", si.IfName, nil))
	}
	w.install(edits...)
	args := withArgs(w.job.CNIArgs, map[string]string{"JOB_TIER": "web"})
	for i := range 10000 {
		args[fmt.Sprintf("K%d", i)] = "v"
	}
	a := w.newAlloc(args)
	w.mustSetup(a)
	failIf(t, w.node.check(a), "CHECK with the job's args")
	for _, verb := range []string{"ADD", "CHECK"} {
		calls := w.callsByIf(verb)
		if len(calls) != len(exampleSet(t, "storage")) {
			t.Errorf("%s reached the recorders of %d interfaces, want every one of storage.yaml's", verb, len(calls))
		}
		for ifname, c := range calls {
			pairs := strings.Split(c.Args, ";")
			for _, want := range []string{"IgnoreUnknown=true", "JOB_TIER=web", "K9999=v", "NOMAD_ALLOC_ID=" + a.ID} {
				if !slices.Contains(pairs, want) {
					t.Errorf("%s %s: CNI_ARGS (%d pairs) lack %s", verb, ifname, len(pairs), want)
				}
			}
			for _, p := range pairs {
				if strings.HasPrefix(p, "NICMUX_") {
					t.Errorf("%s %s: CNI_ARGS hold nicmux's own %s", verb, ifname, p)
				}
			}
		}
	}
	failIf(t, w.node.remove(a), "remove")
	w.assertClean(a, networks(t, "storage")...)
}

// TestBadSetNames: a set name that could leave the attachment folder, or
// names no set, is refused on every try with a CNI error naming
// NICMUX_ATTACHMENTS, and leaves nothing. The cases run at the same time
// (nothing is ever attached, so they cannot disturb each other): each spends
// two seconds in Nomad's pauses between tries.
func TestBadSetNames(t *testing.T) {
	w := newWorld(t)
	w.install()
	elsewhere := filepath.Join(w.Dir, "elsewhere", "escape.yaml")
	testworld.WriteFile(t, elsewhere, []byte("interfaces: [{ifname: eth0, plugins: [{type: loopback}]}]\n"))
	failIf(t, os.Symlink(elsewhere, filepath.Join(w.AttachDir, "escape.yaml")), "making the escaping symlink")

	cases := []struct {
		name  string
		code  uint
		parts []string
	}{
		{"../x", 4, []string{`"../x" is not a valid attachment set name`}},
		{"a/b", 4, []string{`"a/b" is not a valid attachment set name`}},
		{"nosuch", 7, []string{`no attachment set "nosuch"`, "available: ", "multi, storage"}},
		{"escape", 4, []string{`attachment set "escape" resolves to`, "outside"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := w.in(t)
			a := w.newAlloc(map[string]string{"NICMUX_ATTACHMENTS": c.name})
			res, errs := w.node.setup(a)
			if res != nil || len(errs) != setupTries {
				t.Fatalf("setup with set %q: result %v, %d failed tries; want every try refused", c.name, res != nil, len(errs))
			}
			t.Logf("setup with NICMUX_ATTACHMENTS=%s: %v", c.name, errs[0])
			for _, err := range errs {
				testworld.WantCNIError(t, err, c.code, append([]string{"NICMUX_ATTACHMENTS"}, c.parts...)...)
			}
			w.assertClean(a, networks(t, "multi", "storage")...)
		})
	}
}

// TestAddressOrderWarning: when the first interface does not sort first
// among the sandboxed interfaces, Nomad reports another interface's
// address, and nicmux says so in its log.
func TestAddressOrderWarning(t *testing.T) {
	w := newWorld(t)
	w.install()
	w.writeRenamedSet("backwards", "multi", "eth0", "svc0")
	a := w.newAlloc(map[string]string{"NICMUX_ATTACHMENTS": "backwards"})
	res := w.mustSetup(a)

	w.wantAllocAddress(res, a, "eth1") // eth1 sorts before svc0
	if got := w.LogLines("level=WARN", "first=svc0", "nomadPicks=eth1"); len(got) != 1 {
		t.Errorf("nicmux warnings about the address order = %v, want one naming svc0 and eth1", got)
	}
	failIf(t, w.node.remove(a), "remove")
	w.assertClean(a, networks(t, "multi")...)
}

// writeRenamedSet installs a copy of an example set under another name,
// with one interface renamed.
func (w *world) writeRenamedSet(name, from, oldIf, newIf string) {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.AttachDir, from+".yaml"))
	failIf(w.t, err, "reading the installed set")
	var doc map[string]any
	failIf(w.t, yaml.Unmarshal(b, &doc), "parsing the installed set")
	for _, iface := range interfaces(w.t, doc) {
		if ifnameOf(iface) == oldIf {
			iface["ifname"] = newIf
		}
	}
	out, err := yaml.Marshal(doc)
	failIf(w.t, err, "encoding the set")
	testworld.WriteFile(w.t, filepath.Join(w.AttachDir, name+".yaml"), out)
}
