// Command linked prints, as JSON, the module versions of go-cni and
// containernetworking/cni it was linked with, from its own build
// information (runtime/debug.ReadBuildInfo). The go-cni suite builds it
// with its leg's modfile: a test binary's build information lists no
// dependencies (golang/go#33976, #76926), a command's does.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
)

// The packages the suite calls, so that their modules are linked.
var (
	_ = gocni.New
	_ = libcni.ConfFiles
)

// modules are the module paths reported.
var modules = []string{"github.com/containerd/go-cni", "github.com/containernetworking/cni"}

func main() {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(os.Stderr, "linked: no build information")
		os.Exit(1)
	}
	out := map[string]string{}
	for _, d := range bi.Deps {
		for _, m := range modules {
			if d.Path != m {
				continue
			}
			if d.Replace != nil {
				out[m] = d.Replace.Path + "@" + d.Replace.Version
			} else {
				out[m] = d.Version
			}
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
