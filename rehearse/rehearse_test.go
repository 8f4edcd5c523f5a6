package rehearse

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/nomad"
)

// The rehearsals themselves need root, namespaces and real plugins:
// test/integration and test/nomad run them. These are the parts that need
// none.

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestFingerprint: every executable of the folders run bare with an empty
// environment; the first folder's binary of a name counts; links are
// followed; the gate follows the bridge's version.
func TestFingerprint(t *testing.T) {
	t.Setenv("CNI_COMMAND", "ADD") // must not reach the bare runs
	a, b := t.TempDir(), t.TempDir()
	writeScript(t, filepath.Join(a, "bridge"), `echo "CNI bridge plugin v1.2.0$CNI_COMMAND" >&2`+"\n")
	writeScript(t, filepath.Join(b, "bridge"), `echo "CNI bridge plugin v1.10.0"`+"\n")
	writeScript(t, filepath.Join(b, "unknown"), `echo "CNI unknown plugin version unknown"`+"\n")
	writeScript(t, filepath.Join(b, ".hidden"), `echo "v9.9.9"`+"\n")
	if err := os.WriteFile(filepath.Join(b, "data"), []byte("v1.0.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(b, "bridge"), filepath.Join(b, "linked")); err != nil {
		t.Fatal(err)
	}
	fp := TakeFingerprint(context.Background(), []string{a, b})
	want := map[string]string{"bridge": "1.2.0", "unknown": "", "linked": "1.10.0"}
	if !reflect.DeepEqual(fp.Versions, want) || fp.Bridge != filepath.Join(a, "bridge") || fp.CheckGate {
		t.Errorf("fingerprint = %+v, want versions %v, bridge in %s, gate closed", fp, want, a)
	}
	if fp := TakeFingerprint(context.Background(), []string{b}); !fp.CheckGate {
		t.Errorf("bridge v1.10.0: gate closed: %+v", fp)
	}
}

// TestUnreadableResult: on ADD, a result the release's libcni does not know
// fails after the plugin ran, naming the plugin; other verbs and releases
// pass it.
func TestUnreadableResult(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "p")
	writeScript(t, plugin, `echo '{"cniVersion":"1.1.0","interfaces":[]}'`+"\n")
	for _, c := range []struct {
		release, verb string
		fails         bool
	}{{"1.8.2", "ADD", true}, {"1.8.3", "ADD", false}, {"1.8.0", "CHECK", false}} {
		r, err := nomad.Lookup(c.release)
		if err != nil {
			t.Fatal(err)
		}
		e := &pluginExec{release: r, raw: &invoke.RawExec{}}
		_, err = e.ExecPlugin(context.Background(), plugin, []byte(`{}`), []string{"CNI_COMMAND=" + c.verb})
		if got := err != nil; got != c.fails || c.fails && (err.Error() != `unsupported CNI result version "1.1.0"` || e.failed != "p") {
			t.Errorf("Nomad %s %s: %v, failed plugin %q; want failure %v", c.release, c.verb, err, e.failed, c.fails)
		}
	}
	e := &pluginExec{raw: &invoke.RawExec{}}
	if _, err := e.FindInPath("nosuch", []string{dir}); err == nil || e.failed != "nosuch" {
		t.Errorf("a missing plugin: %v, failed %q", err, e.failed)
	}
}

// TestFindNetwork: the first file, sorted, of a known extension whose
// name is the lower-cased one.
func TestFindNetwork(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"10-other.conflist": `{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge"}]}`,
		"20-multi.conf":     `{"cniVersion":"1.0.0","name":"multi","type":"bridge"}`,
		"30-multi.conflist": `{"cniVersion":"1.0.0","name":"multi","plugins":[{"type":"bridge"}]}`,
		"05-multi.txt":      `{"cniVersion":"1.0.0","name":"multi","type":"bridge"}`,
		"01-broken.json":    `{`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := FindNetwork(dir, "Multi"); err != nil || got != filepath.Join(dir, "20-multi.conf") {
		t.Errorf("FindNetwork(Multi) = %q, %v; want 20-multi.conf", got, err)
	}
	if _, err := FindNetwork(dir, "nosuch"); err == nil || !strings.Contains(err.Error(), `no CNI network configuration named "nosuch"`) {
		t.Errorf("FindNetwork(nosuch): %v", err)
	}
	if l, err := loadList("x.conf", []byte(files["20-multi.conf"])); err != nil || len(l.Plugins) != 1 {
		t.Errorf("a .conf as a list: %+v, %v", l, err)
	}
	if _, err := Run(context.Background(), Options{File: "x.conflist", Data: []byte(`{`)}); err == nil {
		t.Error("Run of a configuration that does not load: no error")
	}
	if _, err := Run(context.Background(), Options{File: "x.conf", Data: []byte(`{"cniVersion":"1.0.0","name":"Multi","type":"bridge"}`)}); err == nil ||
		!strings.Contains(err.Error(), `the network name "Multi" has capitals`) {
		t.Errorf("Run of a network no job finds: %v", err)
	}
}

// TestPlacesOf: the host-local data folders and nicmux state folders a
// configuration names, down wrappers and into nicmux's attachment sets.
func TestPlacesOf(t *testing.T) {
	etc := t.TempDir()
	if err := os.WriteFile(filepath.Join(etc, "multi.yaml"), []byte("interfaces: [{plugins: [{type: macvlan, ipam: {type: host-local, dataDir: /srv/a}}]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "storage.yaml"), []byte("interfaces: [{plugins: [{type: bridge, ipam: {type: host-local}}]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	list := `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge","bridge":"br9"},{"type":"bridge"},
	  {"type":"ifrename","ifname":"eth1","delegate":{"type":"macvlan","ipam":{"type":"host-local","dataDir":"/srv/b"}}},
	  {"type":"nicmux","attachments":"` + filepath.Join(etc, "multi.yaml") + `"},
	  {"type":"nicmux","attachments":"relative.yaml","stateDir":"/srv/state"}]}`
	got := placesOf([]byte(list))
	want := places{DataDirs: []string{"/srv/a", "/srv/b", hostLocalDataDir}, StateDirs: []string{"/srv/state", conf.DefaultStateDir},
		Bridges: []string{"br9", bridgeDefault}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("placesOf = %+v, want %+v", got, want)
	}
}

// TestVerdict: the first failed step decides; with none, what the cleanup
// could not remove fails the leak check.
func TestVerdict(t *testing.T) {
	r := &rehearsal{out: Outcome{Steps: []Step{{Name: StepStatus, OK: true}, {Name: StepCheck, Plugin: "bridge", Message: "m"},
		{Name: StepDel, Message: "later"}}}}
	r.verdict()
	if r.out.Pass || r.out.Step != StepCheck || r.out.Plugin != "bridge" || r.out.Message != "m" {
		t.Errorf("verdict = %+v", r.out)
	}
	r = &rehearsal{out: Outcome{Steps: []Step{{Name: StepDel, OK: true}}, Left: []string{"lease: x"}}}
	r.verdict()
	if r.out.Pass || r.out.Step != StepLeaks || !strings.Contains(r.out.Message, "lease: x") {
		t.Errorf("verdict with something left = %+v", r.out)
	}
	r = &rehearsal{out: Outcome{Steps: []Step{{Name: StepDel, OK: true}}}}
	if r.verdict(); !r.out.Pass {
		t.Errorf("verdict of passing steps = %+v", r.out)
	}
	if err := leakError(nil); err != nil {
		t.Error(err)
	}
	if err := leakError([]Leak{{Kind: "lease", What: "f"}}); err == nil || err.Error() != "left after the teardown: lease: f" {
		t.Errorf("leakError = %v", err)
	}
}

func TestAllocID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, _ := newAllocID()
	b, _ := newAllocID()
	if !re.MatchString(a) || a == b {
		t.Errorf("allocation IDs %q, %q: want distinct random UUIDs", a, b)
	}
}
