package nomad

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"

	"github.com/nicmux/nicmux/test/nomad/legs"
	"github.com/nicmux/nicmux/test/testworld"
)

// TestLinkedVersions proves that this run links the go-cni and cni
// versions its leg claims, two ways. A test binary's own build information
// lists no dependencies (golang/go#33976, #76926), so the versions from
// runtime/debug.ReadBuildInfo come from legs/linked, a command importing
// the same packages, built here with the leg's modfile. And the code this
// very binary runs names its modules' versions in its source paths
// (module@version/file.go), which catches a binary built with another
// modfile than the leg's.
func TestLinkedVersions(t *testing.T) {
	t.Logf("%s; modfile %s", leg, leg.Modfile)
	if got := moduleVersion(gocni.New); got != leg.GoCNI {
		t.Errorf("this test binary runs go-cni %s, the leg claims %s: build it with -modfile=%s (go run ./matrix does)", got, leg.GoCNI, leg.Modfile)
	}
	if got := moduleVersion(libcni.ConfFiles); got != leg.CNI {
		t.Errorf("this test binary runs containernetworking/cni %s, the leg claims %s: build it with -modfile=%s", got, leg.CNI, leg.Modfile)
	}

	goCmd, err := exec.LookPath("go")
	failIf(t, err, "finding the go command to build legs/linked")
	bin := filepath.Join(t.TempDir(), "linked")
	build := exec.Command(goCmd, "build", "-modfile="+leg.Modfile, "-o", bin, "./legs/linked")
	build.Dir = suiteDir()
	out, err := build.CombinedOutput()
	failIf(t, err, "building legs/linked with -modfile="+leg.Modfile+": "+string(out))
	out, err = exec.Command(bin).Output()
	failIf(t, err, "running legs/linked")
	var linked map[string]string
	failIf(t, json.Unmarshal(out, &linked), "decoding legs/linked's output "+string(out))
	want := map[string]string{"github.com/containerd/go-cni": leg.GoCNI, "github.com/containernetworking/cni": leg.CNI}
	for mod, v := range want {
		if linked[mod] != v {
			t.Errorf("with -modfile=%s, debug.ReadBuildInfo reports %s %q; the leg claims %s", leg.Modfile, mod, linked[mod], v)
		}
	}
	t.Logf("debug.ReadBuildInfo with -modfile=%s: %v", leg.Modfile, linked)
}

// TestLegs pins the matrix: unique leg names, every leg's modfile present
// and every modfile under legs/ some leg's, the Nomad releases each leg
// models covering every change of the address rule in its range, and
// docs/nomad.md's table of tested versions being exactly the matrix.
func TestLegs(t *testing.T) {
	names := map[string]bool{}
	used := map[string]bool{}
	for _, l := range legs.All {
		if names[l.Name] {
			t.Errorf("two legs named %s", l.Name)
		}
		names[l.Name] = true
		used[l.Modfile] = true
		if _, err := os.Stat(filepath.Join(suiteDir(), l.Modfile)); err != nil {
			t.Errorf("leg %s: %v", l.Name, err)
		}
		if l.Modfile != "go.mod" {
			if _, err := os.Stat(filepath.Join(suiteDir(), strings.TrimSuffix(l.Modfile, ".mod")+".sum")); err != nil {
				t.Errorf("leg %s: its modfile has no go.sum beside it: %v", l.Name, err)
			}
		}
		if len(l.Releases) == 0 {
			t.Errorf("leg %s models no Nomad release", l.Name)
			continue
		}
		first, last := l.Releases[0], l.Releases[len(l.Releases)-1]
		for _, change := range addressRuleChanges {
			if compareVersions(first, change) < 0 && compareVersions(change, last) <= 0 && !slices.Contains(l.Releases, change) {
				t.Errorf("leg %s (Nomad %s): the address rule changes at %s, which its releases %v skip", l.Name, l.Nomad, change, l.Releases)
			}
		}
	}
	if _, err := legs.Lookup(legs.Default); err != nil {
		t.Errorf("the default leg: %v", err)
	}
	modfiles, err := filepath.Glob(filepath.Join(suiteDir(), "legs", "*.mod"))
	failIf(t, err, "listing legs/*.mod")
	for _, f := range modfiles {
		if rel := filepath.Join("legs", filepath.Base(f)); !used[rel] {
			t.Errorf("%s is no leg's modfile: add its leg to legs.All or delete it", rel)
		}
	}

	doc, err := os.ReadFile(filepath.Join(testworld.RepoRoot(), "docs", "nomad.md"))
	failIf(t, err, "reading docs/nomad.md")
	_, section, ok := strings.Cut(string(doc), "## 10. Tested versions")
	if !ok {
		t.Fatal(`docs/nomad.md has no "## 10. Tested versions" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	if !strings.Contains(section, "\n"+legs.Markdown()) {
		t.Errorf("docs/nomad.md's table of tested versions is not the matrix; replace it with `go run ./matrix -table`'s:\n%s", legs.Markdown())
	}
	var rows int
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "|") {
			rows++
		}
	}
	if want := len(legs.All) + 2; rows != want {
		t.Errorf("docs/nomad.md's tested versions section has %d table lines, want the matrix's %d", rows, want)
	}
}

// suiteDir is test/nomad, the module's root.
func suiteDir() string { return filepath.Join(testworld.RepoRoot(), "test", "nomad") }
