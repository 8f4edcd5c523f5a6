package conf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Position is where something is written in a configuration file. Line and
// Column count from 1; zero means the file as a whole.
type Position struct {
	File   string
	Line   int
	Column int
}

// String returns "file:line:col", or "file" when the place is unknown.
func (p Position) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Locator finds where fields are written in an attachment file and the
// conflist files its entries read, for nicmux validate. It reads and
// parses them on its own, so that the verbs, which never report a
// position beyond the one in a parse error, keep no parse tree.
type Locator struct {
	file string
	root *yaml.Node // nil when the file cannot be read or parsed
}

// NewLocator reads and parses the attachment file at file.
func NewLocator(file string) *Locator {
	l := &Locator{file: file}
	data, err := readFile(file)
	if err != nil {
		return l
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) == nil && len(doc.Content) > 0 {
		l.root = doc.Content[0]
	}
	return l
}

// Locate returns where field is written. field is a path as Error.Field
// spells it, e.g. "interfaces[1].plugins[0].ipam.routes[0].dst": a key's
// position for a mapping's field, an element's for a list index. Aliases
// and merge keys are followed to where the value is written. A field
// inside the plugins of an entry that names a `conflist:` file is located
// in that file (a .conf's single object is its plugins[0]). When the field
// is not written (a default applies), Locate returns its nearest written
// ancestor; when the file cannot be read, the file as a whole. Keys holding
// "." or "[" cannot be named.
func (l *Locator) Locate(field string) Position {
	if l.root == nil {
		return Position{File: l.file}
	}
	steps := parseField(field)
	if len(steps) >= 3 && steps[0].key == "interfaces" && steps[1].index >= 0 && steps[2].key == "plugins" {
		if ref := l.conflist(steps[1].index); ref != "" {
			data, err := readFile(ref)
			if err != nil {
				return Position{File: ref}
			}
			return locateJSON(ref, data, steps[2:], true)
		}
	}
	n := locateYAML(l.root, steps)
	return Position{File: l.file, Line: n.Line, Column: n.Column}
}

// conflist returns the file the `conflist:` of entry i names; "" when it
// names none.
func (l *Locator) conflist(i int) string {
	_, list := yamlMember(resolve(l.root), "interfaces", 0)
	if list = resolve(list); list == nil || list.Kind != yaml.SequenceNode || i >= len(list.Content) {
		return ""
	}
	_, ref := yamlMember(resolve(list.Content[i]), "conflist", 0)
	if ref = resolve(ref); ref == nil || ref.Kind != yaml.ScalarNode || ref.Value == "" {
		return ""
	}
	return conflistPath(filepath.Dir(l.file), ref.Value)
}

// LocateJSON returns where field (a path as in Locator.Locate, e.g.
// "plugins[0].logFile") is written in the JSON document data read from file:
// the key's position for an object's member (the last one, as
// encoding/json keeps the last of duplicate keys), the value's for an array
// element, the nearest written ancestor when the field is absent, and the
// file as a whole when data is not valid JSON.
func LocateJSON(file string, data []byte, field string) Position {
	return locateJSON(file, data, parseField(field), false)
}

// OffsetPosition returns the position of byte offset off in data, e.g. for a
// json.SyntaxError.
func OffsetPosition(file string, data []byte, off int) Position {
	off = min(max(off, 0), len(data))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return Position{File: file, Line: line, Column: col}
}

// step is one element of a field path: a key, or (index >= 0) a list index.
type step struct {
	key   string
	index int
}

func parseField(field string) []step {
	var out []step
	for part := range strings.SplitSeq(field, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key != "" {
			out = append(out, step{key: key, index: -1})
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if err != nil || i < 0 {
				return out
			}
			out = append(out, step{index: i})
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return out
}

// locateYAML follows steps from n and returns the node that marks the
// deepest step found: a key node, or a list element.
func locateYAML(n *yaml.Node, steps []step) *yaml.Node {
	mark := resolve(n)
	val := mark
	for _, s := range steps {
		v := resolve(val)
		var k, next *yaml.Node
		if s.index < 0 {
			k, next = yamlMember(v, s.key, 0)
		} else if v.Kind == yaml.SequenceNode && s.index < len(v.Content) {
			k, next = v.Content[s.index], v.Content[s.index]
		}
		if k == nil {
			break
		}
		mark, val = k, next
	}
	return mark
}

// yamlMember finds key in mapping m, then in what its merge keys bring in,
// and returns the key node and the value node.
func yamlMember(m *yaml.Node, key string, depth int) (*yaml.Node, *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode || depth > 32 {
		return nil, nil
	}
	own, merged := members(m)
	for _, kv := range own {
		if kv[0].Kind == yaml.ScalarNode && kv[0].Value == key {
			return kv[0], kv[1]
		}
	}
	for _, mv := range merged {
		if k, v := yamlMember(resolve(mv), key, depth+1); k != nil {
			return k, v
		}
	}
	return nil, nil
}

// jsonNode is a JSON value at byte offset off, with an object's members
// or an array's elements.
type jsonNode struct {
	off     int
	members []jsonMember
	elems   []*jsonNode
}

// jsonMember is an object's member: its key, where the key is written, and
// its value.
type jsonMember struct {
	key string
	off int
	val *jsonNode
}

// member returns the last member named key, as encoding/json keeps the last
// of duplicate keys; nil when there is none.
func (n *jsonNode) member(key string) *jsonMember {
	for i := len(n.members) - 1; i >= 0; i-- {
		if n.members[i].key == key {
			return &n.members[i]
		}
	}
	return nil
}

// locateJSON walks steps in data. With ref set, data is a `conflist:` file
// and steps start at its "plugins", which a .conf does not have: its object
// is plugins[0].
func locateJSON(file string, data []byte, steps []step, ref bool) Position {
	root, err := readJSONNode(json.NewDecoder(bytes.NewReader(data)), data)
	if err != nil {
		return Position{File: file}
	}
	if ref && root.member("plugins") == nil && len(steps) >= 2 && steps[1].index == 0 {
		steps = steps[2:]
	}
	off, n := root.off, root
	for _, s := range steps {
		if s.index >= 0 {
			if s.index >= len(n.elems) {
				break
			}
			n = n.elems[s.index]
			off = n.off
			continue
		}
		m := n.member(s.key)
		if m == nil {
			break
		}
		off, n = m.off, m.val
	}
	return OffsetPosition(file, data, off)
}

// readJSONNode reads the next value from dec. The decoder's offset is the end
// of the last token; the next one starts after white space and the ","
// or ":" before it.
func readJSONNode(dec *json.Decoder, data []byte) (*jsonNode, error) {
	n := &jsonNode{off: nextToken(data, dec.InputOffset())}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		for dec.More() {
			keyOff := nextToken(data, dec.InputOffset())
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := readJSONNode(dec, data)
			if err != nil {
				return nil, err
			}
			key, _ := kt.(string)
			n.members = append(n.members, jsonMember{key: key, off: keyOff, val: v})
		}
		_, err = dec.Token()
	case json.Delim('['):
		for dec.More() {
			v, err := readJSONNode(dec, data)
			if err != nil {
				return nil, err
			}
			n.elems = append(n.elems, v)
		}
		_, err = dec.Token()
	}
	return n, err
}

func nextToken(data []byte, off int64) int {
	i := int(off)
	for i < len(data) && strings.IndexByte(" \t\r\n,:", data[i]) >= 0 {
		i++
	}
	return i
}

// SyntaxError is where and why an attachment file is not valid YAML, for
// nicmux validate: Line is where the parser's trouble starts (0 when the
// file parses or cannot be read), Problem what yaml.v3 says, without its
// line.
//
// yaml.v3 names, for an error of its parser (not its scanner), the line
// where the enclosing block begins, counted from 0: a mis-indented key
// deep in a file reads "line 1". Line is instead the first line that ends
// a prefix of the file that fails with the same problem: the parser meets
// it there.
type SyntaxError struct {
	Line    int
	Problem string
}

// yamlErrLine is the line yaml.v3 puts before its problem.
var yamlErrLine = regexp.MustCompile(`^yaml: (line \d+: )?`)

// FindSyntaxError reads and parses the attachment file at file and says
// where its YAML goes wrong.
func FindSyntaxError(file string) SyntaxError {
	data, err := readFile(file)
	if err != nil {
		return SyntaxError{}
	}
	var doc yaml.Node
	full := yaml.Unmarshal(data, &doc)
	if full == nil {
		return SyntaxError{}
	}
	problem := yamlErrLine.ReplaceAllString(full.Error(), "")
	end := 0
	for i, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			break
		}
		end += len(line)
		var prefix yaml.Node
		if err := yaml.Unmarshal(data[:end], &prefix); err != nil && yamlErrLine.ReplaceAllString(err.Error(), "") == problem {
			return SyntaxError{Line: i + 1, Problem: problem}
		}
	}
	return SyntaxError{Problem: problem}
}
