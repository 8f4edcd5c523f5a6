package release

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// arches are the Makefile's DIST_ARCHES, with the ELF machine of each.
var arches = []struct {
	goarch  string
	machine elf.Machine
}{
	{"amd64", elf.EM_X86_64},
	{"arm64", elf.EM_AARCH64},
}

// tarEntry is one member of a tarball.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

// readTarball returns the members of a gzipped tarball in their order,
// and the gzip header.
func readTarball(t *testing.T, path string) ([]tarEntry, gzip.Header) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []tarEntry
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, hdr.Name, err)
		}
		out = append(out, tarEntry{hdr, data})
	}
	return out, zr.Header
}

func tarballPath(arch, version string) string {
	return filepath.Join(distDir(), fmt.Sprintf("nicmux-linux-%s-%s.tgz", arch, version))
}

// TestTarballs: each architecture's tarball is laid out as the reference
// plugins' releases are (the binaries at the top level beside LICENSE and
// README.md, owned by root, no folder of their own), and each binary is a
// static, stripped executable of that architecture carrying the release
// stamp and nothing of the VCS.
func TestTarballs(t *testing.T) {
	version, _ := release(t)
	want := []string{"./", "./LICENSE", "./README.md"}
	for _, b := range binaries() {
		want = append(want, "./"+b)
	}
	slices.Sort(want)
	for _, a := range arches {
		t.Run(a.goarch, func(t *testing.T) {
			entries, gz := readTarball(t, tarballPath(a.goarch, version))
			var names []string
			for _, e := range entries {
				names = append(names, e.hdr.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, want) {
				t.Fatalf("members %q, want %q", names, want)
			}
			if !gz.ModTime.IsZero() || gz.Name != "" {
				t.Errorf("gzip header names %q at %v: a rebuild would differ", gz.Name, gz.ModTime)
			}
			for _, e := range entries {
				checkMember(t, e, entries[0].hdr)
				if slices.Contains(binaries(), strings.TrimPrefix(e.hdr.Name, "./")) {
					checkBinary(t, e.hdr.Name, e.data, a.machine)
				}
			}
		})
	}
}

// checkMember checks one member's type, owner, mode, time and, for the
// documents, that it is the tree's file.
func checkMember(t *testing.T, e tarEntry, first *tar.Header) {
	t.Helper()
	h := e.hdr
	if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
		t.Errorf("%s: owner %d:%d (%q:%q), want 0:0 and no names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
	}
	if !h.ModTime.Equal(first.ModTime) {
		t.Errorf("%s: time %v, %s's is %v: the times are not the commit's", h.Name, h.ModTime, first.Name, first.ModTime)
	}
	wantType, wantMode := byte(tar.TypeReg), int64(0o755)
	switch h.Name {
	case "./":
		wantType = tar.TypeDir
	case "./LICENSE", "./README.md":
		wantMode = 0o644
		tree, err := os.ReadFile(filepath.Join(repoRoot(), strings.TrimPrefix(h.Name, "./")))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tree, e.data) {
			t.Errorf("%s differs from the tree's", h.Name)
		}
	}
	if h.Typeflag != wantType || h.Mode&0o7777 != wantMode {
		t.Errorf("%s: type %q mode %#o, want %q %#o", h.Name, h.Typeflag, h.Mode&0o7777, wantType, wantMode)
	}
}

// checkBinary checks that data is a static, stripped executable for
// machine, built without VCS stamping (TestReleaseBinaryRuns checks that
// it knows its release all the same).
func checkBinary(t *testing.T, name string, data []byte, machine elf.Machine) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not an ELF file: %v", name, err)
	}
	if f.Machine != machine || f.Type != elf.ET_EXEC {
		t.Errorf("%s: %v %v, want %v ET_EXEC", name, f.Machine, f.Type, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has %v: not static", name, p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s: has a symbol table: not stripped", name)
	}
	bi, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k := range settings {
		if strings.HasPrefix(k, "vcs") {
			t.Errorf("%s: build setting %s: built with VCS stamping", name, k)
		}
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("%s: build settings %v, want CGO_ENABLED=0 and -trimpath", name, settings)
	}
}

// TestSums: SHA256SUMS lists every file of the release once, with its
// hash, in the form `sha256sum -c` reads.
func TestSums(t *testing.T) {
	version, _ := release(t)
	entries, err := os.ReadDir(distDir())
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if e.Name() != "SHA256SUMS" {
			files = append(files, e.Name())
		}
	}
	for _, a := range arches {
		if !slices.Contains(files, filepath.Base(tarballPath(a.goarch, version))) {
			t.Errorf("no tarball for %s among %q", a.goarch, files)
		}
	}
	sums := readSums(t, filepath.Join(distDir(), "SHA256SUMS"))
	var listed []string
	for name, sum := range sums {
		listed = append(listed, name)
		data, err := os.ReadFile(filepath.Join(distDir(), name))
		if err != nil {
			t.Errorf("SHA256SUMS lists %s: %v", name, err)
			continue
		}
		if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: sha256 %x, SHA256SUMS says %s", name, got, sum)
		}
	}
	slices.Sort(listed)
	if !slices.Equal(listed, files) {
		t.Errorf("SHA256SUMS lists %q, the release has %q", listed, files)
	}
	run(t, distDir(), cleanEnv(), "sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS")
}

// readSums parses a SHA256SUMS file: "<64 hex digits>  <name>" per line.
func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if _, err := hex.DecodeString(sum); !ok || err != nil || len(sum) != 64 || name == "" || strings.Contains(name, "/") {
			t.Fatalf("%s:%d: %q is not \"<sha256>  <file>\"", path, n, sc.Text())
		}
		if _, dup := sums[name]; dup {
			t.Errorf("%s:%d: %s listed twice", path, n, name)
		}
		sums[name] = sum
	}
	return sums
}

// TestReleaseBinaryRuns: each binary of the amd64 tarball, run bare as
// Nomad's fingerprint runs it, and its `version -json`, name the release
// and the commit the Makefile stamped, although it was built with
// -buildvcs=false.
func TestReleaseBinaryRuns(t *testing.T) {
	version, commit := release(t)
	entries, _ := readTarball(t, tarballPath("amd64", version))
	dir := t.TempDir()
	for _, e := range entries {
		if e.hdr.Typeflag == tar.TypeReg && e.hdr.Mode&0o111 != 0 {
			if err := os.WriteFile(filepath.Join(dir, strings.TrimPrefix(e.hdr.Name, "./")), e.data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	short, dirty, _ := strings.Cut(commit, "-")
	short = short[:min(12, len(short))]
	if dirty != "" {
		short += "-" + dirty
	}
	env := []string{"PATH=/usr/bin:/bin"}
	for _, b := range binaries() {
		bin := filepath.Join(dir, b)
		bare := run(t, "/", env, bin)
		want := fmt.Sprintf("CNI %s plugin %s (commit %s)\nCNI protocol versions supported: ", b, version, short)
		if !strings.HasPrefix(bare, want) {
			t.Errorf("%s run bare printed %q, want it to start with %q", b, bare, want)
		}
		var v struct{ Version, Commit string }
		if err := json.Unmarshal([]byte(run(t, "/", env, bin, "version", "-json")), &v); err != nil {
			t.Fatal(err)
		}
		if v.Version != version || v.Commit != commit {
			t.Errorf("%s version -json: %+v, want version %s, commit %s", b, v, version, commit)
		}
	}
	// In a checkout, the stamp is the checkout's commit.
	if _, err := os.Stat(filepath.Join(repoRoot(), ".git")); err == nil {
		head := strings.TrimSpace(run(t, repoRoot(), cleanEnv(), "git", "-c", "safe.directory="+repoRoot(), "rev-parse", "HEAD"))
		if !strings.HasPrefix(commit, head) {
			t.Errorf("stamped commit %s, the checkout's is %s", commit, head)
		}
	}
}
