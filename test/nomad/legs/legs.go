// Package legs is the go-cni suite's test matrix: for each range of Nomad
// releases, the go-cni and containernetworking/cni versions its public
// go.mod pins, the modfile that pins the same pair for the suite, and the
// reference plugins the leg runs.
//
// The suite (package nomad) reads its leg from NICMUX_NOMAD_LEG and proves
// that it really links the leg's versions; the runner (../matrix) runs every
// leg; docs/nomad.md's "Tested versions" table is Markdown(), checked by the
// suite.
package legs

import (
	"fmt"
	"os"
	"strings"
)

// Env names the leg a run of the suite is: one of All's names. Unset, the
// leg is Default.
const Env = "NICMUX_NOMAD_LEG"

// Leg is one run of the go-cni suite.
type Leg struct {
	// Name is the leg's NICMUX_NOMAD_LEG value.
	Name string
	// Nomad is the range of Nomad releases the leg stands for, as
	// docs/nomad.md's table writes it.
	Nomad string
	// Releases are the Nomad releases whose behaviour the suite models in
	// this leg: the first of the range, each release in it where Nomad's
	// choice of the allocation address changes, and the last.
	Releases []string
	// GoCNI and CNI are the versions of github.com/containerd/go-cni and
	// github.com/containernetworking/cni the leg links.
	GoCNI, CNI string
	// Modfile pins GoCNI and CNI, relative to test/nomad: go.mod, or a
	// modfile under legs/ passed to go with -modfile.
	Modfile string
	// Plugins is the version of the reference plugins the leg runs, from
	// PluginsDir (relative to the repository's bin folder), where the
	// Makefile builds them.
	Plugins, PluginsDir string
}

// Reference plugins the legs run: the version the rest of the project pins
// (the Makefile's PLUGINS_VERSION) and the one Nomad's own setup script
// installs.
const (
	pinnedPlugins = "v1.10.0"
	nomadPlugins  = "v1.3.0"
)

// All is the matrix, one leg per row of Nomad's go-cni / cni pins (oldest
// first), then the newest pair again with the reference plugins Nomad's
// setup script installs.
var All = []Leg{
	{Name: "nomad-1.8.0", Nomad: "1.8.0 - 1.8.2", Releases: []string{"1.8.0", "1.8.2"},
		GoCNI: "v1.1.9", CNI: "v1.1.2", Modfile: "legs/nomad-1.8.0.mod", Plugins: pinnedPlugins, PluginsDir: "plugins"},
	{Name: "nomad-1.8.3", Nomad: "1.8.3 - 1.9.4", Releases: []string{"1.8.3", "1.9.0", "1.9.4"},
		GoCNI: "v1.1.9", CNI: "v1.2.3", Modfile: "legs/nomad-1.8.3.mod", Plugins: pinnedPlugins, PluginsDir: "plugins"},
	{Name: "nomad-1.9.5", Nomad: "1.9.5", Releases: []string{"1.9.5"},
		GoCNI: "v1.1.11", CNI: "v1.2.3", Modfile: "legs/nomad-1.9.5.mod", Plugins: pinnedPlugins, PluginsDir: "plugins"},
	{Name: "nomad-1.9.6", Nomad: "1.9.6 - 1.10.0", Releases: []string{"1.9.6", "1.10.0"},
		GoCNI: "v1.1.12", CNI: "v1.2.3", Modfile: "legs/nomad-1.9.6.mod", Plugins: pinnedPlugins, PluginsDir: "plugins"},
	{Name: "nomad-1.10.1", Nomad: "1.10.1 - 1.10.4", Releases: []string{"1.10.1", "1.10.4"},
		GoCNI: "v1.1.12", CNI: "v1.3.0", Modfile: "legs/nomad-1.10.1.mod", Plugins: pinnedPlugins, PluginsDir: "plugins"},
	{Name: "nomad-1.10.5", Nomad: "1.10.5 - 1.11.x, 2.0.x", Releases: []string{"1.10.5", "1.11.0", "2.0.0"},
		GoCNI: "v1.1.13", CNI: "v1.3.0", Modfile: "go.mod", Plugins: pinnedPlugins, PluginsDir: "plugins"},
	{Name: "nomad-1.10.5-plugins-v1.3.0", Nomad: "1.10.5 - 1.11.x, 2.0.x", Releases: []string{"1.10.5", "1.11.0", "2.0.0"},
		GoCNI: "v1.1.13", CNI: "v1.3.0", Modfile: "go.mod", Plugins: nomadPlugins, PluginsDir: "plugins-" + nomadPlugins},
}

// Default is the leg of a plain `go test` in test/nomad: go.mod's pair
// with the pinned plugins.
const Default = "nomad-1.10.5"

// Lookup returns the leg named name.
func Lookup(name string) (Leg, error) {
	var names []string
	for _, l := range All {
		if l.Name == name {
			return l, nil
		}
		names = append(names, l.Name)
	}
	return Leg{}, fmt.Errorf("no go-cni suite leg %q (legs: %s)", name, strings.Join(names, ", "))
}

// Current returns the leg NICMUX_NOMAD_LEG names, or Default.
func Current() (Leg, error) {
	name := os.Getenv(Env)
	if name == "" {
		name = Default
	}
	return Lookup(name)
}

// String names the leg and its versions, for test output.
func (l Leg) String() string {
	return fmt.Sprintf("leg %s (Nomad %s): go-cni %s, containernetworking/cni %s, reference plugins %s",
		l.Name, l.Nomad, l.GoCNI, l.CNI, l.Plugins)
}

// Markdown is the table of tested versions docs/nomad.md shows, one row
// per leg.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| Nomad | go-cni | containernetworking/cni | reference plugins | modfile (in `test/nomad`) | leg |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, l := range All {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | `%s` | `%s` |\n", l.Nomad, l.GoCNI, l.CNI, l.Plugins, l.Modfile, l.Name)
	}
	return b.String()
}
