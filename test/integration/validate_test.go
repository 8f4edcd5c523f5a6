package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nicmux/nicmux/test/testworld"
)

// nicmux validate, with the real reference plugins: what it accepts, ADD
// accepts, and what it refuses, ADD refuses with the same words.

// validateReport is nicmux validate -json's shape.
type validateReport struct {
	Findings []struct {
		File     string `json:"file"`
		Line     int    `json:"line"`
		Severity string `json:"severity"`
		Field    string `json:"field"`
		Message  string `json:"message"`
	} `json:"findings"`
	Errors, Warnings, Notes int
}

// errorsAt returns the messages of the report's errors at field.
func (r validateReport) errorsAt(field string) []string {
	var out []string
	for _, f := range r.Findings {
		if f.Severity == "error" && f.Field == field {
			out = append(out, f.Message)
		}
	}
	return out
}

// validate runs nicmux validate -json with the world's CNI path.
func (w *world) validate(args ...string) (validateReport, cmdResult) {
	w.t.Helper()
	r := runNicmux(w.t, append([]string{"validate", "-json", "-cni-path", strings.Join(testworld.CNIPath(), ":")}, args...)...)
	var rep validateReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		w.t.Fatalf("validate -json: %v\n%s", err, r)
	}
	return rep, r
}

// ipamYAML is one interface, a macvlan whose IPAM section is the case's.
const ipamYAML = `interfaces:
  - ifname: eth1
    network: storage
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: IPAM
`

// TestValidateIPAM: validate runs host-local's and static's own ADD on
// each section (with a scratch dataDir for host-local): a section it
// refuses, ADD refuses with the same words (and host-local's refusals
// leave a record its DEL refuses too, until the file is fixed: why
// validate must catch them); one it accepts, ADD attaches, and DEL
// releases. Another IPAM type gets a note. validate leaves no lease and no
// scratch folder.
func TestValidateIPAM(t *testing.T) {
	cases := []struct{ name, ipam, refusal string }{
		{"host-local, ranges one level too shallow", `{type: host-local, dataDir: {{.IPAMDir}}, ranges: [{subnet: 10.88.0.0/24}]}`,
			"json: cannot unmarshal object into Go struct field IPAMConfig.ipam.ranges of type allocator.RangeSet"},
		{"host-local, rangeStart outside the subnet", `{type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24, rangeStart: 10.89.0.5}]]}`,
			"invalid range set 0: RangeStart 10.89.0.5 not in network 10.88.0.0/24"},
		{"static, an address without its prefix", `{type: static, addresses: [{address: 10.88.0.7}]}`,
			"the 'address' field is expected to be in CIDR notation, got: '10.88.0.7'"},
		{"host-local, well formed", `{type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}`, ""},
		{"static, well formed", `{type: static, addresses: [{address: 10.88.0.7/24}]}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.Master = testworld.MakeMaster(t, 0)
			file := w.writeYAML("multi.yaml", strings.Replace(ipamYAML, "IPAM", c.ipam, 1))
			tmpBefore := scratchFolders(t)
			rep, r := w.validate(file)
			if got := scratchFolders(t); got != tmpBefore {
				t.Errorf("validate left %d scratch folders in %s", got-tmpBefore, os.TempDir())
			}
			if got, _ := w.Leases("storage"); len(got) != 0 {
				t.Errorf("validate left leases: %v", got)
			}
			l := w.list(file, nil)
			netns := newNS(t)
			_, err := w.add(l, rt("ipam-1", netns))
			if c.refusal == "" {
				if rep.Errors+rep.Warnings+rep.Notes != 0 || r.code != 0 {
					t.Errorf("validate of a section host-local accepts: %s", r)
				}
				if err != nil {
					t.Fatalf("ADD of a section validate accepts: %v", err)
				}
				if err := w.del(l, rt("ipam-1", netns)); err != nil {
					t.Fatal(err)
				}
				w.assertNothingLeft(netns, "storage")
				return
			}
			if r.code != 1 || rep.Errors != 1 || rep.Findings[0].Line != 7 || rep.Findings[0].Field != "interfaces[0].plugins[0].ipam" ||
				!strings.Contains(rep.Findings[0].Message, c.refusal) {
				t.Errorf("validate: %s\nwant one error at line 7, ipam, saying %q", r, c.refusal)
			}
			testworld.WantCNIError(t, err, testworld.CNICode(err), "eth1: plugin macvlan: "+c.refusal)
			w.writeYAML("multi.yaml", strings.Replace(ipamYAML, "IPAM", cases[3].ipam, 1))
			if err := w.del(l, rt("ipam-1", netns)); err != nil {
				t.Fatalf("DEL once the file is fixed: %v", err)
			}
			w.assertNothingLeft(netns, "storage")
		})
	}
	t.Run("another IPAM type", func(t *testing.T) {
		w := newWorld(t)
		w.Master = testworld.MakeMaster(t, 0)
		rep, r := w.validate(w.writeYAML("multi.yaml", strings.Replace(ipamYAML, "IPAM", "{type: nicmux-ipam, etcd: {endpoints: [127.0.0.1:1]}}", 1)))
		if r.code != 0 || rep.Notes != 1 || !strings.Contains(rep.Findings[0].Message, `validate does not check the section of IPAM type "nicmux-ipam"`) {
			t.Errorf("validate of a nicmux-ipam section: %s\nwant a note that it is not checked", r)
		}
	})
}

// scratchFolders counts validate's scratch folders in the temporary
// folder.
func scratchFolders(t *testing.T) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "nicmux-validate-*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// TestValidateStateDir: a state folder ADD cannot use (another user's, on
// a read-only mount, under a file) is an error of validate at the entry's
// stateDir, and ADD fails on it with code 5, having attached nothing.
func TestValidateStateDir(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the stateDir
		want  string
	}{
		{"another user's", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "theirs")
			if err := os.Mkdir(p, 0o700); err != nil || os.Chown(p, 4321, 4321) != nil {
				t.Fatal(err)
			}
			return p
		}, "is owned by uid 4321, not by nicmux's user (uid 0)"},
		{"read-only", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "ro")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "mode=0700"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = unix.Unmount(p, unix.MNT_DETACH) })
			return p
		}, "takes no new file: read-only file system"},
		{"under a file", func(t *testing.T, dir string) string {
			testworld.WriteFile(t, filepath.Join(dir, "a-file"), "")
			return filepath.Join(dir, "a-file", "state")
		}, "a-file is a file, not a folder"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			stateDir := c.setup(t, w.Dir)
			l := w.list(w.seed(), map[string]any{"stateDir": stateDir})
			rep, r := w.validate("-conflist", w.conflistFile(l))
			if got := rep.errorsAt("plugins[0].stateDir"); r.code != 1 || rep.Errors != 1 || len(got) != 1 || !strings.Contains(got[0], c.want) {
				t.Errorf("validate: %s\nwant one error at stateDir saying %q", r, c.want)
			}
			netns := newNS(t)
			_, err := w.add(l, rt("state-1", netns))
			testworld.WantCNIError(t, err, 5, "stateDir")
			if got := testworld.Links(t, netns); len(got) != 0 {
				t.Errorf("links after the refused ADD: %v", got)
			}
		})
	}
}

// TestPluginsCommand: nicmux plugins with the reference plugins the
// Makefile stamps: every plugin of the seed job with its release, the
// test's recorder unversioned (a plain go build), and CHECK's gate open.
func TestPluginsCommand(t *testing.T) {
	w := newWorld(t)
	conflist := w.conflistFile(w.list(w.seed(), nil))
	r := runNicmux(t, "plugins", "-json", "-conflist", conflist, "-cni-path", strings.Join(testworld.CNIPath(), ":"))
	var inv struct {
		Plugins []struct {
			Name, Binary, Version, Problem string
		}
		Check struct {
			Open    bool
			Version string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &inv); err != nil || r.code != 0 {
		t.Fatalf("plugins -json: %v\n%s", err, r)
	}
	got := map[string]string{}
	for _, p := range inv.Plugins {
		got[p.Name] = p.Version
	}
	release := stampedRelease(t)
	for name, want := range map[string]string{"bridge": release, "host-local": release, "macvlan": release, "tuning": release, "recorder": ""} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("plugins: %s version %q (listed %v), want %q\n%s", name, v, ok, want, r.stdout)
		}
	}
	if !inv.Check.Open || inv.Check.Version != release {
		t.Errorf("plugins: CHECK gate %+v, want open at %s", inv.Check, release)
	}
}

// stampedRelease is the release `make plugins` built and stamped into
// bin/plugins (its stamp files say which: a longer plugin list makes
// another for the same release), without its v.
func stampedRelease(t *testing.T) string {
	t.Helper()
	stamps, err := filepath.Glob(filepath.Join(testworld.PluginsDir(), ".stamped-v*"))
	if err != nil || len(stamps) == 0 {
		t.Fatalf("bin/plugins has no stamp file (%v)", err)
	}
	release, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(stamps[0]), ".stamped-v"), "-")
	return release
}
