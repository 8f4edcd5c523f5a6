package release

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInstallPlugins: `make install-plugins` installs the reference
// plugins Nomad users need, each stamped with its release so that it
// answers Nomad's fingerprint with a version.
func TestInstallPlugins(t *testing.T) {
	dest := t.TempDir()
	run(t, repoRoot(), cleanEnv(), "make", makeArgs("install-plugins", "DESTDIR="+dest)...)
	want := []string{
		"bandwidth", "bridge", "firewall", "host-device", "host-local", "ipvlan", "loopback",
		"macvlan", "portmap", "ptp", "sbr", "static", "tuning", "vlan",
	}
	entries, err := os.ReadDir(filepath.Join(dest, "opt/cni/bin"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("installed %q, want %q", got, want)
	}
	for _, p := range want {
		out := run(t, "/", []string{"PATH=/usr/bin:/bin"}, filepath.Join(dest, "opt/cni/bin", p))
		if first, _, _ := strings.Cut(out, "\n"); first != "CNI "+p+" plugin "+*pluginsFlag {
			t.Errorf("%s run bare: %q, want \"CNI %s plugin %s\"", p, first, p, *pluginsFlag)
		}
	}
}

// user is who runs sudo in TestSudoDemoThenUserBuild.
const user = 65534

// TestSudoDemoThenUserBuild: in a copy of the tree that a user owns, `sudo
// make demo` (make as root, with sudo's SUDO_UID and SUDO_GID) leaves
// nothing of root's in the tree, and the user's `make build` and `make
// clean` then work.
func TestSudoDemoThenUserBuild(t *testing.T) {
	top, err := os.MkdirTemp("", "sudo-make-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	tree, home, modcache := filepath.Join(top, "tree"), filepath.Join(top, "home"), filepath.Join(top, "mod")
	copyTree(t, repoRoot(), tree, func(rel string) bool {
		return rel == ".git" || rel == "bin" || strings.HasSuffix(rel, ".test")
	})
	// The plugins and cnitool as made, so that the demo builds nicmux only.
	copyTree(t, filepath.Join(binDir(), "plugins"), filepath.Join(tree, "bin/plugins"), nil)
	copyTree(t, filepath.Join(binDir(), "cnitool"), filepath.Join(tree, "bin/cnitool"), nil)
	for _, d := range []string{home, modcache} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chownTree(t, top, user)
	// What the demo would have made as root in a fresh tree is root's.
	chownTree(t, filepath.Join(tree, "bin"), 0)
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}

	// Only the demo of the pinned plugins: the go-cni suite's other
	// releases are not in the copy.
	run(t, tree, cleanEnv("SUDO_UID=65534", "SUDO_GID=65534", "SUDO_USER=nobody"),
		"make", makeArgs("demo", "NOMAD_PLUGINS_VERSIONS=")...)
	if root := ownedBy(t, tree, 0); len(root) != 0 {
		t.Errorf("root's after sudo make demo: %q", root)
	}

	// The user's own build: their Go cache, root's modules read-only, no
	// network.
	gomod := strings.TrimSpace(run(t, "/", cleanEnv(), *goFlag, "env", "GOMODCACHE"))
	if err := unix.Mount(gomod, modcache, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(modcache, unix.MNT_DETACH) })
	if err := unix.Mount("", modcache, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	userEnv := []string{"PATH=/usr/bin:/bin", "HOME=" + home, "GOCACHE=" + filepath.Join(home, "cache"),
		"GOMODCACHE=" + modcache, "GOPROXY=off", "GOTOOLCHAIN=local"}
	asUser := func(args ...string) string {
		return run(t, tree, userEnv, "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--", "make"}, makeArgs(args...)...)...)
	}
	// An edit, so that the build writes a new bin/nicmux.
	main := filepath.Join(tree, "cmd/nicmux/main.go")
	b, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(main, append(b, "\n// The user's edit.\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	asUser("build")
	if fi, err := os.Stat(filepath.Join(tree, "bin/nicmux")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != user {
		t.Errorf("bin/nicmux after the user's make build: %v", err)
	}
	asUser("clean")
	if _, err := os.Stat(filepath.Join(tree, "bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bin/ after the user's make clean: %v", err)
	}
}

// makeArgs are the arguments of a make the test runs: args, and the
// Makefile's GO when it is a path (sudo's PATH may have no go in it).
func makeArgs(args ...string) []string {
	out := append([]string{"--no-print-directory"}, args...)
	if filepath.IsAbs(*goFlag) {
		out = append(out, "GO="+*goFlag)
	}
	return out
}

// copyTree copies src (a file or a folder) to dst, keeping modes and
// leaving out what skip says (by path relative to src).
func copyTree(t *testing.T, src, dst string, skip func(rel string) bool) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if skip != nil && rel != "." && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			return copyFile(path, target, info.Mode().Perm())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// chownTree gives everything under dir to uid (and the group of that
// number).
func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ownedBy lists what under dir belongs to uid.
func ownedBy(t *testing.T, dir string, uid uint32) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Sys().(*syscall.Stat_t).Uid == uid {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
