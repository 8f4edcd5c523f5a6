package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/nomad"
	"github.com/nicmux/nicmux/rehearse"
)

const pluginsHelp = `Lists every plugin the configuration uses (the conflist's, and each
attachment set's delegates and IPAM plugins), with the binary of the CNI
path a runtime runs for it and the version that binary reports when run
bare, as a Nomad client fingerprints it. Then it says whether Nomad runs
CHECK on restore: from 1.9.5, and only when the bridge binary of the CNI
path (used or not) reports ` + nomad.CheckGateBridge + ` or later.

A missing binary is an error. A binary that reports no version is flagged
unversioned: "go install" builds of the reference plugins print "version
unknown" unless stamped (docs/nomad.md, section 1); for bridge, it keeps
CHECK from ever running.

With -conflist and no files, it reads the entry's attachment file and every
set beside it, as validate does.

Exit status: 0 ok, 1 a binary is missing or the configuration cannot be
read, 2 usage error.`

// pluginUse is one plugin the configuration uses, and what the CNI path
// holds for it.
type pluginUse struct {
	Name string `json:"name"`
	// Binary is the file a runtime runs: the first of its name in the CNI
	// path; "" when there is none.
	Binary string `json:"binary,omitempty"`
	// Version is what the binary reports run bare; "" when it reports
	// none.
	Version string `json:"version"`
	// Problem says why no binary can serve ("no plugin binary ...").
	Problem string `json:"problem,omitempty"`
	// UsedBy are where the configuration names it: the conflist, or an
	// attachment set's interface ("multi.yaml eth1", "... (ipam)").
	UsedBy []string `json:"usedBy"`
}

// checkGate is whether Nomad runs CHECK on restore, from the bridge binary
// of the CNI path.
type checkGate struct {
	Open   bool   `json:"open"`
	Bridge string `json:"bridge,omitempty"`
	// Version is what the bridge binary reports; "" when none.
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

// inventory is nicmux plugins' report; its JSON form is what -json prints.
type inventory struct {
	CNIPath []string    `json:"cniPath"`
	Plugins []pluginUse `json:"plugins"`
	Check   checkGate   `json:"check"`
	// Errors are what could not be read of the configuration.
	Errors []string `json:"errors"`
}

func runPlugins(e *env, args []string) int {
	f, c := deploymentFlags("plugins", pluginsHelp, "print the list as one JSON object")
	files, code, ok := f.parseN(e, args, 0, -1, "")
	if !ok {
		return code
	}
	if len(files) == 0 && c.conflist == "" {
		return f.fail(e, "give attachment files, or -conflist to read the entry's attachment file and its sets")
	}
	inv := takeInventory(e, c.path(e), c.conflist, files)
	if c.asJSON {
		printJSON(e.stdout, inv)
	} else {
		inv.print(e.stdout)
	}
	for _, p := range inv.Plugins {
		if p.Problem != "" {
			return exitFail
		}
	}
	if len(inv.Errors) > 0 {
		return exitFail
	}
	return exitOK
}

// takeInventory reads the configuration as validate does, and finds and
// runs bare the binary of each plugin it uses.
func takeInventory(e *env, cniPath []string, conflist string, files []string) *inventory {
	v := newValidator(e, cniPath)
	en, _ := v.read(conflist, files, func(en *entry) *conf.NetConf {
		nc, err := en.netConf()
		if err != nil {
			entryCheck{v, en}.parseError(err)
		}
		return nc
	})
	inv := &inventory{CNIPath: cniPath, Plugins: []pluginUse{}, Errors: []string{}}
	for _, f := range v.report.Findings {
		inv.Errors = append(inv.Errors, f.String())
	}
	uses := map[string][]string{}
	if en != nil {
		for _, typ := range en.plugins {
			uses[typ] = append(uses[typ], filepath.Base(en.file))
		}
	}
	for _, att := range v.sets {
		for _, d := range delegates(att) {
			where := filepath.Base(att.File) + " " + d.chain.IfName
			uses[d.Type] = append(uses[d.Type], where)
			if d.facts.IPAM.Type != "" {
				uses[d.facts.IPAM.Type] = append(uses[d.facts.IPAM.Type], where+" (ipam)")
			}
		}
	}
	delete(uses, "") // a type not given: reported above
	for _, name := range slices.Sorted(maps.Keys(uses)) {
		p := pluginUse{Name: name, UsedBy: slices.Compact(uses[name])}
		if bin, pe := v.probes.find("plugin", name); pe != nil {
			p.Problem = pe.msg
		} else {
			p.Binary, p.Version = bin, rehearse.BareVersion(context.Background(), bin)
		}
		inv.Plugins = append(inv.Plugins, p)
	}
	inv.Check = gate(v.probes)
	return inv
}

// gate says whether the bridge binary of the CNI path opens Nomad's CHECK
// gate.
func gate(probes *prober) checkGate {
	bin, pe := probes.find("plugin", "bridge")
	if pe != nil {
		return checkGate{Reason: "no bridge binary in the CNI path: Nomad never runs CHECK"}
	}
	g := checkGate{Bridge: bin, Version: rehearse.BareVersion(context.Background(), bin)}
	g.Open = nomad.CheckGate(g.Version)
	switch {
	case g.Open:
		g.Reason = fmt.Sprintf("%s reports %s, %s or later: Nomad 1.9.5 and later run CHECK on restore", bin, g.Version, nomad.CheckGateBridge)
	case g.Version == "":
		g.Reason = fmt.Sprintf("%s reports no version: Nomad never runs CHECK (stamp the build: docs/nomad.md, section 1)", bin)
	default:
		g.Reason = fmt.Sprintf("%s reports %s, below %s: Nomad never runs CHECK", bin, g.Version, nomad.CheckGateBridge)
	}
	return g
}

func (inv *inventory) print(w io.Writer) {
	for _, e := range inv.Errors {
		fmt.Fprintln(w, e)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tVERSION\tBINARY\tUSED BY")
	var problems []string
	for _, p := range inv.Plugins {
		version, bin := p.Version, p.Binary
		switch {
		case p.Problem != "":
			version, bin = "-", "MISSING"
			problems = append(problems, p.Name+": "+p.Problem)
		case version == "":
			version = "UNVERSIONED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, version, bin, strings.Join(p.UsedBy, ", "))
	}
	_ = tw.Flush()
	if len(problems) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(problems, "\n"))
	}
	word := "never"
	if inv.Check.Open {
		word = "runs"
	}
	fmt.Fprintf(w, "\nNomad CHECK on restore: %s: %s\n", word, inv.Check.Reason)
}
