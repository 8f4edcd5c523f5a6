package release

import (
	"bufio"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// Every relative link of the project's Markdown (README.md, CHANGELOG.md,
// docs/, the test suites' notes) must lead somewhere: the file or folder
// exists in the tree, and an #anchor names a heading of the Markdown file
// as GitHub renders it (or a line of another file, #L12).

var (
	inlineLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	refLink    = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
	htmlLink   = regexp.MustCompile(`\s(?:href|src)="([^"]*)"`)
	htmlAnchor = regexp.MustCompile(`\s(?:id|name)="([^"]*)"`)
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
	atxHeading = regexp.MustCompile(`^ {0,3}#{1,6}(?:\s+(.*?))?(?:\s+#+)?\s*$`)
	setextLine = regexp.MustCompile(`^ {0,3}(?:=+|-+)\s*$`)
	scheme     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	lineAnchor = regexp.MustCompile(`^L(\d+)(?:-L(\d+))?$`)
	mdLinkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
)

// mdLink is one link of a Markdown file.
type mdLink struct {
	line   int
	target string
}

// mdFile is what the check needs of a Markdown file: its links and its
// anchors.
type mdFile struct {
	links   []mdLink
	anchors map[string]bool
}

// parseMarkdown reads the links and the anchors of a Markdown text,
// leaving out fenced code blocks and code spans.
func parseMarkdown(text string) mdFile {
	f := mdFile{anchors: map[string]bool{}}
	slugs := map[string]int{}
	addHeading := func(h string) {
		s := slug(h)
		if n := slugs[s]; n > 0 {
			f.anchors[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			f.anchors[s] = true
		}
		slugs[s]++
	}
	fence, prev := "", ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence, prev = trimmed[:3], ""
			continue
		}
		code := codeSpan.ReplaceAllString(line, "")
		for _, re := range []*regexp.Regexp{inlineLink, refLink, htmlLink} {
			for _, m := range re.FindAllStringSubmatch(code, -1) {
				f.links = append(f.links, mdLink{n, m[1]})
			}
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(code, -1) {
			f.anchors[m[1]] = true
		}
		switch {
		case atxHeading.MatchString(line):
			addHeading(atxHeading.FindStringSubmatch(line)[1])
			prev = ""
		case setextLine.MatchString(line) && prev != "" && !strings.HasPrefix(strings.TrimSpace(prev), "|"):
			addHeading(prev)
			prev = ""
		default:
			prev = line
			if trimmed == "" {
				prev = ""
			}
		}
	}
	return f
}

// slug is the anchor GitHub gives a heading: its text as rendered (links
// as their text, code spans as their content, emphasis marks dropped),
// lower-cased, with everything but letters, digits, marks, '_', '-' and
// spaces removed, and spaces made '-'.
func slug(heading string) string {
	text := mdLinkText.ReplaceAllString(heading, "$1")
	text = strings.NewReplacer("`", "", "**", "", "*", "").Replace(text)
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestSlug pins GitHub's anchors for headings of the kinds the docs have.
func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"A minimal configuration":                        "a-minimal-configuration",
		"7. CHECK, restore and reboot":                   "7-check-restore-and-reboot",
		"Choosing the interface: `primary`":              "choosing-the-interface-primary",
		"Bare start (no CNI_COMMAND, empty environment)": "bare-start-no-cni_command-empty-environment",
		"[0.2.0] - 2026-11-30":                           "020---2026-11-30",
		"Two commands on a fresh machine":                "two-commands-on-a-fresh-machine",
		"See [the docs](docs/x.md) **now**":              "see-the-docs-now",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
	f := parseMarkdown("# A\n\n## A\n\nText\n---\n\n```\n# not a heading\n[x](nowhere.md)\n```\n<a id=\"here\"></a> `[y](code.md)` [z](b.md#c)\n")
	for _, a := range []string{"a", "a-1", "text", "here"} {
		if !f.anchors[a] {
			t.Errorf("anchor %q missing from %v", a, f.anchors)
		}
	}
	if len(f.links) != 1 || f.links[0].target != "b.md#c" || f.links[0].line != 12 {
		t.Errorf("links %+v, want b.md#c at line 12", f.links)
	}
}

// markdownFiles lists the tree's Markdown files, relative to root.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() && rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRelativeLinks checks every relative link of every Markdown file of
// the tree.
func TestRelativeLinks(t *testing.T) {
	root := repoRoot()
	files := markdownFiles(t, root)
	for _, must := range []string{"README.md", "CHANGELOG.md", "docs/nomad.md"} {
		if !strings.Contains(strings.Join(files, "\n")+"\n", must+"\n") {
			t.Fatalf("%s not among the Markdown files found: %q", must, files)
		}
	}
	parsed := map[string]mdFile{}
	load := func(rel string) (mdFile, error) {
		if f, ok := parsed[rel]; ok {
			return f, nil
		}
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return mdFile{}, err
		}
		parsed[rel] = parseMarkdown(string(b))
		return parsed[rel], nil
	}
	checked := 0
	for _, rel := range files {
		f, err := load(rel)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range f.links {
			if l.target == "" || scheme.MatchString(l.target) || strings.HasPrefix(l.target, "//") {
				continue
			}
			checked++
			if err := checkLink(root, rel, l.target, load); err != nil {
				t.Errorf("%s:%d: link %s: %v", rel, l.line, l.target, err)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative link found: the parser is broken")
	}
}

// checkLink checks one relative link of the Markdown file from.
func checkLink(root, from, target string, load func(string) (mdFile, error)) error {
	pathPart, anchor, _ := strings.Cut(target, "#")
	p, err := url.PathUnescape(pathPart)
	if err != nil {
		return err
	}
	rel := from
	switch {
	case strings.HasPrefix(p, "/"):
		rel = filepath.Clean(strings.TrimPrefix(p, "/"))
	case p != "":
		rel = filepath.Clean(filepath.Join(filepath.Dir(from), p))
	}
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("leads out of the repository")
	}
	fi, err := os.Stat(filepath.Join(root, rel))
	if err != nil {
		return fmt.Errorf("no such file or folder: %s", rel)
	}
	if anchor == "" {
		return nil
	}
	if fi.IsDir() {
		return fmt.Errorf("an anchor on a folder")
	}
	if !strings.HasSuffix(rel, ".md") {
		return checkLineAnchor(filepath.Join(root, rel), anchor)
	}
	f, err := load(rel)
	if err != nil {
		return err
	}
	if !f.anchors[strings.ToLower(anchor)] {
		return fmt.Errorf("no heading #%s in %s", anchor, rel)
	}
	return nil
}

// checkLineAnchor checks a #L12 or #L12-L20 anchor against the file's
// lines.
func checkLineAnchor(path, anchor string) error {
	m := lineAnchor.FindStringSubmatch(anchor)
	if m == nil {
		return fmt.Errorf("#%s is not a line anchor (#L12) of a file that is not Markdown", anchor)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Count(string(b), "\n")
	for _, s := range m[1:] {
		if n, _ := strconv.Atoi(s); s != "" && (n < 1 || n > lines) {
			return fmt.Errorf("line %d of %d lines", n, lines)
		}
	}
	return nil
}
