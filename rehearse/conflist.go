package rehearse

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/containernetworking/cni/libcni"
	"gopkg.in/yaml.v3"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/nomad"
)

// FindNetwork finds the configuration of network name in dir as the client
// does for a job's mode "cni/<name>": the first file, sorted, ending in
// .conf, .conflist or .json whose name is the lower-cased name.
func FindNetwork(dir, name string) (string, error) {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	want := nomad.NetworkName(name)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if l, err := loadList(f, data); err == nil && l.Name == want {
			return f, nil
		}
	}
	return "", fmt.Errorf("no CNI network configuration named %q in %s (the client looks for the lower-cased name in its .conf, .conflist and .json files)", want, dir)
}

// hostLocalDataDir is host-local's dataDir when a configuration names none.
const hostLocalDataDir = "/var/lib/cni/networks"

// places are where the plugins of a configuration keep what a container
// holds, for the leak check: host-local's data folders and nicmux's state
// folders; and the bridges the bridge plugin makes for it.
type places struct {
	DataDirs  []string `json:"dataDirs"`
	StateDirs []string `json:"stateDirs,omitempty"`
	Bridges   []string `json:"bridges,omitempty"`
}

// bridgeDefault is the bridge plugin's bridge when a configuration names
// none.
const bridgeDefault = "cni0"

// placesOf finds them in the configuration data and, for a nicmux entry,
// in every attachment set of its attachment file's folder.
func placesOf(data []byte) places {
	var doc any
	_ = json.Unmarshal(data, &doc)
	var p places
	p.walk(doc)
	sort.Strings(p.DataDirs)
	sort.Strings(p.StateDirs)
	sort.Strings(p.Bridges)
	return p
}

func (p *places) walk(v any) {
	switch v := v.(type) {
	case map[string]any:
		p.plugin(v)
		for _, x := range v {
			p.walk(x)
		}
	case []any:
		for _, x := range v {
			p.walk(x)
		}
	}
}

// plugin notes what one plugin configuration (or nested IPAM one) names.
func (p *places) plugin(m map[string]any) {
	str := func(k, def string) string {
		if s, ok := m[k].(string); ok && s != "" {
			return s
		}
		return def
	}
	switch m["type"] {
	case "bridge":
		p.add(&p.Bridges, str("bridge", bridgeDefault))
	case "host-local":
		p.add(&p.DataDirs, str("dataDir", hostLocalDataDir))
	case "nicmux":
		p.add(&p.StateDirs, str("stateDir", conf.DefaultStateDir))
		if a := str("attachments", ""); filepath.IsAbs(a) {
			sets, _ := filepath.Glob(filepath.Join(filepath.Dir(a), "*.yaml"))
			for _, f := range append(sets, a) {
				p.walk(readYAML(f))
			}
		}
	}
}

func (p *places) add(list *[]string, dir string) {
	if !slices.Contains(*list, dir) {
		*list = append(*list, dir)
	}
}

// readYAML reads an attachment file as plain data, nil if it cannot.
func readYAML(file string) any {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var doc any
	if yaml.Unmarshal(b, &doc) != nil {
		return nil
	}
	return doc
}
