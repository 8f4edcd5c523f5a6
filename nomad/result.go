package nomad

import (
	"errors"
	"fmt"
	"net"
	"sort"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// Interface is one entry of go-cni's map of the result's interfaces.
type Interface struct {
	Sandbox string   `json:"sandbox,omitempty"`
	Mac     string   `json:"mac,omitempty"`
	IPs     []net.IP `json:"ips,omitempty"`
}

// Result is the result as the client sees it through go-cni: interfaces
// by name. Routes, other fields and the order of the interfaces are lost.
type Result struct {
	Interfaces map[string]*Interface `json:"interfaces"`
}

// Names returns the interface names as the client walks them: sorted as
// strings, so "eth10" comes before "eth2".
func (r *Result) Names() []string {
	names := make([]string, 0, len(r.Interfaces))
	for n := range r.Interfaces {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Errors of ReadResult. ErrInvalidResult fails the setup try (go-cni
// returns it from Setup); ErrPanic is where go-cni panics instead.
var (
	ErrInvalidResult = errors.New("invalid result")
	ErrPanic         = errors.New("go-cni panics reading the result")
)

// ReadResult reads a plugin list's result as go-cni does for the client:
// converted to CNI 1.0.0, then a map by interface name that always holds
// an empty IfName ("eth0") entry; an IP without an interface index goes to
// that entry; an index past the interfaces is ErrInvalidResult, except one
// equal to their number (or negative), which passes go-cni's bounds check
// and makes it index past the end: ErrPanic.
func ReadResult(res types.Result) (*Result, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, err
	}
	out := &Result{Interfaces: map[string]*Interface{IfName: {}}}
	for _, intf := range r.Interfaces {
		if intf == nil {
			return nil, fmt.Errorf("%w: a nil interface (runtime error: invalid memory address)", ErrPanic)
		}
		out.Interfaces[intf.Name] = &Interface{Sandbox: intf.Sandbox, Mac: intf.Mac}
	}
	for _, ip := range r.IPs {
		name, err := ipInterface(ip, r.Interfaces)
		if err != nil {
			return nil, err
		}
		out.Interfaces[name].IPs = append(out.Interfaces[name].IPs, ip.Address.IP)
	}
	return out, nil
}

// ipInterface is the name of the interface go-cni attaches ip to.
func ipInterface(ip *types100.IPConfig, ifs []*types100.Interface) (string, error) {
	switch {
	case ip == nil:
		return "", fmt.Errorf("invalid interface config: invalid IP configuration (nil): %w", ErrInvalidResult)
	case ip.Interface == nil:
		return IfName, nil
	case *ip.Interface > len(ifs):
		return "", fmt.Errorf("invalid interface config: invalid IP configuration (interface number %d is > number of interfaces %d): %w",
			*ip.Interface, len(ifs), ErrInvalidResult)
	case *ip.Interface == len(ifs) || *ip.Interface < 0:
		return "", fmt.Errorf("%w: IP %s names interface %d of %d (index out of range): every IP needs a valid interface index",
			ErrPanic, ip.Address.String(), *ip.Interface, len(ifs))
	}
	return ifs[*ip.Interface].Name, nil
}
