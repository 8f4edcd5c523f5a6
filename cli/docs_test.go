package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The command blocks of docs/operations.md marked with docMarker are
// checked: every nicmux command in them goes through the command's own
// flag parser and argument count (env.parseOnly), so that a renamed flag
// or a changed synopsis fails here before an operator's copy of it does.

const docMarker = "<!-- checked: nicmux commands -->"

// docCommand is one nicmux command found in a checked block.
type docCommand struct {
	line int // where it is written
	args []string
}

// docCommands returns the nicmux commands of the checked blocks of doc,
// and the number of checked blocks; a checked block without any is an
// error.
func docCommands(doc string) ([]docCommand, int, error) {
	lines := strings.Split(doc, "\n")
	var out []docCommand
	blocks := 0
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != docMarker {
			continue
		}
		start := i + 1
		for start < len(lines) && strings.TrimSpace(lines[start]) == "" {
			start++
		}
		if start == len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[start]), "```") {
			return nil, blocks, fmt.Errorf("line %d: %s is not followed by a code block", i+1, docMarker)
		}
		blocks++
		lang := strings.TrimPrefix(strings.TrimSpace(lines[start]), "```")
		end := start + 1
		for end < len(lines) && strings.TrimSpace(lines[end]) != "```" {
			end++
		}
		var found []docCommand
		if lang == "hcl" {
			found = hclCommands(lines[start+1:end], start+2)
		} else {
			found = shellCommands(lines[start+1:end], start+2)
		}
		if len(found) == 0 {
			return nil, blocks, fmt.Errorf("line %d: a checked block without a nicmux command", start+1)
		}
		out = append(out, found...)
		i = end
	}
	return out, blocks, nil
}

// shellCommands finds nicmux commands in shell (or crontab) lines: the
// words after a word naming the nicmux binary, up to a comment, a pipe, a
// redirection or a list operator.
func shellCommands(lines []string, first int) []docCommand {
	var out []docCommand
	for i := 0; i < len(lines); i++ {
		at, text := first+i, lines[i]
		for strings.HasSuffix(text, `\`) && i+1 < len(lines) {
			i++
			text = strings.TrimSuffix(text, `\`) + " " + lines[i]
		}
		words := shellWords(text)
		for k := 0; k < len(words); k++ {
			if filepath.Base(words[k]) != "nicmux" {
				continue
			}
			// Its arguments (a folder named nicmux among them is one).
			var args []string
			for k++; k < len(words) && !isShellOperator(words[k]); k++ {
				args = append(args, words[k])
			}
			out = append(out, docCommand{line: at, args: args})
		}
	}
	return out
}

// shellWords splits a line as a shell would, without expansions: quotes
// group, and an unquoted # starting a word begins a comment. Operators
// stay words of their own when written apart, as the docs write them.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord, quote := false, rune(0)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return words
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

var redirection = regexp.MustCompile(`^[0-9]*[<>]`)

func isShellOperator(w string) bool {
	switch w {
	case "|", "||", "&&", ";", "&":
		return true
	}
	return redirection.MatchString(w)
}

var (
	hclCommand = regexp.MustCompile(`^\s*command\s*=\s*"([^"]*)"`)
	hclArgs    = regexp.MustCompile(`^\s*args\s*=\s*(\[.*\])\s*$`)
)

// hclCommands finds the args of a Nomad task whose command is nicmux.
func hclCommands(lines []string, first int) []docCommand {
	var out []docCommand
	isNicmux := false
	for i, l := range lines {
		if m := hclCommand.FindStringSubmatch(l); m != nil {
			isNicmux = filepath.Base(m[1]) == "nicmux"
		}
		if m := hclArgs.FindStringSubmatch(l); m != nil && isNicmux {
			var args []string
			if err := json.Unmarshal([]byte(m[1]), &args); err != nil {
				args = []string{"(unreadable args: " + err.Error() + ")"}
			}
			out = append(out, docCommand{line: first + i, args: args})
		}
	}
	return out
}

// parseOnly runs a command's parsing only, and returns its exit code and
// what it printed on stderr.
func parseOnly(args []string) (int, string) {
	var out, errb bytes.Buffer
	e := &env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &errb, parseOnly: true}
	return dispatch(e, args), errb.String()
}

// TestOperationsDocCommands: every nicmux command of docs/operations.md's
// checked blocks parses, and the blocks show every command that acts on
// the state.
func TestOperationsDocCommands(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds, blocks, err := docCommands(string(b))
	if err != nil {
		t.Fatalf("docs/operations.md: %v", err)
	}
	used := map[string]bool{}
	for _, c := range cmds {
		if len(c.args) == 0 {
			continue // the bare run: the version, as Nomad fingerprints it
		}
		used[c.args[0]] = true
		if code, stderr := parseOnly(c.args); code != exitOK {
			t.Errorf("docs/operations.md:%d: nicmux %s: exit %d\n%s", c.line, strings.Join(c.args, " "), code, stderr)
		}
	}
	t.Logf("%d commands in %d checked blocks", len(cmds), blocks)
	for _, name := range []string{"show", "gc", "forget", "validate"} {
		if !used[name] {
			t.Errorf("docs/operations.md shows no checked nicmux %s command", name)
		}
	}
}

// TestReadmeCommands: the README's checked commands parse too.
func TestReadmeCommands(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds, blocks, err := docCommands(string(b))
	if err != nil || blocks == 0 {
		t.Fatalf("README.md: %d checked blocks, %v", blocks, err)
	}
	for _, c := range cmds {
		if code, stderr := parseOnly(c.args); code != exitOK {
			t.Errorf("README.md:%d: nicmux %s: exit %d\n%s", c.line, strings.Join(c.args, " "), code, stderr)
		}
	}
}

// TestDocCommandsCheck: the check catches what it is for.
func TestDocCommandsCheck(t *testing.T) {
	doc := "text\n" + docMarker + "\n```sh\n" +
		"nicmux gc -dryrun -conflist x   # a renamed flag\n" +
		"sudo /opt/cni/bin/nicmux forget -conflist 'a b' \\\n    c1 c2 > out 2>&1\n" +
		"echo nicmux-not | nicmux show -state-dir /var/lib/cni/nicmux && nicmux validate x.yaml\n" +
		"```\n" + docMarker + "\n```hcl\n" +
		"  command = \"/opt/cni/bin/nicmux\"\n  args    = [\"gc\", \"-conflist\", \"x\"]\n" +
		"```\n"
	cmds, blocks, err := docCommands(doc)
	if err != nil || blocks != 2 {
		t.Fatalf("%d blocks, %v", blocks, err)
	}
	var got []string
	for _, c := range cmds {
		code, _ := parseOnly(c.args)
		got = append(got, fmt.Sprintf("%d:%q:%d", c.line, c.args, code))
	}
	want := []string{
		`4:["gc" "-dryrun" "-conflist" "x"]:2`,
		`5:["forget" "-conflist" "a b" "c1" "c2"]:2`,
		`7:["show" "-state-dir" "/var/lib/cni/nicmux"]:0`,
		`7:["validate" "x.yaml"]:0`,
		`12:["gc" "-conflist" "x"]:0`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("found:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, _, err := docCommands(docMarker + "\n```sh\necho nothing\n```\n"); err == nil {
		t.Error("a checked block without a nicmux command passes")
	}
}

// TestOperationsVersionNotes: the upgrade and rollback notes keep what a
// mixed-version client needs (issue 17): a killed 0.1 ADD's plugins are
// fenced by no later verb, so the upgrade from 0.1 drains or waits; 0.1's
// GC frees the leases of 0.2's containers, so a rollback below 0.2 runs
// none; a later release's records are left alone.
func TestOperationsVersionNotes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := func(heading string) string {
		s := string(b)
		i := strings.Index(s, "\n"+heading+"\n")
		if i < 0 {
			t.Fatalf("docs/operations.md has no %q", heading)
		}
		s = s[i+len(heading)+2:]
		if j := strings.Index(s, "\n#"); j >= 0 {
			s = s[:j]
		}
		return strings.Join(strings.Fields(s), " ")
	}
	for heading, says := range map[string][]string{
		"### Upgrading 0.1 to 0.2, allocations running": {"Drain the client, or wait until no ADD is in flight"},
		"### Rolling back 0.2 to 0.1":                   {"Run no GC of 0.1 after rolling back below 0.2"},
		"### Rolling back from a later release":         {"takes its container to be live", "neither the GC verb nor `nicmux gc` forwards GC"},
	} {
		text := section(heading)
		for _, s := range says {
			if !strings.Contains(text, s) {
				t.Errorf("docs/operations.md, %s, does not say %q", heading, s)
			}
		}
	}
}
