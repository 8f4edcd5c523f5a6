package nomad

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	gocni "github.com/containerd/go-cni"
)

// addressRuleChanges are the Nomad releases from which nomadAddress's rule
// changes: 1.9.0 prefers an IPv4 address, 1.10.4 adds AddressIPv6, 1.11.0
// accepts an interface with IPv6 only. Every leg models the releases of
// its range where these fall (TestLegs).
var addressRuleChanges = []string{"1.9.0", "1.10.4", "1.11.0"}

// errNoAddress is Nomad's error when it finds no allocation address.
var errNoAddress = errors.New("no interface with an address")

// nomadAddress is a model, from NOMAD.md ("How Nomad reads the result"),
// of how the Nomad client release nomad (e.g. "1.9.6"; 1.8.0 or later)
// reads the allocation's address from go-cni's result. It returns addr,
// Nomad's Address (what address_mode = "alloc" services register and
// NOMAD_ALLOC_IP_* hold), and addr6, its AddressIPv6 (address_mode =
// "alloc_ipv6"), "" for none.
//
// go-cni hands Nomad the interfaces as a map by name (with an empty "eth0"
// entry always there); Nomad walks the names sorted alphabetically and
// takes the first interface that has a sandbox and
//
//   - from 1.9.0, an IPv4 address: addr is its first IPv4 address; from
//     1.10.4, addr6 is its first IPv6 address, if it has one;
//   - in 1.8.x, any address: addr is its first (IPConfigs[0]), IPv4 or
//     IPv6; there is no AddressIPv6;
//   - from 1.11.0, any address: addr is its first IPv4 address, or
//     without one its first IPv6 address; addr6 is its first IPv6 address.
//
// With no such interface Nomad fails the setup with "no interface with an
// address" (errNoAddress). Interfaces without a sandbox (the host side:
// bridges, veth peers) are never chosen, and the file order of nicmux's
// interfaces plays no part. Unlike NOMAD.md's account, the public Nomad
// source of the 1.7 era also fell back to the first interface with an
// address, sandboxed or not, when no sandboxed one had one; this model
// does not: a result it rejects for want of a sandboxed address might
// still get one from Nomad.
func nomadAddress(res *gocni.Result, nomad string) (addr, addr6 string, err error) {
	if compareVersions(nomad, "1.8.0") < 0 {
		return "", "", fmt.Errorf("Nomad %q: the model covers releases 1.8.0 and later", nomad)
	}
	if res == nil {
		return "", "", errors.New("no CNI result")
	}
	ipv4First := compareVersions(nomad, "1.9.0") >= 0
	withIPv6 := compareVersions(nomad, "1.10.4") >= 0
	ipv6Only := compareVersions(nomad, "1.11.0") >= 0
	names := make([]string, 0, len(res.Interfaces))
	for name := range res.Interfaces {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		iface := res.Interfaces[name]
		if iface == nil || iface.Sandbox == "" {
			continue
		}
		var v4, v6 []string
		for _, ip := range iface.IPConfigs {
			switch {
			case ip == nil || ip.IP == nil:
			case ip.IP.To4() != nil:
				v4 = append(v4, ip.IP.String())
			default:
				v6 = append(v6, ip.IP.String())
			}
		}
		switch {
		case ipv6Only && len(v4) == 0 && len(v6) > 0:
			return v6[0], v6[0], nil
		case !ipv4First && len(iface.IPConfigs) > 0 && iface.IPConfigs[0] != nil && iface.IPConfigs[0].IP != nil:
			return iface.IPConfigs[0].IP.String(), "", nil
		case ipv4First && len(v4) > 0:
			if withIPv6 && len(v6) > 0 {
				addr6 = v6[0]
			}
			return v4[0], addr6, nil
		}
	}
	return "", "", errNoAddress
}

// parseVersion reads "1.10.4" (or "v1.10.4") as its three numbers.
func parseVersion(v string) ([3]int, error) {
	var out [3]int
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	if len(parts) != 3 {
		return out, fmt.Errorf("version %q is not major.minor.patch", v)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, fmt.Errorf("version %q is not major.minor.patch", v)
		}
		out[i] = n
	}
	return out, nil
}

// compareVersions compares two major.minor.patch versions like
// strings.Compare; a version that does not parse sorts before every other.
func compareVersions(a, b string) int {
	va, errA := parseVersion(a)
	vb, errB := parseVersion(b)
	switch {
	case errA != nil || errB != nil:
		if errA != nil && errB != nil {
			return 0
		}
		if errA != nil {
			return -1
		}
		return 1
	}
	for i := range va {
		if va[i] != vb[i] {
			if va[i] < vb[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}
