package nomad

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gocni "github.com/containerd/go-cni"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/nomad/legs"
	"github.com/nicmux/nicmux/test/testworld"
)

// `nicmux rehearse` emulates the Nomad client on libcni; this suite drives
// the same configurations through the leg's real go-cni, as the client
// does. TestRehearseAgrees holds the two to the same verdicts, so that the
// emulation cannot drift from the client.

// verdict is how an allocation's life went: pass, or the first step that
// failed (rehearse's step names), and the interface Nomad takes the
// address from.
type verdict struct {
	Pass      bool
	Step      string
	Interface string
}

func (v verdict) String() string {
	if v.Pass {
		return "pass (address of " + v.Interface + ")"
	}
	return "fail at " + v.Step
}

// agreementCase is one configuration of the corpus: install writes it into
// the world's config dir (and may change the world's cni_path) and points
// the job at it; expect, where set, is the verdict the case exists for.
type agreementCase struct {
	name    string
	install func(w *world)
	expect  func(release string) verdict
}

func passAt(ifname string) verdict { return verdict{Pass: true, Interface: ifname} }
func failAt(step string) verdict   { return verdict{Step: step} }

// agreementCorpus are the configurations, good and broken, the verdicts
// must agree on.
func agreementCorpus() []agreementCase {
	return []agreementCase{
		{"the seed's interfaces through nicmux", func(w *world) { w.install() }, func(string) verdict { return passAt("eth0") }},
		{"the seed's hand chain, wrapped", func(w *world) { w.installHandmade(true) }, func(r string) verdict {
			if compareVersions(r, "1.9.5") >= 0 {
				return failAt("CHECK")
			}
			return passAt("eth1")
		}},
		{"the seed's hand chain, plain", func(w *world) { w.installHandmade(false) }, func(string) verdict { return failAt("ADD") }},
		{"a missing binary", func(w *world) {
			w.installList("missing", "1.0.0", w.bridgePlugin("172.26.64.0/20"), map[string]any{"type": "nosuchplugin"})
		}, func(string) verdict { return failAt("ADD") }},
		{"an IPAM typo", func(w *world) { w.installList("typo", "1.0.0", w.bridgePlugin("172.26.640.0/20")) },
			func(string) verdict { return failAt("ADD") }},
		{"a 1.1.0 list whose STATUS fails", func(w *world) {
			w.installList("status", "1.1.0", w.bridgePlugin("172.26.64.0/20"),
				map[string]any{"type": "recorder", "recordFile": w.RecordFile, "failOn": []string{"STATUS"}})
		}, nil},
		{"a chain with no address", func(w *world) { w.installList("noaddr", "1.0.0", map[string]any{"type": "bridge", "bridge": w.Bridge}) },
			func(string) verdict { return failAt("address") }},
		{"the wrapped hand chain, bridge below 1.3.0", func(w *world) {
			w.installHandmade(true)
			w.node.CNIPath = strings.Replace(w.node.CNIPath, pluginsDir(), oldBridge(w.t), 1)
		}, func(string) verdict { return passAt("eth1") }},
	}
}

// TestRehearseAgrees drives every configuration of the corpus through
// this leg's go-cni as each Nomad release rehearse models in the leg's
// range would, then through
// `nicmux rehearse -nomad <those releases> -json` (on the same cni_path,
// with the same port mappings), and wants the same verdicts: pass or fail,
// the failing step, and the interface of the address. Every rehearsal must
// leave nothing behind.
func TestRehearseAgrees(t *testing.T) {
	releases := legRehearsals(t)
	t.Logf("releases of %s: %v", leg.Name, releases)
	for _, c := range agreementCorpus() {
		t.Run(c.name, func(t *testing.T) {
			// Each case has a world of its own (bridge, masters, IPAM
			// folder, ports): the cases' retry pauses overlap.
			t.Parallel()
			w := newWorld(t)
			c.install(w)
			want := map[string]verdict{}
			for _, r := range releases {
				a := w.newAlloc(nil)
				a.Release = r
				want[r] = w.driveAsNomad(a)
				w.rescue(a)
			}
			got := w.rehearse(releases)
			for _, r := range releases {
				if got[r] != want[r] {
					t.Errorf("Nomad %s: nicmux rehearse says %s, go-cni %s says %s", r, got[r], leg.GoCNI, want[r])
				}
				if c.expect != nil && want[r] != c.expect(r) {
					t.Errorf("Nomad %s: go-cni says %s; the case is there for %s", r, want[r], c.expect(r))
				}
			}
			t.Logf("verdicts: %v", want)
		})
	}
}

// legRehearsals are the releases `nicmux rehearse` models (one per
// distinct behaviour) within the range of this leg's releases.
func legRehearsals(t *testing.T) []string {
	t.Helper()
	first, last := leg.Releases[0], leg.Releases[len(leg.Releases)-1]
	var out []string
	for _, r := range rehearseReleases(t) {
		if compareVersions(first, r.Version) <= 0 && compareVersions(r.Version, last) <= 0 {
			out = append(out, r.Version)
		}
	}
	if len(out) == 0 {
		t.Fatalf("nicmux rehearse models no release of %s", leg)
	}
	return out
}

// modelledRelease is a release of `nicmux rehearse -releases -json`.
type modelledRelease struct {
	Version string `json:"version"`
	GoCNI   string `json:"goCNI"`
	CNI     string `json:"cni"`
}

func rehearseReleases(t *testing.T) []modelledRelease {
	t.Helper()
	out, err := exec.Command(testworld.NicmuxBin(), "rehearse", "-releases", "-json").Output()
	failIf(t, err, "nicmux rehearse -releases -json")
	var rs []modelledRelease
	failIf(t, json.Unmarshal(out, &rs), "decoding the releases")
	return rs
}

// TestRehearseReleasesHaveLegs: every release rehearse models falls in a
// leg that links the go-cni and containernetworking/cni it claims, so that
// TestRehearseAgrees holds each against the real pair.
func TestRehearseReleasesHaveLegs(t *testing.T) {
	for _, r := range rehearseReleases(t) {
		var in []string
		for _, l := range legs.All {
			if compareVersions(l.Releases[0], r.Version) <= 0 && compareVersions(r.Version, l.Releases[len(l.Releases)-1]) <= 0 {
				in = append(in, l.Name)
				if l.GoCNI != r.GoCNI || l.CNI != r.CNI {
					t.Errorf("rehearse models Nomad %s with go-cni %s and cni %s; leg %s links %s and %s", r.Version, r.GoCNI, r.CNI, l.Name, l.GoCNI, l.CNI)
				}
			}
		}
		if len(in) == 0 {
			t.Errorf("rehearse models Nomad %s, which no leg covers", r.Version)
		}
	}
}

// installList writes a conflist of the plugins and points the job at it.
func (w *world) installList(name, cniVersion string, plugins ...any) {
	w.t.Helper()
	testworld.WriteJSON(w.t, filepath.Join(w.node.ConfigDir, name+".conflist"),
		map[string]any{"cniVersion": cniVersion, "name": name, "plugins": plugins})
	w.job.Mode = "cni/" + name
}

// bridgePlugin is a bridge on the world's bridge with host-local on subnet.
func (w *world) bridgePlugin(subnet string) map[string]any {
	return map[string]any{"type": "bridge", "bridge": w.Bridge, "ipam": map[string]any{
		"type": "host-local", "dataDir": w.IPAMDir, "ranges": []any{[]any{map[string]any{"subnet": subnet}}}}}
}

// oldBridge is a copy of the leg's plugins folder (links to its files)
// whose bridge reports v1.2.0 when run bare, as a Nomad client's
// fingerprint runs it, and is the leg's bridge otherwise.
func oldBridge(t *testing.T) string {
	dir := t.TempDir()
	entries, err := os.ReadDir(pluginsDir())
	failIf(t, err, "listing the leg's plugins")
	for _, e := range entries {
		if e.Name() != "bridge" && !strings.HasPrefix(e.Name(), ".") {
			failIf(t, os.Symlink(filepath.Join(pluginsDir(), e.Name()), filepath.Join(dir, e.Name())), "linking a plugin")
		}
	}
	script := fmt.Sprintf("#!/bin/sh\nif [ -z \"$CNI_COMMAND\" ]; then echo 'CNI bridge plugin v1.2.0' >&2; exit 0; fi\nexec %s \"$@\"\n",
		filepath.Join(pluginsDir(), "bridge"))
	testworld.WriteFile(t, filepath.Join(dir, "bridge"), []byte(script))
	failIf(t, os.Chmod(filepath.Join(dir, "bridge"), 0o755), "making the old bridge executable")
	return dir
}

// driveAsNomad is the allocation's life as the Nomad release a.Release
// leads it through go-cni: STATUS and setup with its tries, the address,
// a restart with CHECK (1.9.5 on, the gate open), the teardown (STATUS,
// Remove), then the leak check. It stops at the first step that fails.
func (w *world) driveAsNomad(a *alloc) verdict {
	c, err := w.node.client(a.Mode)
	if err != nil {
		return failAt("load")
	}
	if c.Status() != nil {
		return failAt("STATUS")
	}
	res, errs := w.node.setup(a)
	if res == nil {
		w.t.Logf("Nomad %s: setup failed: %v", a.Release, errs)
		return failAt("ADD")
	}
	ifname, err := addressInterface(res, a.Release)
	if err != nil {
		return failAt("address")
	}
	if compareVersions(a.Release, "1.9.5") >= 0 && checkGateOpen(fingerprint(w.node.CNIPath)) {
		if err := w.node.check(a); err != nil {
			w.t.Logf("Nomad %s: CHECK: %v", a.Release, err)
			return failAt("CHECK")
		}
	}
	if c, err = w.node.client(a.Mode); err != nil || c.Status() != nil {
		return failAt("teardown STATUS")
	}
	if err := c.Remove(context.Background(), a.ID, a.NetNS, gocni.WithCapabilityPortMap(a.Ports)); err != nil {
		return failAt("DEL")
	}
	if leaks := w.leaksOf(a); len(leaks) > 0 {
		w.t.Logf("Nomad %s: left: %v", a.Release, leaks)
		return failAt("leak check")
	}
	return passAt(ifname)
}

// addressInterface is the interface whose address Nomad release reports.
func addressInterface(res *gocni.Result, release string) (string, error) {
	addr, _, err := nomadAddress(res, release)
	if err != nil {
		return "", err
	}
	for name, c := range res.Interfaces {
		for _, ip := range c.IPConfigs {
			if c.Sandbox != "" && ip.IP.String() == addr {
				return name, nil
			}
		}
	}
	return "", fmt.Errorf("no sandboxed interface has %s", addr)
}

// leaksOf lists what the allocation still holds: links in its netns,
// leases naming it, nat rules naming it, nicmux state.
func (w *world) leaksOf(a *alloc) []string {
	out := testworld.Links(w.t, a.NetNS)
	leases, _ := filepath.Glob(filepath.Join(w.IPAMDir, "*", "*"))
	for _, f := range leases {
		if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(b), a.ID) {
			out = append(out, f)
		}
	}
	out = append(out, testworld.Iptables(w.t, "nat", a.ID)...)
	if _, err := os.Stat(filepath.Join(w.StateDir, "containers", a.ID)); err == nil {
		out = append(out, "nicmux state of "+a.ID)
	}
	return out
}

// rescue releases what a failed life left, with a Remove that no STATUS
// stops, and the netns.
func (w *world) rescue(a *alloc) {
	if c, err := w.node.client(a.Mode); err == nil {
		_ = c.Remove(context.Background(), a.ID, a.NetNS, gocni.WithCapabilityPortMap(a.Ports))
	}
	_ = netnsutil.DestroyAt(a.NetNS)
}

// rehearse runs nicmux rehearse on the job's configuration for the
// releases, with the job's ports, and returns its verdicts; every
// rehearsal must have cleaned up after itself.
func (w *world) rehearse(releases []string) map[string]verdict {
	w.t.Helper()
	name, err := networkName(w.job.Mode)
	failIf(w.t, err, "the job's network")
	args := []string{"rehearse", "-net", name, "-confdir", w.node.ConfigDir, "-cni-path", w.node.CNIPath,
		"-nomad", strings.Join(releases, ","), "-namespace", w.job.Namespace, "-job", w.job.Job, "-json"}
	host := 20000 + int(hostPorts.Add(1))
	for _, p := range w.job.Ports {
		args = append(args, "-port", fmt.Sprintf("%d:%d", host, p.To))
	}
	cmd := exec.Command(testworld.NicmuxBin(), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		w.t.Fatalf("nicmux %s: %v", strings.Join(args, " "), err)
	}
	var rep struct {
		Releases []struct {
			Release struct {
				Version string `json:"version"`
			} `json:"release"`
			Pass    bool   `json:"pass"`
			Step    string `json:"step"`
			Message string `json:"message"`
			Address *struct {
				Interface string `json:"interface"`
			} `json:"address"`
			Left []string `json:"left"`
		} `json:"releases"`
	}
	if err := json.Unmarshal(out, &rep); err != nil || len(rep.Releases) != len(releases) {
		w.t.Fatalf("nicmux rehearse -json: %v, %d outcomes for %d releases\nstdout: %s\nstderr: %s", err, len(rep.Releases), len(releases), out, stderr.String())
	}
	got := map[string]verdict{}
	for _, o := range rep.Releases {
		v := verdict{Pass: o.Pass, Step: o.Step}
		if o.Pass && o.Address != nil {
			v.Interface = o.Address.Interface
		}
		got[o.Release.Version] = v
		if len(o.Left) > 0 {
			w.t.Errorf("Nomad %s: nicmux rehearse left behind: %v", o.Release.Version, o.Left)
		}
		w.t.Logf("nicmux rehearse, Nomad %s: %s %s", o.Release.Version, v, o.Message)
	}
	return got
}
