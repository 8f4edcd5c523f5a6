package testworld

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/nicmux/nicmux/test/netnsutil"
	"golang.org/x/sys/unix"
)

// Suite is what a suite's TestMain needs before its tests run.
type Suite struct {
	// Makes says what the suite makes, which is why it needs root: "the
	// torture suite makes network namespaces, links and mounts".
	Makes string
	// Target is the make target that builds what the suite runs and runs
	// it.
	Target string
	// Files are the binaries the suite runs; Tools the programs it needs
	// on PATH.
	Files, Tools []string
	// Tmpfs are folders the suite's run covers with a fresh tmpfs, in its
	// own mount namespace: what runtimes write there (netns mounts,
	// libcni's cache) is then the suite's alone.
	Tmpfs []string
}

// sbinPath is added to PATH: the plugins (bridge's ipMasq, portmap) and
// the suites run iptables from it, and a user's PATH may lack it.
const sbinPath = "/usr/local/sbin:/usr/sbin:/sbin"

// Enter starts a suite. Run as root, it re-runs the test binary in
// private network and mount namespaces and returns that run's exit code;
// in the re-run it returns -1, for TestMain to go on with m.Run, once the
// Tmpfs folders are fresh and every file and tool is there. It returns 1
// after printing why it cannot.
func (s Suite) Enter() int {
	if os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "%s: run it as root (make %s)\n", s.Makes, s.Target)
		return 1
	}
	if code := netnsutil.ReexecInPrivateNetnsAndMounts(); code >= 0 {
		return code
	}
	if err := s.prepare(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return -1
}

func (s Suite) prepare() error {
	for _, dir := range s.Tmpfs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
	}
	os.Setenv("PATH", os.Getenv("PATH")+":"+sbinPath)
	for _, f := range s.Files {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("missing %s: `make %s` builds it (and runs the suite)", f, s.Target)
		}
	}
	for _, tool := range s.Tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: the plugins and the suite need it (apt-get install iptables)", tool)
		}
	}
	return nil
}

// RepoRoot is the folder of nicmux's checkout.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir is where the Makefile builds everything: bin/ of the checkout.
func BinDir() string { return filepath.Join(RepoRoot(), "bin") }

// NicmuxBin is the nicmux binary `make build` makes.
func NicmuxBin() string { return filepath.Join(BinDir(), "nicmux") }

// PluginsDir holds the reference plugins at the pinned release (`make
// plugins`).
func PluginsDir() string { return filepath.Join(BinDir(), "plugins") }

// TestPluginsDir holds the test-only plugins (`make testplugins`).
func TestPluginsDir() string { return filepath.Join(BinDir(), "testplugins") }

// CNIPath is the CNI path the suites give libcni: nicmux, the reference
// plugins and the test plugins.
func CNIPath() []string { return []string{BinDir(), PluginsDir(), TestPluginsDir()} }

// RandHex returns n random bytes in hex: names and IDs no other test of
// the run uses.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
