package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// The walk-through of docs/operations.md, "Migrating from a hand-written
// chain", is run as written: its file blocks are written where they say,
// its commands run in a shell with nicmux and the plugins in /opt/cni/bin,
// each must exit as its comment says ("# exits N", else 0), and every line
// of the output block after it that has no "..." must be in its output,
// and a file it shows as written must hold exactly what the docs show.
// The paths are the real ones, in this process's private mount namespace:
// /opt/cni, /etc/nicmux and /var/lib/cni are overlays nothing else sees.

const (
	runMarker     = "<!-- run: migrating from a hand-written chain -->"
	fileMarker    = "<!-- file: "
	writtenMarker = "<!-- written: "
	outputMarker  = "<!-- output -->"
)

// docStep is one file to write or command to run, in the docs' order.
type docStep struct {
	line    int
	file    string // a file block's path, or ""
	body    string // the file's contents, or the command
	exit    int
	outputs []string // lines the command's output must hold
	// written are the files the command wrote, by path, with their
	// contents.
	written map[string]string
}

var exitsRE = regexp.MustCompile(`#\s*exits (\d+)`)

// docSteps reads the steps of the walk-through.
func docSteps(doc string) ([]docStep, error) {
	lines := strings.Split(doc, "\n")
	var steps []docStep
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(l, fileMarker):
			body, end := codeBlock(lines, i+1)
			steps = append(steps, docStep{line: i + 1, file: strings.TrimSuffix(strings.TrimPrefix(l, fileMarker), " -->"), body: body})
			i = end
		case l == runMarker:
			body, end := codeBlock(lines, i+1)
			cmd := strings.TrimSpace(body)
			if cmd == "" || strings.Contains(cmd, "\n") {
				return nil, fmt.Errorf("line %d: a run block holds one command, got %q", i+1, cmd)
			}
			s := docStep{line: i + 1, body: cmd}
			if m := exitsRE.FindStringSubmatch(cmd); m != nil {
				s.exit, _ = strconv.Atoi(m[1])
			}
			steps = append(steps, s)
			i = end
		case strings.HasPrefix(l, writtenMarker) && len(steps) > 0:
			body, end := codeBlock(lines, i+1)
			last := &steps[len(steps)-1]
			if last.written == nil {
				last.written = map[string]string{}
			}
			last.written[strings.TrimSuffix(strings.TrimPrefix(l, writtenMarker), " -->")] = body + "\n"
			i = end
		case l == outputMarker && len(steps) > 0:
			body, end := codeBlock(lines, i+1)
			last := &steps[len(steps)-1]
			for _, o := range strings.Split(body, "\n") {
				if o = strings.TrimRight(o, " "); o != "" && !strings.Contains(o, "...") {
					last.outputs = append(last.outputs, o)
				}
			}
			i = end
		}
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("no %s block", runMarker)
	}
	return steps, nil
}

// codeBlock returns the code block that starts at or after line from
// (past blank and comment lines) and the index of its closing line.
func codeBlock(lines []string, from int) (string, int) {
	i := from
	for i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```") {
		i++
	}
	var body []string
	for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
		body = append(body, lines[i])
	}
	return strings.Join(body, "\n"), i
}

// shadow makes dir a writable folder private to this process: an overlay
// on its nearest existing ancestor, whose writes go to a tmpfs.
func shadow(t *testing.T, dir string) {
	t.Helper()
	base := dir
	for {
		if _, err := os.Stat(base); err == nil {
			break
		}
		base = filepath.Dir(base)
	}
	scratch := t.TempDir()
	if err := syscall.Mount("tmpfs", scratch, "tmpfs", 0, ""); err != nil {
		t.Fatalf("tmpfs on %s: %v", scratch, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(scratch, syscall.MNT_DETACH) })
	upper, work := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mount("overlay", base, "overlay", 0, "lowerdir="+base+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatalf("an overlay on %s (the kernel needs overlayfs): %v", base, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(base, syscall.MNT_DETACH) })
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// installCNIBin links nicmux, the reference plugins and the ifrename
// wrapper into /opt/cni/bin, as make install, make install-plugins and an
// operator's wrapper would put them there.
func installCNIBin(t *testing.T) {
	t.Helper()
	bins := []string{testworld.NicmuxBin(), filepath.Join(testworld.TestPluginsDir(), "ifrename")}
	plugins, _ := filepath.Glob(filepath.Join(testworld.PluginsDir(), "*"))
	for _, b := range append(bins, plugins...) {
		if err := os.Symlink(b, filepath.Join("/opt/cni/bin", filepath.Base(b))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMigrationDocs runs the walk-through.
func TestMigrationDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testworld.RepoRoot(), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := docSteps(string(doc))
	if err != nil {
		t.Fatalf("docs/operations.md: %v", err)
	}
	for _, d := range []string{"/opt/cni", "/etc/nicmux", "/var/lib/cni"} {
		shadow(t, d)
	}
	for _, d := range []string{"/opt/cni/bin", "/opt/cni/config"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	installCNIBin(t)
	del, err := netnsutil.AddVethMaster("ens4")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(del)
	w := &rehearseWorld{world: &world{t: t, Name: "handmade", Files: testworld.Files{IPAMDir: "/var/lib/cni/networks", StateDir: "/var/lib/cni/nicmux"}}}
	w.before = takeHostState(t)
	for _, s := range steps {
		if s.file != "" {
			testworld.WriteFile(t, s.file, s.body+"\n")
			continue
		}
		runDocStep(t, s)
	}
	w.assertNothingLeft()
}

// runDocStep runs one command as a shell would, and checks its exit and
// output.
func runDocStep(t *testing.T, s docStep) {
	t.Helper()
	cmd := exec.Command("sh", "-c", s.body)
	cmd.Env = []string{"PATH=/opt/cni/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	code := cmd.ProcessState.ExitCode()
	t.Logf("docs/operations.md:%d: %s: exit %d\n%s", s.line, s.body, code, stdout.String())
	if code != s.exit {
		t.Errorf("docs/operations.md:%d: %s: exit %d, the docs say %d\nstdout:\n%s\nstderr:\n%s", s.line, s.body, code, s.exit, stdout.String(), stderr.String())
	}
	for _, o := range s.outputs {
		if !strings.Contains(stdout.String(), o) {
			t.Errorf("docs/operations.md:%d: %s: the output lacks the docs' line\n%s\nstdout:\n%s", s.line, s.body, o, stdout.String())
		}
	}
	for path, want := range s.written {
		if got, err := os.ReadFile(path); err != nil || string(got) != want {
			t.Errorf("docs/operations.md:%d: %s wrote %s as\n%s\nthe docs show\n%s", s.line, s.body, path, got, want)
		}
	}
}
