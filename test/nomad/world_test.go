package nomad

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/nicmux/nicmux/test/testworld"
)

// world is one test's Nomad client node: the example configuration
// installed with test paths, the "host" links it names, and a Nomad client
// (cni_path, cni_config_dir) to drive it.
type world struct {
	t *testing.T
	testworld.Files
	AttachDir string
	// Bridge, Master and StorageMaster stand in for the examples' nicmux0,
	// ens4 and ens5.
	Bridge        string
	Master        string
	StorageMaster string
	node          nomadNode
	job           jobSpec
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	readClientConfig(t) // the example must parse; its paths are replaced
	w := &world{
		t:             t,
		Files:         testworld.FilesIn(dir),
		AttachDir:     filepath.Join(dir, "etc-nicmux"),
		Bridge:        "nmx" + testworld.RandHex(4),
		Master:        testworld.MakeMaster(t, 1500),
		StorageMaster: testworld.MakeMaster(t, 9000),
		node:          nomadNode{CNIPath: testCNIPath(), ConfigDir: filepath.Join(dir, "cni-config")},
		job:           readJob(t),
	}
	t.Cleanup(func() { testworld.DeleteHostLink(w.Bridge) })
	w.LogOnFailure(t)
	return w
}

// in returns this world for a subtest: the same node, files and links,
// with failures and cleanups reported to t.
func (w *world) in(t *testing.T) *world {
	c := *w
	c.t = t
	return &c
}

// token maps a host link name used in the examples to this world's.
func (w *world) token(name string) string {
	m := map[string]string{"nicmux0": w.Bridge, "ens4": w.Master, "ens5": w.StorageMaster}
	v, ok := m[name]
	if !ok {
		w.t.Fatalf("examples name host link %q, which the suite does not know: add it to world.token", name)
	}
	return v
}

// chainEdit changes the plugin list of one interface of one attachment set,
// on top of the example.
type chainEdit func(set, ifname string, plugins []any) []any

// install writes the example configuration into this world: multi.conflist
// into the config dir (with decoys around it, as a real cni_config_dir may
// have), multi.yaml and storage.yaml into the attachment folder, each with
// test paths and links put in and edits applied.
func (w *world) install(edits ...chainEdit) {
	w.t.Helper()
	w.installConflist()
	w.installDecoys()
	for _, set := range []string{"multi", "storage"} {
		w.installSet(set, edits...)
	}
}

func (w *world) installConflist() {
	w.t.Helper()
	var list map[string]any
	testworld.ReadJSON(w.t, filepath.Join(examplesDir(), "multi.conflist"), &list)
	plugin := list["plugins"].([]any)[0].(map[string]any)
	attachments, _ := plugin["attachments"].(string)
	if attachments == "" || plugin["stateDir"] == nil || plugin["logFile"] == nil {
		w.t.Fatalf("examples/nomad/multi.conflist: the nicmux entry lacks attachments, stateDir or logFile: %v", plugin)
	}
	plugin["attachments"] = filepath.Join(w.AttachDir, filepath.Base(attachments))
	plugin["stateDir"] = w.StateDir
	plugin["logFile"] = w.LogFile
	plugin["logLevel"] = "debug"
	testworld.WriteJSON(w.t, filepath.Join(w.node.ConfigDir, "multi.conflist"), list)
}

// installDecoys puts other networks around multi.conflist: one that sorts
// before it, and a later file with the same name that Nomad must not pick
// (it names a plugin that does not exist).
func (w *world) installDecoys() {
	w.t.Helper()
	testworld.WriteJSON(w.t, filepath.Join(w.node.ConfigDir, "10-other.conflist"), map[string]any{
		"cniVersion": "1.0.0", "name": "other",
		"plugins": []any{map[string]any{"type": "bridge", "bridge": "nosuchbr"}}})
	testworld.WriteJSON(w.t, filepath.Join(w.node.ConfigDir, "zz-multi-old.conf"), map[string]any{
		"cniVersion": "1.0.0", "name": "multi", "type": "no-such-plugin"})
}

func (w *world) installSet(set string, edits ...chainEdit) {
	w.t.Helper()
	doc := readSet(w.t, set)
	for _, iface := range interfaces(w.t, doc) {
		plugins := iface["plugins"].([]any)
		for _, p := range plugins {
			w.localize(p.(map[string]any))
		}
		for _, e := range edits {
			plugins = e(set, ifnameOf(iface), plugins)
		}
		iface["plugins"] = plugins
	}
	out, err := yaml.Marshal(doc)
	failIf(w.t, err, "encoding "+set)
	testworld.WriteFile(w.t, filepath.Join(w.AttachDir, set+".yaml"), out)
}

// localize puts the world's links and IPAM folder into one plugin's
// configuration.
func (w *world) localize(p map[string]any) {
	for _, key := range []string{"bridge", "master"} {
		if v, ok := p[key].(string); ok {
			p[key] = w.token(v)
		}
	}
	if ipam, ok := p["ipam"].(map[string]any); ok && ipam["type"] == "host-local" {
		ipam["dataDir"] = w.IPAMDir
	}
}

// readSet reads an example attachment set as plain data.
func readSet(t *testing.T, set string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examplesDir(), set+".yaml"))
	failIf(t, err, "reading example set")
	var doc map[string]any
	failIf(t, yaml.Unmarshal(b, &doc), "parsing example set "+set)
	return doc
}

func interfaces(t *testing.T, doc map[string]any) []map[string]any {
	t.Helper()
	list, ok := doc["interfaces"].([]any)
	if !ok || len(list) == 0 {
		t.Fatalf("attachment set without interfaces: %v", doc)
	}
	var out []map[string]any
	for _, it := range list {
		out = append(out, it.(map[string]any))
	}
	return out
}

func ifnameOf(iface map[string]any) string {
	if n, ok := iface["ifname"].(string); ok {
		return n
	}
	return "eth0" // Nomad's CNI_IFNAME
}

// setIface is what an example set says about one interface.
type setIface struct {
	IfName, Network, Subnet string
}

// exampleSet returns an example set's interfaces, networks and subnets, so
// that assertions follow the examples.
func exampleSet(t *testing.T, set string) []setIface {
	t.Helper()
	var out []setIface
	for _, iface := range interfaces(t, readSet(t, set)) {
		si := setIface{IfName: ifnameOf(iface)}
		si.Network, _ = iface["network"].(string)
		for _, p := range iface["plugins"].([]any) {
			if ipam, ok := p.(map[string]any)["ipam"].(map[string]any); ok {
				si.Subnet = ipam["ranges"].([]any)[0].([]any)[0].(map[string]any)["subnet"].(string)
			}
		}
		if si.Network == "" || si.Subnet == "" {
			t.Fatalf("example set %s: interface %s needs a network name and a host-local subnet", set, si.IfName)
		}
		out = append(out, si)
	}
	return out
}

// networks returns the host-local network names of example sets.
func networks(t *testing.T, sets ...string) []string {
	t.Helper()
	seen := map[string]bool{}
	var out []string
	for _, set := range sets {
		for _, si := range exampleSet(t, set) {
			if !seen[si.Network] {
				seen[si.Network] = true
				out = append(out, si.Network)
			}
		}
	}
	return out
}

// withRecorder appends the test-only recorder plugin to one interface's
// chain, declaring the given capabilities.
func (w *world) withRecorder(set, ifname string, caps map[string]bool) chainEdit {
	return func(s, i string, plugins []any) []any {
		if s != set || i != ifname {
			return plugins
		}
		rec := map[string]any{"type": "recorder", "recordFile": w.RecordFile}
		if caps != nil {
			rec["capabilities"] = caps
		}
		return append(plugins, rec)
	}
}

// withMaster points one interface's macvlan at another master link.
func withMaster(set, ifname, master string) chainEdit {
	return func(s, i string, plugins []any) []any {
		if s == set && i == ifname {
			for _, p := range plugins {
				if m := p.(map[string]any); m["type"] == "macvlan" {
					m["master"] = master
				}
			}
		}
		return plugins
	}
}
