package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/nicmux/nicmux/conf"
)

// entry is nicmux's entry in the runtime's configuration: the plugin of
// type nicmux in a .conflist, or a .conf of type nicmux.
type entry struct {
	file string
	data []byte
	// index is the entry's place in the list's plugins; -1 in a .conf,
	// whose object is the entry.
	index      int
	name       string
	cniVersion string
	// plugins are the types of the list's plugins, the entry's included,
	// in order; a .conf has one.
	plugins []string
	// raw holds the entry's own keys as written.
	raw map[string]json.RawMessage
	// bytes is the entry's configuration as the runtime hands it to
	// nicmux: the list's name and cniVersion set in it, as libcni does.
	bytes []byte
}

// field returns the path of the entry's key in the file.
func (e *entry) field(key string) string {
	switch {
	case e.index < 0:
		return key
	case key == "":
		return fmt.Sprintf("plugins[%d]", e.index)
	}
	return fmt.Sprintf("plugins[%d].%s", e.index, key)
}

func (e *entry) pos(field string) conf.Position { return conf.LocateJSON(e.file, e.data, field) }

// fail makes the finding for an entry that cannot be used at all.
func (e *entry) fail(field, hint, format string, args ...any) *finding {
	f := newFinding(sevError, e.pos(field), field, hint, format, args...)
	return &f
}

// readEntry reads the conflist (or .conf) at file and finds nicmux's entry,
// or says why it cannot.
func readEntry(file string) (*entry, *finding) {
	data, err := os.ReadFile(file)
	if err != nil {
		f := newFinding(sevError, conf.Position{File: file}, "", "pass the runtime's conflist (Nomad: a file in the client's cni_config_dir)", "cannot read the conflist: %v", err)
		return nil, &f
	}
	e := &entry{file: file, data: data, index: -1}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		at := conf.Position{File: file}
		if syn := (*json.SyntaxError)(nil); errors.As(err, &syn) {
			at = conf.OffsetPosition(file, data, int(syn.Offset)-1)
		}
		f := newFinding(sevError, at, "", "the runtime cannot read it either: fix the JSON", "not a JSON object: %v", err)
		return nil, &f
	}
	_ = json.Unmarshal(top["name"], &e.name)
	_ = json.Unmarshal(top["cniVersion"], &e.cniVersion)
	objects := []json.RawMessage{data}
	list, isList := top["plugins"]
	if isList {
		objects = nil
		if err := json.Unmarshal(list, &objects); err != nil {
			return nil, e.fail("plugins", "the runtime refuses it too: make it a list of plugin objects", "must be a list of plugin objects: %v", err)
		}
	}
	for i, obj := range objects {
		var p struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(obj, &p)
		e.plugins = append(e.plugins, p.Type)
		if p.Type == "nicmux" && e.raw == nil {
			if isList {
				e.index = i
			}
			if err := json.Unmarshal(obj, &e.raw); err != nil {
				return nil, e.fail(e.field(""), "the runtime refuses it too: make it a JSON object", "must be a JSON object: %v", err)
			}
		}
	}
	if e.raw == nil {
		field := "type"
		if isList {
			field = "plugins"
		}
		return nil, e.fail(field, `nicmux's entry is the plugin with "type": "nicmux": pass the conflist that names it`, `no plugin of type "nicmux"`)
	}
	e.bytes = injectList(e.raw, e.name, e.cniVersion)
	return e, nil
}

// injectList returns the entry as libcni hands it to the plugin: with the
// list's name and cniVersion.
func injectList(raw map[string]json.RawMessage, name, version string) []byte {
	obj := make(map[string]json.RawMessage, len(raw)+2)
	for k, v := range raw {
		obj[k] = v
	}
	obj["name"], _ = json.Marshal(name)
	obj["cniVersion"], _ = json.Marshal(version)
	b, _ := json.Marshal(obj)
	return b
}

// netConf decodes the entry into conf.NetConf: nc is nil when the entry
// cannot be decoded, and err is conf.ParseNetConf's verdict. nc is filled
// even when only the validation failed, so that what can still be checked
// is.
func (e *entry) netConf() (nc *conf.NetConf, err error) {
	nc, err = conf.ParseNetConf(e.bytes)
	if err == nil {
		return nc, nil
	}
	nc = &conf.NetConf{}
	if json.Unmarshal(e.bytes, nc) != nil {
		return nil, err
	}
	return nc, err
}

// netConfKeys returns the keys nicmux reads from its entry: the JSON names
// of conf.NetConf's fields, so that they follow the struct as it grows.
func netConfKeys() []string { return jsonKeys(reflect.TypeFor[conf.NetConf]()) }

// jsonKeys returns the object keys encoding/json decodes into struct type t,
// sorted.
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			keys = append(keys, jsonKeys(f.Type)...)
		case !f.IsExported():
		case name == "":
			keys = append(keys, f.Name)
		default:
			keys = append(keys, name)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// known reports whether encoding/json would fill a field from key: it takes
// an exact match, else one that differs only in case.
func known(keys []string, key string) bool {
	for _, k := range keys {
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

// suggest returns the key nearest to key by edit distance, if near enough to
// be a typo.
func suggest(keys []string, key string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(strings.ToLower(k), strings.ToLower(key)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
