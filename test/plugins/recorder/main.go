// Command recorder is a test-only CNI plugin. It appends one JSON line per
// call (verb, CNI_* variables and the exact stdin) to the file named by its
// "recordFile" setting, passes its prevResult through as its result, and
// fails on the verbs listed in "failOn" with "failCode" (or sleeps first,
// with "sleepOn" and "sleepMs"). Integration tests put
// it in a chain beside the reference plugins to see exactly what nicmux hands
// each delegate.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

type netConf struct {
	types.PluginConf
	RecordFile string   `json:"recordFile"`
	FailOn     []string `json:"failOn"`
	FailCode   uint     `json:"failCode"`
	// SleepOn and SleepMs make the plugin hang on a verb, so a test can
	// kill the runtime mid-verb.
	SleepOn []string `json:"sleepOn"`
	SleepMs int      `json:"sleepMs"`
}

// Call is one recorded invocation.
type Call struct {
	Command     string          `json:"command"`
	ContainerID string          `json:"containerID"`
	Netns       string          `json:"netns"`
	IfName      string          `json:"ifname"`
	Args        string          `json:"args"`
	Path        string          `json:"path"`
	Stdin       json.RawMessage `json:"stdin"`
}

func record(verb string, args *skel.CmdArgs) (*netConf, error) {
	nc := &netConf{}
	if err := json.Unmarshal(args.StdinData, nc); err != nil {
		return nil, err
	}
	if nc.RecordFile != "" {
		line, err := json.Marshal(Call{Command: verb, ContainerID: args.ContainerID, Netns: args.Netns,
			IfName: args.IfName, Args: args.Args, Path: args.Path, Stdin: args.StdinData})
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(nc.RecordFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if _, err := f.Write(append(line, '\n')); err != nil {
			return nil, err
		}
	}
	if slices.Contains(nc.SleepOn, verb) {
		time.Sleep(time.Duration(nc.SleepMs) * time.Millisecond)
	}
	if slices.Contains(nc.FailOn, verb) {
		code := nc.FailCode
		if code == 0 {
			code = types.ErrInternal
		}
		return nil, types.NewError(code, fmt.Sprintf("recorder told to fail %s on %s", verb, args.IfName), "")
	}
	return nc, nil
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			nc, err := record("ADD", args)
			if err != nil {
				return err
			}
			if err := version.ParsePrevResult(&nc.PluginConf); err != nil {
				return err
			}
			result := nc.PrevResult
			if result == nil {
				result = &types100.Result{CNIVersion: nc.CNIVersion}
			}
			return types.PrintResult(result, nc.CNIVersion)
		},
		Check: func(args *skel.CmdArgs) error { _, err := record("CHECK", args); return err },
		Del:   func(args *skel.CmdArgs) error { _, err := record("DEL", args); return err },
		GC:    func(args *skel.CmdArgs) error { _, err := record("GC", args); return err },
		Status: func(args *skel.CmdArgs) error {
			_, err := record("STATUS", args)
			return err
		},
	}, version.All, "CNI recorder test plugin")
}
