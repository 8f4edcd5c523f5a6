package release

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// The package's files besides the binaries, with their modes.
var debFiles = map[string]string{
	"./usr/libexec/nicmux/nicmux-gc":                "-rwxr-xr-x",
	"./usr/lib/systemd/system/nicmux-gc.service":    "-rw-r--r--",
	"./usr/lib/systemd/system/nicmux-gc.timer":      "-rw-r--r--",
	"./usr/lib/systemd/system/nicmux-ipamd.service": "-rw-r--r--",
	"./etc/default/nicmux-gc":                       "-rw-r--r--",
	"./usr/share/doc/nicmux/copyright":              "-rw-r--r--",
	"./usr/share/doc/nicmux/README.md":              "-rw-r--r--",
	"./usr/share/doc/nicmux/CHANGELOG.md":           "-rw-r--r--",
}

// debVersion is the Debian version nfpm gives a release tag: no "v", and a
// pre-release part after "~" (v0.3.0 is 0.3.0, v0.3.0-rc.1 is 0.3.0~rc.1).
func debVersion(tag string) string {
	return strings.Replace(strings.TrimPrefix(tag, "v"), "-", "~", 1)
}

// debPath is the architecture's package in the release.
func debPath(t *testing.T, arch, version string) string {
	t.Helper()
	p := filepath.Join(distDir(), fmt.Sprintf("nicmux_%s_%s.deb", debVersion(version), arch))
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDebianPackage inspects each architecture's package with dpkg-deb:
// its control fields, every file's path, mode and owner, the conffile, the
// maintainer scripts, and the systemd units' and defaults' text.
func TestDebianPackage(t *testing.T) {
	version, _ := release(t)
	for _, a := range arches {
		t.Run(a.goarch, func(t *testing.T) {
			deb := debPath(t, a.goarch, version)
			checkControl(t, deb, a.goarch, version)
			checkContents(t, deb)
			checkScripts(t, deb)
			root := t.TempDir()
			run(t, "/", cleanEnv(), "dpkg-deb", "--extract", deb, root)
			checkUnits(t, root)
		})
	}
}

func checkControl(t *testing.T, deb, arch, version string) {
	t.Helper()
	fields := map[string]string{}
	for _, line := range strings.Split(run(t, "/", cleanEnv(), "dpkg-deb", "--field", deb), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
			fields[k] = v
		}
	}
	want := map[string]string{
		"Package": "nicmux", "Version": debVersion(version), "Architecture": arch,
		"Section": "net", "Priority": "optional", "Homepage": "https://github.com/nicmux/nicmux",
		"Description": "CNI meta-plugin: several interfaces through one CNI entry",
	}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("control field %s: %q, want %q", k, fields[k], v)
		}
	}
	if m := fields["Maintainer"]; !strings.Contains(m, "<") || !strings.HasSuffix(m, ">") {
		t.Errorf("control field Maintainer %q is not \"name <address>\"", m)
	}
	if d, ok := fields["Depends"]; ok {
		t.Errorf("depends on %q: the binaries are static", d)
	}
}

// checkContents checks `dpkg-deb --contents`: exactly the binaries in
// /opt/cni/bin and debFiles, with their modes, every entry root's.
func checkContents(t *testing.T, deb string) {
	t.Helper()
	want := map[string]string{}
	for k, v := range debFiles {
		want[k] = v
	}
	for _, b := range binaries() {
		want["./opt/cni/bin/"+b] = "-rwxr-xr-x"
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "/", cleanEnv(), "dpkg-deb", "--contents", deb)), "\n") {
		// drwxr-xr-x root/root 0 2026-11-30 16:39 ./etc/
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Errorf("unexpected entry %q", line)
			continue
		}
		mode, owner, path := f[0], f[1], f[5]
		if owner != "root/root" {
			t.Errorf("%s: owner %s, want root/root", path, owner)
		}
		if strings.HasSuffix(path, "/") {
			if mode != "drwxr-xr-x" {
				t.Errorf("%s: mode %s, want drwxr-xr-x", path, mode)
			}
			continue
		}
		got[path] = mode
	}
	for path, mode := range want {
		if got[path] != mode {
			t.Errorf("%s: mode %q, want %q", path, got[path], mode)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("unexpected file %s", path)
		}
	}
}

// checkScripts checks the control archive: the defaults file is the only
// conffile, and the maintainer scripts are shell that parses and handle
// the timer and the daemon.
func checkScripts(t *testing.T, deb string) {
	t.Helper()
	dir := t.TempDir()
	run(t, "/", cleanEnv(), "dpkg-deb", "--control", deb, dir)
	if b, err := os.ReadFile(filepath.Join(dir, "conffiles")); err != nil || string(b) != "/etc/default/nicmux-gc\n" {
		t.Errorf("conffiles %q (%v), want /etc/default/nicmux-gc", b, err)
	}
	for script, wants := range map[string][]string{
		"postinst": {"for unit in nicmux-gc.timer nicmux-ipamd.service", "deb-systemd-helper enable $unit", "deb-systemd-invoke restart nicmux-ipamd.service"},
		"prerm":    {"deb-systemd-invoke stop nicmux-gc.timer nicmux-gc.service nicmux-ipamd.service"},
		"postrm":   {"deb-systemd-helper purge nicmux-gc.timer", "deb-systemd-helper purge nicmux-ipamd.service"},
	} {
		p := filepath.Join(dir, script)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("no %s: %v", script, err)
			continue
		}
		b, _ := os.ReadFile(p)
		for _, want := range wants {
			if fi.Mode().Perm() != 0o755 || !strings.HasPrefix(string(b), "#!/bin/sh\n") || !strings.Contains(string(b), want) {
				t.Errorf("%s: mode %v, want 0755, a #!/bin/sh script running %q:\n%s", script, fi.Mode(), want, b)
			}
		}
		run(t, "/", cleanEnv(), "sh", "-n", p)
	}
}

// unitFile is a systemd unit's settings: "Section.Key" to its values.
type unitFile map[string][]string

func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, section := unitFile{}, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	return u
}

// checkUnits checks the units and the defaults file as extracted at root,
// and has systemd-analyze verify the units.
func checkUnits(t *testing.T, root string) {
	t.Helper()
	sysd := filepath.Join(root, "usr/lib/systemd/system")
	service := readUnit(t, filepath.Join(sysd, "nicmux-gc.service"))
	timer := readUnit(t, filepath.Join(sysd, "nicmux-gc.timer"))
	defaults := readUnit(t, filepath.Join(root, "etc/default/nicmux-gc"))
	ipamd := readUnit(t, filepath.Join(sysd, "nicmux-ipamd.service"))
	for _, c := range []struct {
		name string
		u    unitFile
		key  string
		want string
	}{
		{"service", service, "Service.Type", "oneshot"},
		{"service", service, "Service.ExecStart", "/usr/libexec/nicmux/nicmux-gc"},
		{"service", service, "Service.EnvironmentFile", "-/etc/default/nicmux-gc"},
		{"timer", timer, "Timer.OnBootSec", "5min"},
		{"timer", timer, "Timer.OnUnitActiveSec", "15min"},
		{"timer", timer, "Install.WantedBy", "timers.target"},
		{"defaults", defaults, ".CNI_CONFIG_DIR", "/opt/cni/config"},
		{"defaults", defaults, ".CNI_PATH", "/opt/cni/bin"},
		{"defaults", defaults, ".NICMUX", "/opt/cni/bin/nicmux"},
		{"defaults", defaults, ".NICMUX_GC_FLAGS", ""},
		{"ipamd", ipamd, "Service.ExecStart", "/opt/cni/bin/nicmux-ipamd serve"},
		{"ipamd", ipamd, "Service.Restart", "always"},
		{"ipamd", ipamd, "Install.WantedBy", "multi-user.target"},
	} {
		if !slices.Equal(c.u[c.key], []string{c.want}) {
			t.Errorf("%s: %s is %q, want %q", c.name, c.key, c.u[c.key], c.want)
		}
	}
	if _, ok := timer["Timer.Unit"]; ok {
		t.Errorf("the timer names a unit: it starts nicmux-gc.service by its name")
	}
	verifyUnits(t, root)
}

// verifyUnits has systemd-analyze verify the units, with ExecStart pointed
// at the extracted script (verify wants the binary to exist): any word from
// it (an unknown key, a bad value) fails.
func verifyUnits(t *testing.T, root string) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"nicmux-gc.service", "nicmux-gc.timer", "nicmux-ipamd.service"} {
		b, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system", name))
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.ReplaceAll(string(b), "/usr/libexec/", filepath.Join(root, "usr/libexec")+"/"))
		b = []byte(strings.ReplaceAll(string(b), "/opt/cni/bin/", filepath.Join(root, "opt/cni/bin")+"/"))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := run(t, dir, cleanEnv("SYSTEMD_LOG_COLOR=0"), "systemd-analyze", "verify", "--man=no", "./nicmux-gc.timer", "./nicmux-gc.service", "./nicmux-ipamd.service")
	if strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
}

// TestPackagedGC runs the package's nicmux-gc script as its timer would,
// with the package's nicmux: over a config folder holding a nicmux
// conflist with a container whose namespace is gone, another nicmux
// conflist whose gc fails, and a conflist of another plugin. It releases
// the container (its lease and record), runs every nicmux conflist and
// no other, and exits 1 for the failed one.
func TestPackagedGC(t *testing.T) {
	version, _ := release(t)
	root := t.TempDir()
	run(t, "/", cleanEnv(), "dpkg-deb", "--extract", debPath(t, "amd64", version), root)
	w := gcWorld(t, filepath.Join(root, "opt/cni/bin/nicmux"))

	script := filepath.Join(root, "usr/libexec/nicmux/nicmux-gc")
	env := cleanEnv("CNI_CONFIG_DIR="+w.confDir, "CNI_PATH="+w.cniPath, "NICMUX="+w.nicmux, "NICMUX_GC_FLAGS=")
	out, err := runErr("/", env, script)
	if code := exitCode(err); code != 1 {
		t.Errorf("nicmux-gc: exit %d (%v), want 1 for the broken conflist\n%s", code, err, out)
	}
	for _, want := range []string{
		"nicmux-gc: " + filepath.Join(w.confDir, "05-broken.conflist") + "\n",
		"error: stateDir " + w.brokenStateDir + ": ",
		"nicmux-gc: " + filepath.Join(w.confDir, "10-multi.conflist") + "\n",
		"released " + w.containerID + " (eth0)",
		"nicmux gc (list multi, " + w.stateDir + "): 1 released, 0 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nicmux-gc output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "plain") || strings.Count(out, "nicmux-gc: ") != 2 {
		t.Errorf("nicmux-gc ran gc for the conflist without nicmux:\n%s", out)
	}
	if left := w.leftovers(t); len(left) != 0 {
		t.Errorf("left after nicmux-gc: %q", left)
	}

	// Nothing to collect: an empty folder is said so, and is no failure.
	empty := t.TempDir()
	out = run(t, "/", cleanEnv("CNI_CONFIG_DIR="+empty, "NICMUX="+w.nicmux), script)
	if !strings.Contains(out, "no conflist with a nicmux entry in "+empty) {
		t.Errorf("nicmux-gc on an empty folder: %q", out)
	}
}

// gcTestWorld is a CNI config folder whose nicmux network holds one
// container whose namespace is gone.
type gcTestWorld struct {
	nicmux, cniPath, confDir, stateDir, brokenStateDir, ipamDir, containerID string
}

// gcWorld attaches a container through nicmux (a bridge with host-local)
// in a namespace of its own, then removes the namespace without DEL, as a
// node that lost its runtime's DEL has it.
func gcWorld(t *testing.T, nicmux string) *gcTestWorld {
	t.Helper()
	dir := t.TempDir()
	w := &gcTestWorld{nicmux: nicmux, cniPath: filepath.Join(binDir(), "plugins"), confDir: filepath.Join(dir, "conf"),
		stateDir: filepath.Join(dir, "state"), brokenStateDir: filepath.Join(dir, "not-a-folder"),
		ipamDir: filepath.Join(dir, "ipam"), containerID: "gc-test-container"}
	attachments := filepath.Join(dir, "multi.yaml")
	testworld.WriteFile(t, attachments, "interfaces:\n  - ifname: eth0\n    network: gctest\n    plugins:\n      - type: bridge\n        bridge: gctest0\n"+
		"        ipam: {type: host-local, dataDir: "+w.ipamDir+", ranges: [[{subnet: 10.231.0.0/24}]]}\n")
	entry := map[string]any{"type": "nicmux", "attachments": attachments, "stateDir": w.stateDir}
	conflist := func(name string, entry map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": name, "plugins": []any{entry, map[string]any{"type": "loopback"}}})
		return b
	}
	testworld.WriteFile(t, filepath.Join(w.confDir, "10-multi.conflist"), string(conflist("multi", entry)))
	// Its stateDir is a file: its gc fails. Sorted before the good one.
	testworld.WriteFile(t, w.brokenStateDir, "")
	testworld.WriteFile(t, filepath.Join(w.confDir, "05-broken.conflist"), string(conflist("broken",
		map[string]any{"type": "nicmux", "attachments": attachments, "stateDir": w.brokenStateDir})))
	testworld.WriteFile(t, filepath.Join(w.confDir, "20-plain.conflist"), `{"cniVersion": "1.0.0", "name": "plain", "plugins": [{"type": "bridge"}]}`)
	t.Cleanup(func() { _, _ = runErr("/", cleanEnv(), "ip", "link", "del", "gctest0") })

	netns := filepath.Join(dir, "netns")
	if err := netnsutil.CreateAt(netns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netnsutil.DestroyAt(netns) })
	stdin, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "multi", "type": "nicmux", "attachments": attachments, "stateDir": w.stateDir})
	cmd := exec.Command(nicmux)
	cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + w.containerID, "CNI_NETNS=" + netns, "CNI_IFNAME=eth0", "CNI_PATH=" + w.cniPath}
	cmd.Stdin = strings.NewReader(string(stdin))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ADD: %v\n%s", err, out)
	}
	if left := w.leftovers(t); len(left) != 2 {
		t.Fatalf("after ADD, want a lease and a record, found %q", left)
	}
	if err := netnsutil.DestroyAt(netns); err != nil {
		t.Fatal(err)
	}
	return w
}

// leftovers lists the network's leases and the container's records.
func (w *gcTestWorld) leftovers(t *testing.T) []string {
	t.Helper()
	var left []string
	leases, _ := filepath.Glob(filepath.Join(w.ipamDir, "gctest", "10.231.*"))
	left = append(left, leases...)
	if _, err := os.Stat(filepath.Join(w.stateDir, "containers", w.containerID)); err == nil {
		left = append(left, "record of "+w.containerID)
	}
	return left
}

// exitCode is err's exit status: 0 for nil, -1 if the command did not run.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
