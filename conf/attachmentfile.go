package conf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"
	"gopkg.in/yaml.v3"
)

// AttachmentFile is a parsed attachment file: the interfaces a container gets,
// in order.
type AttachmentFile struct {
	File       string
	Interfaces []*Chain
	// allowed says which Nomad jobs may select the set; nil: any job.
	allowed *allowRule
	// Warnings are what should be logged about the file itself.
	Warnings []string
}

// Defaults are the values an attachment file may leave out.
type Defaults struct {
	// IfName is the first interface's name when the file leaves it out: the
	// runtime's CNI_IFNAME.
	IfName string
	// ListName is the name of nicmux's network configuration list; the
	// default delegate network name is "<ListName>-<ifname>".
	ListName string
	// CNIVersion is the network configuration list's version.
	CNIVersion string
}

// maxFileSize bounds what is read of an attachment or conflist file: a
// path such as /dev/zero, or any huge file, must not grow nicmux's memory.
const maxFileSize = 1 << 20

// LoadAttachmentFile reads (see readSettled) and parses the attachment file
// at path.
func LoadAttachmentFile(path string, d Defaults) (*AttachmentFile, error) {
	return load(path, func() (*os.File, error) { return openFile(path) }, d)
}

// load reads the attachment file at path, which open opens, and parses it.
func load(path string, open func() (*os.File, error), d Defaults) (*AttachmentFile, error) {
	data, fi, err := readSettled(path, open)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, &Error{Code: types.ErrInvalidNetworkConfig, File: path, Msg: "cannot read attachment file", Err: err}
	}
	att, err := parseAttachmentFile(path, data, d)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o022 != 0 {
		att.Warnings = append(att.Warnings, fmt.Sprintf("%s is writable by group or others (mode %04o): whoever can write it chooses what allocations are attached to; make it 0644 or stricter", path, fi.Mode().Perm()))
	}
	return att, nil
}

// openFile opens a configuration file for reading. O_NONBLOCK: a FIFO put
// in the file's place would otherwise block the verb until a writer comes;
// readCapped then refuses it as not a regular file.
func openFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// readFile reads the configuration file at path as readSettled does.
func readFile(path string) ([]byte, error) {
	data, _, err := readSettled(path, func() (*os.File, error) { return openFile(path) })
	return data, err
}

// readCapped reads a regular file of at most maxFileSize bytes.
func readCapped(f *os.File) ([]byte, os.FileInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > maxFileSize {
		return nil, nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return data, fi, nil
}

// parseAttachmentFile parses an attachment file's contents. path names the file
// in errors and anchors relative conflist paths.
//
// Parsing is strict: unknown keys, duplicate keys, duplicate or invalid
// interface names, an entry with both or neither of plugins and conflist, and
// an empty list are all errors naming the line, column and field.
func parseAttachmentFile(path string, data []byte, d Defaults) (*AttachmentFile, error) {
	p := &parser{file: path, dir: filepath.Dir(path), d: d}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{Code: types.ErrInvalidNetworkConfig, File: path, Msg: "not valid YAML", Err: err}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, &Error{Code: types.ErrInvalidNetworkConfig, File: path, Field: "interfaces", Msg: "the file is empty: it must list at least one interface"}
	}
	return p.document(doc.Content[0])
}

type parser struct {
	file string
	dir  string
	d    Defaults

	// active holds the mappings and lists value is inside of, to refuse an
	// alias that refers to its own ancestor (which would recurse forever).
	active map[*yaml.Node]bool
	// values counts the values value has produced, aliases expanded, to
	// refuse files that expand exponentially ("billion laughs").
	values int
}

// maxValues bounds the number of values in an attachment file's plugin
// configurations after aliases are expanded.
const maxValues = 100000

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) *Error {
	e := &Error{Code: types.ErrInvalidNetworkConfig, File: p.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// wrap is errorf for an error of its own, kept as the Error's Err.
func (p *parser) wrap(n *yaml.Node, field string, err error, format string, args ...any) *Error {
	e := p.errorf(n, field, format, args...)
	e.Err = err
	return e
}

// mapping checks that n is a mapping with no duplicate keys and only the
// allowed ones, and returns its key nodes and value nodes by key.
func (p *parser) mapping(n *yaml.Node, field string, allowed ...string) (map[string]*yaml.Node, map[string]*yaml.Node, error) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return nil, nil, p.errorf(n, field, "must be a mapping, not %s", kindName(n))
	}
	keys := map[string]*yaml.Node{}
	vals := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		if k.Kind != yaml.ScalarNode {
			return nil, nil, p.errorf(k, field, "keys must be plain strings")
		}
		if _, dup := keys[name]; dup {
			return nil, nil, p.errorf(k, join(field, name), "duplicate key (first at line %d)", keys[name].Line)
		}
		if allowed != nil && !slices.Contains(allowed, name) {
			return nil, nil, p.errorf(k, join(field, name), "unknown field (allowed: %v)", allowed)
		}
		keys[name], vals[name] = k, resolve(v)
	}
	return keys, vals, nil
}

func (p *parser) document(root *yaml.Node) (*AttachmentFile, error) {
	_, vals, err := p.mapping(root, "", "interfaces", "allow")
	if err != nil {
		return nil, err
	}
	list, ok := vals["interfaces"]
	if !ok {
		return nil, p.errorf(root, "interfaces", "is required")
	}
	if list.Kind != yaml.SequenceNode {
		return nil, p.errorf(list, "interfaces", "must be a list, not %s", kindName(list))
	}
	if len(list.Content) == 0 {
		return nil, p.errorf(list, "interfaces", "the list is empty: it must list at least one interface")
	}
	a := &AttachmentFile{File: p.file}
	seen := map[string]int{}
	primary := -1
	for i, entry := range list.Content {
		c, err := p.entry(i, entry)
		if err != nil {
			return nil, err
		}
		if first, dup := seen[c.IfName]; dup {
			return nil, p.errorf(entry, fmt.Sprintf("interfaces[%d].ifname", i), "duplicate interface %q (also interfaces[%d])", c.IfName, first)
		}
		if c.Primary && primary >= 0 {
			_, vals, _ := p.mapping(entry, "")
			return nil, p.errorf(vals["primary"], fmt.Sprintf("interfaces[%d].primary", i),
				"only one interface may be primary: %s (interfaces[%d]) and %s (interfaces[%d]) both are",
				a.Interfaces[primary].IfName, primary, c.IfName, i)
		}
		if c.Primary {
			primary = i
		}
		seen[c.IfName] = i
		a.Interfaces = append(a.Interfaces, c)
	}
	if n, ok := vals["allow"]; ok {
		if a.allowed, err = p.allow(n); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Primary returns the interface marked `primary: true`, or nil.
func (a *AttachmentFile) Primary() *Chain {
	for _, c := range a.Interfaces {
		if c.Primary {
			return c
		}
	}
	return nil
}

// entry parses interfaces[i] into its chain.
func (p *parser) entry(i int, n *yaml.Node) (*Chain, error) {
	field := fmt.Sprintf("interfaces[%d]", i)
	keys, vals, err := p.mapping(n, field, "ifname", "network", "cniVersion", "plugins", "conflist", "disableCheck", "disableGC", "primary")
	if err != nil {
		return nil, err
	}
	e := &entryNode{p: p, n: n, field: field, first: i == 0, keys: keys, vals: vals}
	c := &Chain{}
	// In this order: a conflist file's name and version give way to the
	// entry's, and the defaults, which need the ifname, to both.
	for _, read := range []func(*Chain) error{e.ifname, e.chain, e.network, e.cniVersion, e.flags} {
		if err := read(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// entryNode is one entry of interfaces, its keys and values by key.
type entryNode struct {
	p          *parser
	n          *yaml.Node
	field      string
	first      bool
	keys, vals map[string]*yaml.Node
}

// str returns the string at key and where it is written: the entry itself
// when the key is absent (given false: a default applies).
func (e *entryNode) str(key string) (value string, given bool, at *yaml.Node, err error) {
	v, ok := e.vals[key]
	if !ok {
		return "", false, e.n, nil
	}
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", true, v, e.p.errorf(v, join(e.field, key), "must be a string, not %s", kindName(v))
	}
	return v.Value, true, v, nil
}

// defaulted sets *dst to the string at key when it is given, else to def
// unless a conflist file set it; it returns where the value is written.
func (e *entryNode) defaulted(key string, dst *string, def string) (*yaml.Node, error) {
	v, given, at, err := e.str(key)
	if given {
		*dst = v
	}
	if *dst == "" {
		*dst = def
	}
	return at, err
}

func (e *entryNode) ifname(c *Chain) error {
	name, given, at, err := e.str("ifname")
	switch {
	case err != nil:
		return err
	case !given && !e.first:
		return e.p.errorf(e.n, join(e.field, "ifname"), "is required on every entry but the first")
	case !given:
		name = e.p.d.IfName
	}
	if err := validateIfName(name); err != nil {
		return e.p.errorf(at, join(e.field, "ifname"), "invalid interface name %q: %v", name, err)
	}
	c.IfName = name
	return nil
}

// chain reads the entry's plugins, or the conflist file it names.
func (e *entryNode) chain(c *Chain) error {
	plugins, conflist := e.vals["plugins"], e.vals["conflist"]
	switch {
	case plugins != nil && conflist != nil:
		return e.p.errorf(e.keys["conflist"], e.field, "has both plugins and conflist: give exactly one")
	case plugins == nil && conflist == nil:
		return e.p.errorf(e.n, e.field, "has neither plugins nor conflist: give exactly one")
	case plugins != nil:
		var err error
		c.Plugins, err = e.p.plugins(join(e.field, "plugins"), plugins)
		return err
	}
	return e.p.conflist(c, join(e.field, "conflist"), conflist)
}

func (e *entryNode) network(c *Chain) error {
	at, err := e.defaulted("network", &c.Network, e.p.d.ListName+"-"+c.IfName)
	if err != nil {
		return err
	}
	if ve := utils.ValidateNetworkName(c.Network); ve != nil {
		return e.p.errorf(at, join(e.field, "network"), "invalid network name %q: %s", c.Network, cniMsg(ve))
	}
	return nil
}

func (e *entryNode) cniVersion(c *Chain) error {
	at, err := e.defaulted("cniVersion", &c.CNIVersion, e.p.d.CNIVersion)
	if err == nil && !IsSupportedVersion(c.CNIVersion) {
		err = e.p.errorf(at, join(e.field, "cniVersion"), "%q is not supported (supported: %v)", c.CNIVersion, SupportedVersions())
	}
	return err
}

// flags reads the entry's booleans.
func (e *entryNode) flags(c *Chain) error {
	for key, dst := range map[string]*bool{"disableCheck": &c.DisableCheck, "disableGC": &c.DisableGC, "primary": &c.Primary} {
		if v, ok := e.vals[key]; ok {
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
				return e.p.errorf(v, join(e.field, key), "must be true or false")
			}
			*dst = v.Value == "true"
		}
	}
	return nil
}

func (p *parser) plugins(field string, n *yaml.Node) ([]*Plugin, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errorf(n, field, "must be a list of plugin configurations, not %s", kindName(n))
	}
	if len(n.Content) == 0 {
		return nil, p.errorf(n, field, "the list is empty: a chain needs at least one plugin")
	}
	var out []*Plugin
	for j, pn := range n.Content {
		pf := fmt.Sprintf("%s[%d]", field, j)
		pn = resolve(pn)
		if _, _, err := p.mapping(pn, pf); err != nil {
			return nil, err
		}
		v, err := p.value(pf, pn)
		if err != nil {
			return nil, err
		}
		obj := v.(map[string]any)
		typ, ok := obj["type"].(string)
		if !ok || typ == "" {
			return nil, p.errorf(pn, join(pf, "type"), "is required: the delegate plugin's binary name")
		}
		b, err := MarshalJSON(obj)
		if err != nil {
			return nil, p.errorf(pn, pf, "cannot encode as JSON: %v", err)
		}
		plugin, err := parsePlugin(b)
		if err != nil {
			return nil, p.errorf(pn, pf, "%v", err)
		}
		out = append(out, plugin)
	}
	return out, nil
}

func (p *parser) conflist(c *Chain, field string, n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Value == "" {
		return p.errorf(n, field, "must be the path of a .conflist or .conf file")
	}
	path := conflistPath(p.dir, n.Value)
	data, err := readFile(path)
	if err != nil {
		return p.wrap(n, field, err, "cannot read %s", path)
	}
	parsed, err := parseConfList(data)
	if err != nil {
		return p.wrap(n, field, err, "%s", path)
	}
	c.Plugins = parsed.Plugins
	c.Network = parsed.Network
	c.CNIVersion = parsed.CNIVersion
	c.DisableCheck = parsed.DisableCheck
	c.DisableGC = parsed.DisableGC
	return nil
}

// conflistPath is the file a `conflist:` entry names, relative to the
// attachment file's folder dir.
func conflistPath(dir, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

// value converts a YAML node into the value encoding/json would have decoded
// from the equivalent JSON.
func (p *parser) value(field string, n *yaml.Node) (any, error) {
	at := n // an alias's own position, to report the alias itself
	n = resolve(n)
	if p.values++; p.values > maxValues {
		return nil, p.errorf(at, field, "too large: more than %d values once aliases are expanded", maxValues)
	}
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		if p.active[n] {
			return nil, p.errorf(at, field, "an alias refers to a mapping or list that contains it")
		}
		if p.active == nil {
			p.active = map[*yaml.Node]bool{}
		}
		p.active[n] = true
		defer delete(p.active, n)
	}
	switch n.Kind {
	case yaml.MappingNode:
		return p.object(field, n)
	case yaml.SequenceNode:
		arr := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			v, err := p.value(fmt.Sprintf("%s[%d]", field, i), item)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		return arr, nil
	case yaml.ScalarNode:
		return p.scalar(field, n)
	}
	return nil, p.errorf(n, field, "unsupported YAML node")
}

// object converts a mapping node: its own keys, then what its merge keys
// ("<<: *anchor") bring in, where the mapping lacks it.
func (p *parser) object(field string, n *yaml.Node) (map[string]any, error) {
	obj := map[string]any{}
	own, merged := members(n)
	for _, kv := range own {
		k := kv[0]
		if k.Kind != yaml.ScalarNode {
			return nil, p.errorf(k, field, "keys must be plain strings")
		}
		if _, dup := obj[k.Value]; dup {
			return nil, p.errorf(k, join(field, k.Value), "duplicate key")
		}
		val, err := p.value(join(field, k.Value), kv[1])
		if err != nil {
			return nil, err
		}
		obj[k.Value] = val
	}
	for _, m := range merged {
		mv, err := p.value(field, m)
		if err != nil {
			return nil, err
		}
		src, ok := mv.(map[string]any)
		if !ok {
			return nil, p.errorf(m, field, "merge key needs a mapping")
		}
		for k, v := range src {
			if _, set := obj[k]; !set {
				obj[k] = v
			}
		}
	}
	return obj, nil
}

func (p *parser) scalar(field string, n *yaml.Node) (any, error) {
	switch n.Tag {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, p.errorf(n, field, "%v", err)
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return json.Number(strconv.FormatInt(i, 10)), nil
		}
		var u uint64
		if err := n.Decode(&u); err == nil {
			return json.Number(strconv.FormatUint(u, 10)), nil
		}
		return nil, p.errorf(n, field, "integer %s is out of range", n.Value)
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, p.errorf(n, field, "%v", err)
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, p.errorf(n, field, "%s has no JSON form", n.Value)
		}
		return f, nil
	}
	// Strings, and tags JSON has no type for (timestamps, binary), keep the
	// text as written.
	return n.Value, nil
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return resolve(n.Content[0])
	}
	return n
}

// members splits mapping m into its own key and value nodes and the
// nodes its merge keys bring in, each in order.
func members(m *yaml.Node) (own [][2]*yaml.Node, merged []*yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Tag == "!!merge" {
			merged = append(merged, mergeSources(v)...)
			continue
		}
		own = append(own, [2]*yaml.Node{k, v})
	}
	return own, merged
}

// mergeSources is what a merge key's value brings in: "<<: *a" one
// mapping, "<<: [*a, *b]" each mapping in turn.
func mergeSources(v *yaml.Node) []*yaml.Node {
	if rv := resolve(v); rv.Kind == yaml.SequenceNode {
		return rv.Content
	}
	return []*yaml.Node{v}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("the scalar %q", n.Value)
	}
	return "empty"
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func cniMsg(e *types.Error) string {
	if e.Details != "" {
		return e.Msg + ": " + e.Details
	}
	return e.Msg
}
