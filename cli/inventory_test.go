package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPlugins: nicmux plugins lists each plugin the conflist and its sets
// use, with the version its binary reports run bare (as Nomad's
// fingerprint reads it), flags a missing and an unversioned binary, and
// says whether the bridge binary opens Nomad's CHECK gate.
func TestPlugins(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	script := func(name, out string) {
		t.Helper()
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, filepath.Join(bin, name), "#!/bin/sh\necho '"+out+"' >&2\n")
		if err := os.Chmod(filepath.Join(bin, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"nicmux", "loopback", "host-local"} {
		script(name, "CNI "+name+" plugin v1.10.0")
	}
	script("macvlan", "CNI macvlan plugin version unknown")
	writeTestFile(t, filepath.Join(dir, "multi.yaml"), `interfaces:
  - ifname: eth0
    plugins: [{type: bridge, ipam: {type: host-local}}]
  - ifname: eth1
    plugins: [{type: macvlan, ipam: {type: host-local}}, {type: nosuch}]
`)
	conflist := filepath.Join(dir, "multi.conflist")
	writeTestFile(t, conflist, `{"cniVersion": "1.0.0", "name": "multi", "plugins": [{"type": "nicmux", "attachments": "`+
		filepath.Join(dir, "multi.yaml")+`"}, {"type": "loopback"}]}`)

	for _, c := range []struct {
		bridge, gate string
		open         bool
	}{
		{"CNI bridge plugin v1.2.0", "Nomad CHECK on restore: never: " + filepath.Join(bin, "bridge") + " reports 1.2.0, below 1.3.0: Nomad never runs CHECK", false},
		{"CNI bridge plugin version unknown", "Nomad CHECK on restore: never: " + filepath.Join(bin, "bridge") + " reports no version: Nomad never runs CHECK (stamp the build: docs/nomad.md, section 1)", false},
		{"CNI bridge plugin v1.3.0", "Nomad CHECK on restore: runs: " + filepath.Join(bin, "bridge") + " reports 1.3.0, 1.3.0 or later: Nomad 1.9.5 and later run CHECK on restore", true},
	} {
		script("bridge", c.bridge)
		stdout, stderr, code := run(t, pathEnv, "plugins", "-conflist", conflist, "-cni-path", bin)
		want := []string{
			"PLUGIN VERSION BINARY USED BY\n",
			"host-local 1.10.0 " + filepath.Join(bin, "host-local") + " multi.yaml eth0 (ipam), multi.yaml eth1 (ipam)\n",
			"loopback 1.10.0 " + filepath.Join(bin, "loopback") + " multi.conflist\n",
			"macvlan UNVERSIONED " + filepath.Join(bin, "macvlan") + " multi.yaml eth1\n",
			"nosuch - MISSING multi.yaml eth1\n",
			"\nnosuch: no plugin binary \"nosuch\" in " + bin + "\n",
			"\n" + c.gate + "\n",
		}
		columns := regexp.MustCompile(`  +`) // the table's padding
		for _, w := range want {
			if !strings.Contains(columns.ReplaceAllString(stdout, " "), w) {
				t.Errorf("plugins with %q: stdout lacks %q:\n%s", c.bridge, w, stdout)
			}
		}
		if code != 1 || stderr != "" {
			t.Errorf("plugins with a missing binary: exit %d, stderr %s", code, stderr)
		}
		stdout, _, _ = run(t, pathEnv, "plugins", "-json", "-conflist", conflist, "-cni-path", bin)
		var inv inventory
		if err := json.Unmarshal([]byte(stdout), &inv); err != nil || inv.Check.Open != c.open || len(inv.Plugins) != 6 || len(inv.Errors) != 0 {
			t.Errorf("plugins -json with %q: %v\n%s", c.bridge, err, stdout)
		}
	}

	writeTestFile(t, filepath.Join(dir, "multi.yaml"), "interfaces: [{plugins: [{type: macvlan}]}]\n")
	if err := os.Remove(filepath.Join(bin, "bridge")); err != nil {
		t.Fatal(err)
	}
	stdout, _, code := run(t, pathEnv, "plugins", "-conflist", conflist, "-cni-path", bin)
	if code != 0 || !strings.HasSuffix(stdout, "\nNomad CHECK on restore: never: no bridge binary in the CNI path: Nomad never runs CHECK\n") {
		t.Errorf("plugins without a bridge binary: exit %d\n%s", code, stdout)
	}
}
