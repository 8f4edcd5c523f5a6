// Command ifrename is a test-only CNI plugin. It stands in for the shell
// wrappers operators put in hand-written conflists to give a container a
// second interface: it runs the plugin described by its "delegate" setting
// with CNI_IFNAME replaced by its "ifname" setting, and hands back the
// delegate's result as its own. The go-cni suite uses it to show what such a
// chain does under Nomad (the interface before it is lost from the result,
// and CHECK fails), beside the same interfaces through nicmux.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

type netConf struct {
	types.NetConf
	IfName   string         `json:"ifname"`
	Delegate map[string]any `json:"delegate"`
}

// delegateConf returns the delegate's type and its network configuration:
// the "delegate" object with the list's name and cniVersion, and this
// plugin's prevResult and runtimeConfig, as libcni would have given them.
func delegateConf(stdin []byte) (*netConf, string, []byte, error) {
	nc := &netConf{}
	if err := json.Unmarshal(stdin, nc); err != nil {
		return nil, "", nil, err
	}
	typ, _ := nc.Delegate["type"].(string)
	if typ == "" || nc.IfName == "" {
		return nil, "", nil, errors.New(`ifrename needs "ifname" and a "delegate" with a "type"`)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &raw); err != nil {
		return nil, "", nil, err
	}
	out := map[string]any{}
	for k, v := range nc.Delegate {
		out[k] = v
	}
	out["cniVersion"], out["name"] = nc.CNIVersion, nc.Name
	for _, k := range []string{"prevResult", "runtimeConfig"} {
		if v, ok := raw[k]; ok {
			out[k] = v
		}
	}
	b, err := json.Marshal(out)
	return nc, typ, b, err
}

// rename points CNI_IFNAME, which the delegate inherits, at the wrapper's
// interface name.
func rename(stdin []byte) (*netConf, string, []byte, error) {
	nc, typ, conf, err := delegateConf(stdin)
	if err == nil {
		err = os.Setenv("CNI_IFNAME", nc.IfName)
	}
	return nc, typ, conf, err
}

func cmdAdd(args *skel.CmdArgs) error {
	nc, typ, conf, err := rename(args.StdinData)
	if err != nil {
		return err
	}
	res, err := invoke.DelegateAdd(context.Background(), typ, conf, nil)
	if err != nil {
		return err
	}
	return types.PrintResult(res, nc.CNIVersion)
}

func cmdCheck(args *skel.CmdArgs) error {
	_, typ, conf, err := rename(args.StdinData)
	if err != nil {
		return err
	}
	return invoke.DelegateCheck(context.Background(), typ, conf, nil)
}

func cmdDel(args *skel.CmdArgs) error {
	_, typ, conf, err := rename(args.StdinData)
	if err != nil {
		return err
	}
	return invoke.DelegateDel(context.Background(), typ, conf, nil)
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Del: cmdDel},
		version.All, "CNI ifrename test plugin")
}
