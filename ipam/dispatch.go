package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/ns"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"
	"github.com/containernetworking/cni/pkg/version"
)

// dispatch runs one CNI call from its variables and stdin as skel runs a
// plugin's from the process's: skel reads the process's environment, which
// a daemon answering many calls at once cannot share. The checks, their
// order, messages and codes are skel's (CNI v1.3.1), so that a call gets
// the same answer from the daemon as from nicmux-ipamd run directly.
func dispatch(getenv func(string) string, stdin []byte, stdout io.Writer, funcs skel.CNIFuncs) *types.Error {
	cmd, args, err := cmdArgs(getenv, stdin)
	if err != nil {
		return err
	}
	info := supported()
	switch cmd {
	case "ADD", "DEL":
		f := funcs.Add
		if cmd == "DEL" {
			f = funcs.Del
		}
		if err := checkAndCall(args, info, f); err != nil {
			return err
		}
		return checkNetns(args)
	case "CHECK":
		return since(cmd, "0.4.0", args, info, funcs.Check)
	case "GC":
		return since(cmd, "1.1.0", args, info, funcs.GC)
	case "STATUS":
		return since(cmd, "1.1.0", args, info, funcs.Status)
	case "VERSION":
		if err := info.Encode(stdout); err != nil {
			return types.NewError(types.ErrIOFailure, err.Error(), "")
		}
		return nil
	}
	return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("unknown CNI_COMMAND: %v", cmd), "")
}

// cniVar is one CNI_* variable: the verbs that need it, and its check.
type cniVar struct {
	name     string
	required []string
	validate func(string) *types.Error
}

// cniVars are skel's, in its order.
func cniVars() []cniVar {
	allVerbs := []string{"ADD", "CHECK", "DEL", "GC", "STATUS"}
	owner := []string{"ADD", "CHECK", "DEL"}
	return []cniVar{
		{"CNI_COMMAND", allVerbs, nil},
		{"CNI_CONTAINERID", owner, utils.ValidateContainerID},
		{"CNI_NETNS", []string{"ADD", "CHECK"}, nil},
		{"CNI_IFNAME", owner, utils.ValidateInterfaceName},
		{"CNI_ARGS", nil, nil},
		{"CNI_PATH", allVerbs, nil},
		{"CNI_NETNS_OVERRIDE", nil, nil},
	}
}

func cmdArgs(getenv func(string) string, stdin []byte) (string, *skel.CmdArgs, *types.Error) {
	cmd := getenv("CNI_COMMAND")
	var missing []string
	for _, v := range cniVars() {
		val := getenv(v.name)
		needed := slices.Contains(v.required, cmd)
		switch {
		case val == "" && (needed || v.name == "CNI_COMMAND"):
			missing = append(missing, v.name)
		case val != "" && needed && v.validate != nil:
			if err := v.validate(val); err != nil {
				return "", nil, err
			}
		}
	}
	if len(missing) > 0 {
		return "", nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("required env variables [%s] missing", strings.Join(missing, ",")), "")
	}
	if cmd == "VERSION" {
		stdin = nil
	} else if err := validateName(stdin); err != nil {
		return "", nil, err
	}
	return cmd, &skel.CmdArgs{
		ContainerID: getenv("CNI_CONTAINERID"), Netns: getenv("CNI_NETNS"), IfName: getenv("CNI_IFNAME"),
		Args: getenv("CNI_ARGS"), Path: getenv("CNI_PATH"), NetnsOverride: getenv("CNI_NETNS_OVERRIDE"), StdinData: stdin,
	}, nil
}

// validateName is skel's check of the network's name.
func validateName(stdin []byte) *types.Error {
	var conf struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("error unmarshall network config: %v", err), "")
	}
	if conf.Name == "" {
		return types.NewError(types.ErrInvalidNetworkConfig, "missing network name", "")
	}
	return utils.ValidateNetworkName(conf.Name)
}

// checkAndCall checks the configuration's version against the plugin's,
// then calls f; its error becomes a CNI error as skel makes it.
func checkAndCall(args *skel.CmdArgs, info version.PluginInfo, f func(*skel.CmdArgs) error) *types.Error {
	confVersion, err := (&version.ConfigDecoder{}).Decode(args.StdinData)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, err.Error(), "")
	}
	if verr := (&version.Reconciler{}).Check(confVersion, info); verr != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "incompatible CNI versions", verr.Details())
	}
	if err := f(args); err != nil {
		var e *types.Error
		if errors.As(err, &e) {
			return e
		}
		return types.NewError(types.ErrInternal, err.Error(), "")
	}
	return nil
}

// since runs a verb that a configuration may ask for from version min on.
func since(cmd, min string, args *skel.CmdArgs, info version.PluginInfo, f func(*skel.CmdArgs) error) *types.Error {
	confVersion, err := (&version.ConfigDecoder{}).Decode(args.StdinData)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, err.Error(), "")
	}
	if ok, err := version.GreaterThanOrEqualTo(confVersion, min); err != nil {
		return types.NewError(types.ErrDecodingFailure, err.Error(), "")
	} else if !ok {
		return types.NewError(types.ErrIncompatibleCNIVersion, "config version does not allow "+cmd, "")
	}
	for _, v := range info.SupportedVersions() {
		ok, err := version.GreaterThanOrEqualTo(v, confVersion)
		if err != nil {
			return types.NewError(types.ErrDecodingFailure, err.Error(), "")
		}
		if ok {
			return checkAndCall(args, info, f)
		}
	}
	return types.NewError(types.ErrIncompatibleCNIVersion, "plugin version does not allow "+cmd, "")
}

// checkNetns is skel's check, after ADD and DEL, that CNI_NETNS is not the
// plugin's own namespace.
func checkNetns(args *skel.CmdArgs) *types.Error {
	if strings.ToUpper(args.NetnsOverride) == "TRUE" || args.NetnsOverride == "1" {
		return nil
	}
	same, err := ns.CheckNetNS(args.Netns)
	if err != nil {
		return err
	}
	if same {
		return types.NewError(types.ErrInvalidNetNS, "plugin's netns and netns from CNI_NETNS should not be the same", "")
	}
	return nil
}

// printError prints a CNI error as skel does.
func printError(w io.Writer, e *types.Error) {
	b, err := json.MarshalIndent(e, "", "    ")
	if err == nil {
		_, _ = w.Write(b)
	}
}
