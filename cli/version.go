package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/mux"
)

// versionInfo is what `nicmux version` reports.
type versionInfo struct {
	Version     string   `json:"version"`
	Commit      string   `json:"commit"`
	Go          string   `json:"go"`
	CNIVersions []string `json:"cniVersions"`
}

// buildVersion reads the commit and Go version from the binary's build
// information: the VCS revision go build stamps (with "-dirty" when the tree
// was modified), else the module version `go install ...@version` records,
// else "unknown" (a build with -buildvcs=false or outside a repository).
func buildVersion(bi *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Version: mux.Version, Commit: "unknown", Go: runtime.Version(), CNIVersions: conf.SupportedVersions()}
	if !ok || bi == nil {
		return v
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	switch {
	case rev != "" && modified == "true":
		v.Commit = rev + "-dirty"
	case rev != "":
		v.Commit = rev
	case bi.Main.Version != "" && bi.Main.Version != "(devel)":
		v.Commit = bi.Main.Version
	}
	return v
}

func (v versionInfo) print(w io.Writer) {
	fmt.Fprintf(w, "nicmux %s\ncommit: %s\ngo: %s\nCNI versions: %s\n", v.Version, v.Commit, v.Go, strings.Join(v.CNIVersions, ", "))
}

func runVersion(e *env, args []string) int {
	f := newFlags("version", "Prints nicmux's version, the commit it was built from, its Go version and the\nCNI specification versions it speaks.")
	asJSON := f.Bool("json", false, "print one JSON object")
	if _, code, ok := f.parseN(e, args, 0, 0, ""); !ok {
		return code
	}
	v := buildVersion(debug.ReadBuildInfo())
	if *asJSON {
		b, _ := json.Marshal(v)
		fmt.Fprintf(e.stdout, "%s\n", b)
		return exitOK
	}
	v.print(e.stdout)
	return exitOK
}
