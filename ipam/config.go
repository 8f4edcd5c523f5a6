package ipam

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// Defaults of the configuration.
const (
	DefaultDataDir = "/var/lib/cni/nicmux-ipam"
	defaultBlock4  = 26
	defaultBlock6  = 122
)

// config is the plugin's configuration: the ipam object of the network
// configuration, checked, with its defaults filled in, and what the runtime
// asked for.
type config struct {
	CNIVersion string
	Network    string // the network configuration's name
	Pool       *pool
	Routes     []*types.Route
	Etcd       EtcdConfig
	Node       string
	DataDir    string
	// MetricsFile is the Prometheus text file the node's figures are
	// drawn in; "" for none.
	MetricsFile string
	// Sticky is how long etcd keeps a released owner's addresses for it.
	Sticky time.Duration
	// Requested are the addresses the runtime asked for (runtimeConfig.ips,
	// args.cni.ips, CNI_ARGS IP=), each in its range set.
	Requested []netip.Addr
	// Valid are GC's valid attachments (cni.dev/valid-attachments).
	Valid []types.GCAttachment
	// PrevResult is CHECK's prevResult, raw.
	PrevResult json.RawMessage
}

// netConf is what nicmux-ipam reads of its stdin: the network configuration
// of the plugin that delegates to it.
type netConf struct {
	CNIVersion    string          `json:"cniVersion"`
	Name          string          `json:"name"`
	IPAM          json.RawMessage `json:"ipam"`
	PrevResult    json.RawMessage `json:"prevResult"`
	RuntimeConfig struct {
		IPs []string `json:"ips"`
	} `json:"runtimeConfig"`
	Args struct {
		CNI struct {
			IPs []string `json:"ips"`
		} `json:"cni"`
	} `json:"args"`
	Valid []types.GCAttachment `json:"cni.dev/valid-attachments"`
}

// ipamConf is the ipam object as written.
type ipamConf struct {
	Type              string          `json:"type"`
	Pool              string          `json:"pool"`
	Ranges            [][]rangeConf   `json:"ranges"`
	Routes            []*types.Route  `json:"routes"`
	Etcd              *etcdConf       `json:"etcd"`
	EtcdConfig        string          `json:"etcdConfig"`
	Node              string          `json:"node"`
	DataDir           string          `json:"dataDir"`
	BlockPrefixLength *blockLengths   `json:"blockPrefixLength"`
	MetricsFile       string          `json:"metricsFile"`
	Sticky            string          `json:"sticky"`
	ResolvConf        json.RawMessage `json:"resolvConf"`
	// Socket is the node daemon's socket, which nicmux-ipam calls
	// (package ipamd); the verbs do not read it.
	Socket string `json:"socket"`
}

// blockLengths are the prefix lengths of the pool's blocks, per family.
type blockLengths struct {
	IPv4 int `json:"ipv4,omitempty"`
	IPv6 int `json:"ipv6,omitempty"`
}

// nameRE is what a pool or node name may be: it becomes a key part.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// checkName checks a pool or node name.
func checkName(field, s string) error {
	if len(s) > 253 || !nameRE.MatchString(s) || s == "." || s == ".." {
		return fmt.Errorf("%s: %q is not a valid name (letters, digits, '.', '_' and '-', starting with a letter or digit, at most 253)", field, s)
	}
	return nil
}

// parseConfig reads the plugin's stdin and CNI_ARGS. hostname is the node
// name when the configuration gives none. Errors name the field; they are
// code 6 when the JSON cannot be decoded, 7 otherwise.
func parseConfig(stdin []byte, cniArgs string, hostname func() (string, error)) (*config, error) {
	var nc netConf
	if err := json.Unmarshal(stdin, &nc); err != nil {
		return nil, codeErr(types.ErrDecodingFailure, fmt.Errorf("network configuration: %w", err))
	}
	if len(nc.IPAM) == 0 || string(nc.IPAM) == "null" {
		return nil, configErr("ipam: missing")
	}
	var ic ipamConf
	dec := json.NewDecoder(bytes.NewReader(nc.IPAM))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ic); err != nil {
		return nil, codeErr(types.ErrDecodingFailure, fmt.Errorf("ipam: %w", err))
	}
	c := &config{CNIVersion: nc.CNIVersion, Network: nc.Name, Routes: ic.Routes, Valid: nc.Valid, PrevResult: nc.PrevResult}
	if err := c.fill(&ic, hostname); err != nil {
		return nil, err
	}
	if err := c.request(nc.RuntimeConfig.IPs, "runtimeConfig.ips"); err != nil {
		return nil, err
	}
	if err := c.request(nc.Args.CNI.IPs, "args.cni.ips"); err != nil {
		return nil, err
	}
	if err := c.request(argIPs(cniArgs), "CNI_ARGS IP"); err != nil {
		return nil, err
	}
	return c, nil
}

// fill checks the ipam object and fills c from it.
func (c *config) fill(ic *ipamConf, hostname func() (string, error)) error {
	if ic.Pool == "" {
		return configErr("ipam.pool: missing: name the address pool (nodes whose configurations name one pool share its addresses)")
	}
	if err := checkName("ipam.pool", ic.Pool); err != nil {
		return configErr("%v", err)
	}
	sets, err := parseRangeSets(ic.Ranges)
	if err != nil {
		return configErr("ipam.%v", err)
	}
	c.Pool = &pool{Name: ic.Pool, Sets: sets, BlockBits4: defaultBlock4, BlockBits6: defaultBlock6}
	if err := c.Pool.setBlockBits(ic.BlockPrefixLength); err != nil {
		return configErr("ipam.blockPrefixLength: %v", err)
	}
	if c.Etcd, err = etcdFrom(ic.Etcd, ic.EtcdConfig); err != nil {
		return err
	}
	c.Node = ic.Node
	if c.Node == "" {
		if c.Node, err = hostname(); err != nil {
			return configErr("ipam.node: not given, and the host name cannot be read: %v", err)
		}
	}
	if err := checkName("ipam.node", c.Node); err != nil {
		return configErr("%v", err)
	}
	if c.Sticky, err = parseSticky(ic.Sticky); err != nil {
		return err
	}
	c.DataDir = ic.DataDir
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if !strings.HasPrefix(c.DataDir, "/") {
		return configErr("ipam.dataDir: %q is not an absolute path", c.DataDir)
	}
	if ic.Socket != "" && !strings.HasPrefix(ic.Socket, "/") {
		return configErr("ipam.socket: %q is not an absolute path", ic.Socket)
	}
	c.MetricsFile = ic.MetricsFile
	if c.MetricsFile != "" && (!strings.HasPrefix(c.MetricsFile, "/") || !strings.HasSuffix(c.MetricsFile, ".prom")) {
		return configErr("ipam.metricsFile: %q is not an absolute path ending in .prom (node_exporter's textfile collector reads no other file)", c.MetricsFile)
	}
	return nil
}

// parseSticky reads ipam.sticky: a duration up to a day, "0s" for none.
func parseSticky(s string) (time.Duration, error) {
	if s == "" {
		return DefaultSticky, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > 24*time.Hour {
		return 0, configErr("ipam.sticky: %q is not a duration between 0s (keep nothing) and 24h (e.g. \"5m\")", s)
	}
	if d > 0 && d < time.Second {
		d = time.Second // etcd's leases count whole seconds
	}
	return d, nil
}

// setBlockBits applies the configured block prefix lengths.
func (p *pool) setBlockBits(l *blockLengths) error {
	if l == nil {
		return nil
	}
	if l.IPv4 != 0 {
		if l.IPv4 < 16 || l.IPv4 > 32 {
			return fmt.Errorf("ipv4: %d is not between 16 and 32", l.IPv4)
		}
		p.BlockBits4 = l.IPv4
	}
	if l.IPv6 != 0 {
		if l.IPv6 < 112 || l.IPv6 > 128 {
			return fmt.Errorf("ipv6: %d is not between 112 and 128", l.IPv6)
		}
		p.BlockBits6 = l.IPv6
	}
	return nil
}

// request adds the addresses the runtime asks for, from field: each must
// be one the pool hands out, at most one per range set.
func (c *config) request(ips []string, field string) error {
	for _, s := range ips {
		a, err := parseIPOrCIDR(s)
		if err != nil {
			return configErr("%s: %q is not an IP address", field, s)
		}
		b, ok := c.Pool.blockOf(a)
		if !ok {
			return configErr("%s: %s is not an address pool %s hands out (ranges %s)", field, a, c.Pool.Name, c.Pool.rangesString())
		}
		for _, o := range c.Requested {
			if ob, _ := c.Pool.blockOf(o); ob.Set == b.Set && o != a {
				return configErr("%s: %s and %s are both in range set %d (%s): ask for one address per range set", field, o, a, b.Set, c.Pool.Sets[b.Set])
			}
		}
		if !slices.Contains(c.Requested, a) {
			c.Requested = append(c.Requested, a)
		}
	}
	return nil
}

// parseIPOrCIDR reads "10.20.0.5" or "10.20.0.5/16", as host-local does.
func parseIPOrCIDR(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

// argIPs returns the addresses of CNI_ARGS's IP key, comma-separated.
func argIPs(args string) []string {
	for _, kv := range strings.Split(args, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "IP" && v != "" {
			return strings.Split(v, ",")
		}
	}
	return nil
}

// readFileErr names a file that cannot be read, for configuration errors.
func readFile(field, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, configErr("%s: %v", field, err)
	}
	return b, nil
}
