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
// namespace and a private mount namespace: the "host" side (bridges, macvlan
// masters, iptables rules), /var/run/netns and /var/lib/cni (libcni's
// result cache, which Nomad's restore path reads) live and die with the run.
package nomad

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/nicmux/nicmux/test/nomad/legs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inChildEnv marks the re-run in private namespaces. Only reexecIsolated
// sets it: set by hand, the run would put its tmpfs mounts over the real
// host's /var/run/netns and /var/lib/cni.
const inChildEnv = "NICMUX_NOMAD_TEST_CHILD"

// leg is the run of the suite this is (package legs): the go-cni and cni
// versions it claims to link, the Nomad releases it stands for and the
// reference plugins it runs. NICMUX_NOMAD_LEG names it; unset, legs.Default.
var leg legs.Leg

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the go-cni suite makes network namespaces, links and iptables rules: run it as root (make nomad)")
		os.Exit(1)
	}
	var err error
	if leg, err = legs.Current(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Getenv(inChildEnv) == "" {
		os.Exit(reexecIsolated())
	}
	if err := isolateHost(); err != nil {
		fmt.Fprintln(os.Stderr, "isolating the test host:", err)
		os.Exit(1)
	}
	// The plugins (portmap, bridge) and the suite run iptables from PATH.
	os.Setenv("PATH", os.Getenv("PATH")+":/usr/local/sbin:/usr/sbin:/sbin")
	if err := requireTools(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(leg)
	for _, l := range legLimitations() {
		fmt.Println("  upstream limitation, asserted where it applies:", l)
	}
	os.Exit(m.Run())
}

// reexecIsolated runs this test binary again in new network and mount
// namespaces and returns its exit code.
func reexecIsolated() int {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), inChildEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "re-running the tests in private namespaces:", err)
		return 1
	}
	return 0
}

// isolateHost stops mounts from propagating to the real host, puts fresh
// tmpfs over the folders Nomad's CNI calls write to, and brings lo up.
func isolateHost() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private: %w", err)
	}
	for _, dir := range []string{netnsDir, "/var/lib/cni"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lo)
}

func requireTools() error {
	bins := []string{nicmuxBin(), filepath.Join(pluginsDir(), "bridge"), filepath.Join(pluginsDir(), "portmap"),
		filepath.Join(testPluginsDir(), "recorder"), filepath.Join(testPluginsDir(), "ifrename")}
	for _, b := range bins {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("missing %s: run `make nomad` (it builds nicmux, the plugins and the test plugins)", b)
		}
	}
	for _, tool := range []string{"iptables", "iptables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: the portmap plugin and the suite need iptables (apt-get install iptables)", tool)
		}
	}
	return nil
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

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func binDir() string         { return filepath.Join(repoRoot(), "bin") }
func nicmuxBin() string      { return filepath.Join(binDir(), "nicmux") }
func pluginsDir() string     { return filepath.Join(binDir(), leg.PluginsDir) }
func testPluginsDir() string { return filepath.Join(binDir(), "testplugins") }
func examplesDir() string    { return filepath.Join(repoRoot(), "examples", "nomad") }

// testCNIPath is the cni_path the suite gives Nomad's client in place of
// the example's: a colon-separated list, as Nomad allows.
func testCNIPath() string {
	return binDir() + string(os.PathListSeparator) + pluginsDir() + string(os.PathListSeparator) + testPluginsDir()
}

// failIf stops the test on an unexpected error.
func failIf(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
