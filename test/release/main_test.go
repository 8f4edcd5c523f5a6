// Package release checks what an operator gets from a release of nicmux:
// the tarballs and Debian packages `make dist` makes and their sums, the
// plugins `make install-plugins` installs, a user's build after `sudo make
// demo`, and the links of the documentation. `make distcheck` runs it after
// `make dist`, handing it the Makefile's view of the release.
package release

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/test/testworld"
)

var (
	binFlag      = flag.String("bin", "", "the tree's bin folder (default: the repository's bin)")
	binariesFlag = flag.String("binaries", "nicmux", "the Makefile's BINARIES: the commands a release ships")
	versionFlag  = flag.String("version", "", "the release version the Makefile stamped (DIST_VERSION)")
	commitFlag   = flag.String("commit", "", "the commit the Makefile stamped (RELEASE_COMMIT)")
	pluginsFlag  = flag.String("plugins-version", "v1.10.0", "the Makefile's PLUGINS_VERSION")
	goFlag       = flag.String("go", "go", "the go command (the Makefile's GO: sudo's PATH may lack it)")
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The demo makes namespaces with fixed names: in private network and
	// mount namespaces, with a tmpfs of its own on /run/netns, they collide
	// with nobody's.
	suite := testworld.Suite{
		Makes:  "the release checks run make as root and as another user, and the demo",
		Target: "distcheck",
		Tools:  []string{"make", "tar", "sha256sum", "dpkg-deb", "setpriv", "systemd-analyze"},
		Tmpfs:  []string{"/run/netns"},
	}
	if code := suite.Enter(); code >= 0 {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// repoRoot is the checkout the release is made from.
func repoRoot() string { return testworld.RepoRoot() }

func binDir() string {
	if *binFlag != "" {
		return *binFlag
	}
	return testworld.BinDir()
}

func distDir() string { return filepath.Join(binDir(), "dist") }

// binaries is the Makefile's BINARIES.
func binaries() []string { return strings.Fields(*binariesFlag) }

// release is the version and commit the Makefile stamped, which the dist
// checks need.
func release(t *testing.T) (version, commit string) {
	t.Helper()
	if *versionFlag == "" || *commitFlag == "" {
		t.Fatal("-version and -commit are the Makefile's: run `make distcheck`")
	}
	return *versionFlag, *commitFlag
}

// cleanEnv is the test's environment without what would tie a make it
// runs to the make that runs the test (its jobserver, its level, its
// goals) or make it take the sudo path.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "SUDO_UID", "SUDO_GID", "SUDO_USER", "SUDO_COMMAND", "NICMUX_SUDO_INNER":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// run runs name with args in dir with env, and fails the test, with the
// output, if it fails. It returns the output.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err
}
