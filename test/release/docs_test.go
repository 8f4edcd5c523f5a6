package release

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLicenseAndChangelog: the tree carries the Apache License 2.0, and
// CHANGELOG.md has a section for every release tag of the checkout.
func TestLicenseAndChangelog(t *testing.T) {
	license := readRepoFile(t, "LICENSE")
	for _, want := range []string{"Apache License", "Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION", "END OF TERMS AND CONDITIONS"} {
		if !strings.Contains(license, want) {
			t.Errorf("LICENSE lacks %q: not the Apache License 2.0", want)
		}
	}
	changelog := readRepoFile(t, "CHANGELOG.md")
	sections := regexp.MustCompile(`(?m)^## \[(\d+\.\d+\.\d+[^\]]*)\] - \d{4}-\d{2}-\d{2}$`).FindAllStringSubmatch(changelog, -1)
	var versions []string
	for _, m := range sections {
		versions = append(versions, m[1])
	}
	if !slices.Contains(versions, "0.1.0") || !slices.Contains(versions, "0.2.0") {
		t.Errorf("CHANGELOG.md sections %q, want 0.1.0 and 0.2.0 at least", versions)
	}
	if _, err := os.Stat(filepath.Join(repoRoot(), ".git")); err != nil {
		return
	}
	tags := run(t, repoRoot(), cleanEnv(), "git", "-c", "safe.directory="+repoRoot(), "tag", "--list", "v[0-9]*")
	for _, tag := range strings.Fields(tags) {
		if !slices.Contains(versions, strings.TrimPrefix(tag, "v")) {
			t.Errorf("tag %s has no section \"## [%s] - <date>\" in CHANGELOG.md", tag, strings.TrimPrefix(tag, "v"))
		}
	}
}

// TestReadmeGoVersion: the README names the exact Go release go.mod asks
// for.
func TestReadmeGoVersion(t *testing.T) {
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(readRepoFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	if readme := readRepoFile(t, "README.md"); !strings.Contains(readme, "Go **"+m[1]+"**") {
		t.Errorf("README.md does not name Go **%s**, go.mod's version", m[1])
	}
}

// TestNomadSources: docs/nomad.md's Sources table has rows S1, S2, ... in
// order, each cited in the text, and every citation names a row.
func TestNomadSources(t *testing.T) {
	doc := readRepoFile(t, "docs/nomad.md")
	heading := regexp.MustCompile(`(?m)^## (\d+)\. Sources$`).FindStringSubmatchIndex(doc)
	if heading == nil {
		t.Fatal("docs/nomad.md has no \"## N. Sources\" section")
	}
	text, table := doc[:heading[0]], doc[heading[0]:]
	anchor := "#" + slug(doc[heading[0]+3:heading[1]])
	rows := regexp.MustCompile(`(?m)^\| (S\d+) \|`).FindAllStringSubmatch(table, -1)
	if len(rows) == 0 {
		t.Fatal("the Sources section has no row")
	}
	cited := map[string]bool{}
	for _, m := range regexp.MustCompile(`\[(S\d+)\]\(([^)]*)\)`).FindAllStringSubmatch(text, -1) {
		cited[m[1]] = true
		if m[2] != anchor {
			t.Errorf("citation [%s](%s) does not lead to %s", m[1], m[2], anchor)
		}
	}
	for i, r := range rows {
		if want := "S" + strconv.Itoa(i+1); r[1] != want {
			t.Errorf("row %d is %s, want %s", i+1, r[1], want)
		}
		if !cited[r[1]] {
			t.Errorf("source %s is cited nowhere", r[1])
		}
		delete(cited, r[1])
	}
	for c := range cited {
		t.Errorf("citation %s names no row", c)
	}
}
