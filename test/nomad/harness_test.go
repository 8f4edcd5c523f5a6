// Package nomad proves nicmux through github.com/containerd/go-cni, the
// library Nomad drives CNI with, called the way Nomad calls it (see
// ../../../shared/NOMAD.md, re-implemented from its documented behaviour):
// configuration found by name in cni_config_dir, Setup with Nomad's labels
// and port mappings and up to three tries with no Remove between, Check from
// a fresh client on restore, Remove with no labels. It runs the real nicmux
// binary and the reference plugins in real network namespaces and loads the
// very files in examples/nomad, with test paths substituted.
//
// The suite runs once per leg (package legs): each leg links one go-cni /
// containernetworking/cni pair some Nomad releases pin and runs one release
// of the reference plugins; NICMUX_NOMAD_LEG names it, and `go run ./matrix`
// runs them all.
//
// The tests need root. TestMain re-runs the test binary in a private network
// namespace and a private mount namespace (testworld.Suite): the "host" side
// (bridges, macvlan masters, iptables rules), /var/run/netns and
// /var/lib/cni (libcni's result cache, which Nomad's restore path reads)
// live and die with the run.
package nomad

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/test/nomad/legs"
	"github.com/nicmux/nicmux/test/testworld"
)

// leg is the run of the suite this is (package legs): the go-cni and cni
// versions it claims to link, the Nomad releases it stands for and the
// reference plugins it runs. NICMUX_NOMAD_LEG names it; unset, legs.Default.
var leg legs.Leg

func TestMain(m *testing.M) {
	var err error
	if leg, err = legs.Current(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	suite := testworld.Suite{
		Makes:  "the go-cni suite makes network namespaces, links and iptables rules",
		Target: "nomad",
		Files: []string{testworld.NicmuxBin(), filepath.Join(pluginsDir(), "bridge"), filepath.Join(pluginsDir(), "portmap"),
			filepath.Join(testworld.TestPluginsDir(), "recorder"), filepath.Join(testworld.TestPluginsDir(), "ifrename")},
		Tools: []string{"iptables", "iptables-save"},
		// Nomad's CNI calls write there: the namespaces it mounts, libcni's
		// result cache (which its restore path reads).
		Tmpfs: []string{netnsDir, "/var/lib/cni"},
	}
	if code := suite.Enter(); code >= 0 {
		os.Exit(code)
	}
	fmt.Println(leg)
	for _, l := range legLimitations() {
		fmt.Println("  upstream limitation, asserted where it applies:", l)
	}
	os.Exit(m.Run())
}

// moduleVersion returns the version of the module a function comes from,
// read from its source path ("...module@version/file.go"): test binaries
// carry no dependency list in their build information.
func moduleVersion(fn any) string {
	pc := reflect.ValueOf(fn).Pointer()
	file, _ := runtime.FuncForPC(pc).FileLine(pc)
	_, after, ok := strings.Cut(file, "@")
	if !ok {
		return "(unknown)"
	}
	v, _, _ := strings.Cut(after, "/")
	return v
}

func pluginsDir() string  { return filepath.Join(testworld.BinDir(), leg.PluginsDir) }
func examplesDir() string { return filepath.Join(testworld.RepoRoot(), "examples", "nomad") }

// testCNIPath is the cni_path the suite gives Nomad's client in place of
// the example's: a colon-separated list, as Nomad allows.
func testCNIPath() string {
	return strings.Join([]string{testworld.BinDir(), pluginsDir(), testworld.TestPluginsDir()}, string(os.PathListSeparator))
}

// failIf stops the test on an unexpected error.
func failIf(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
