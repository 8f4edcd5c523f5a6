package mux

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"

	"github.com/nicmux/nicmux/state"
)

// checkEnv catches what skel would report without naming the variable, and
// a missing CNI_COMMAND when the runtime clearly meant to run a verb (a bare
// run, with no CNI variable at all, is Nomad's fingerprint and prints the
// version).
func checkEnv(getenv func(string) string) *types.Error {
	if getenv("CNI_COMMAND") == "" {
		for _, v := range []string{"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH", "CNI_ARGS"} {
			if getenv(v) != "" {
				return types.NewError(types.ErrInvalidEnvironmentVariables, "required env variables [CNI_COMMAND] missing", "")
			}
		}
		return nil
	}
	if id := getenv("CNI_CONTAINERID"); id != "" {
		if e := utils.ValidateContainerID(id); e != nil {
			return types.NewError(e.Code, fmt.Sprintf("CNI_CONTAINERID %q: %s", id, e.Msg), e.Details)
		}
		if len(id) > state.MaxIDLength {
			return types.NewError(types.ErrInvalidEnvironmentVariables,
				fmt.Sprintf("CNI_CONTAINERID %.40q...: %d characters, more than the %d nicmux accepts", id, len(id), state.MaxIDLength), "")
		}
	}
	if ifname := getenv("CNI_IFNAME"); ifname != "" {
		if e := utils.ValidateInterfaceName(ifname); e != nil {
			return types.NewError(e.Code, fmt.Sprintf("CNI_IFNAME %q: %s", ifname, e.Msg), e.Details)
		}
	}
	return nil
}
