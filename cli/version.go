package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/release"
)

// versionInfo is what `nicmux version` reports.
type versionInfo struct {
	Version     string   `json:"version"`
	Commit      string   `json:"commit"`
	Go          string   `json:"go"`
	CNIVersions []string `json:"cniVersions"`
}

// buildVersion is this binary's versionInfo: its release (the tag and the
// commit the Makefile stamps, else what go recorded, see release.Get) and
// the Go release that built it.
func buildVersion(r release.Info) versionInfo {
	return versionInfo{Version: r.Version, Commit: r.Commit, Go: runtime.Version(), CNIVersions: conf.SupportedVersions()}
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
	v := buildVersion(release.Get())
	if *asJSON {
		b, _ := json.Marshal(v)
		fmt.Fprintf(e.stdout, "%s\n", b)
		return exitOK
	}
	v.print(e.stdout)
	return exitOK
}
