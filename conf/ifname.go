package conf

import (
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/utils"
)

// namespaceOwn are the links a network namespace has of its own: lo, and
// the fallback device each tunnel module adds to every namespace while it
// is loaded (unless net.core.fb_tunnels_only_for_init_net says otherwise),
// by module. A chain given one of these names finds it there: its ADD
// fails, and its DEL would delete the namespace's own link, or fail on it
// for ever.
var namespaceOwn = map[string]string{
	"lo":       "",
	"tunl0":    "ipip",
	"sit0":     "sit",
	"ip6tnl0":  "ip6_tunnel",
	"ip_vti0":  "ip_vti",
	"ip6_vti0": "ip6_vti",
	"gre0":     "ip_gre",
	"gretap0":  "ip_gre",
	"erspan0":  "ip_gre",
	"ip6gre0":  "ip6_gre",
}

// validateIfName checks an interface name a chain is to get as CNI_IFNAME:
// a name the kernel takes (utils.ValidateInterfaceName) that it would not
// replace by one of its choosing ("net%d": ADD leaves "net0" behind) and
// that no network namespace has of its own.
func validateIfName(name string) error {
	if e := utils.ValidateInterfaceName(name); e != nil {
		return fmt.Errorf("%s", cniMsg(e))
	}
	if reason := NamespaceOwn(name); reason != "" {
		return fmt.Errorf("%s", reason)
	}
	return nil
}

// NamespaceOwn says why a container's interface cannot be named name, when
// the name is taken before any chain runs: by the kernel's templating, or
// by a link the namespace has of its own; "" when it is not. Nothing a
// chain did can be in the namespace under such a name, so a release of a
// record that carries one (written before nicmux refused them) gives the
// chain no namespace.
func NamespaceOwn(name string) string {
	if strings.Contains(name, "%") {
		return "the kernel would choose the link's name itself ('%')"
	}
	module, ok := namespaceOwn[name]
	switch {
	case !ok:
		return ""
	case module == "":
		return "every network namespace has a link of that name"
	}
	return "a network namespace has a link of that name once the kernel's " + module + " module is loaded"
}
