package ipam

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func host() (string, error) { return "client-7", nil }

func TestParseConfigAsTheIssueShowsIt(t *testing.T) {
	conf := `{"cniVersion": "1.0.0", "name": "storage-net", "type": "macvlan", "master": "ens5",
	  "ipam": {"type": "nicmux-ipam", "pool": "storage",
	    "ranges": [[{"subnet": "10.20.0.0/16", "rangeStart": "10.20.0.10", "rangeEnd": "10.20.255.250", "gateway": "10.20.0.1"}],
	               [{"subnet": "fd20::/64"}]],
	    "routes": [{"dst": "0.0.0.0/0"}],
	    "etcd": {"endpoints": ["https://10.0.0.5:2379"], "caFile": "/etc/ca.pem", "certFile": "/etc/c.pem", "keyFile": "/etc/k.pem", "prefix": "/nicmux/ipam", "timeout": "3s"}},
	  "runtimeConfig": {"ips": ["10.20.0.77/16"]}}`
	c, err := parseConfig([]byte(conf), "IgnoreUnknown=true;IP=fd20::77", host)
	if err != nil {
		t.Fatal(err)
	}
	if c.Network != "storage-net" || c.Pool.Name != "storage" || c.Node != "client-7" || c.DataDir != DefaultDataDir {
		t.Errorf("config %+v", c)
	}
	if len(c.Pool.Sets) != 2 || c.Pool.Sets[0][0].Start.String() != "10.20.0.10" || c.Pool.Sets[1][0].End.String() != "fd20::ffff:ffff:ffff:ffff" {
		t.Errorf("ranges %v", c.Pool.Sets)
	}
	if c.Etcd.Timeout != 3*time.Second || c.Etcd.Prefix != "/nicmux/ipam" || c.Etcd.CAFile != "/etc/ca.pem" {
		t.Errorf("etcd %+v", c.Etcd)
	}
	if len(c.Requested) != 2 || c.Requested[0].String() != "10.20.0.77" || c.Requested[1].String() != "fd20::77" {
		t.Errorf("requested %v", c.Requested)
	}
	// size: .10 to 255.250 less the gateway, which is outside.
	if got := c.Pool.Sets[0].size().String(); got != "65521" {
		t.Errorf("size %s", got)
	}
}

func TestParseConfigErrorsNameTheField(t *testing.T) {
	etcd := `"etcd": {"endpoints": ["http://127.0.0.1:2379"]}`
	for _, tc := range []struct {
		ipam, args string
		code       uint
		want       string
	}{
		{`{"type": "nicmux-ipam", "ranges": [[{"subnet": "10.0.0.0/24"}]], ` + etcd + `}`, "", 7, "ipam.pool: missing"},
		{`{"type": "nicmux-ipam", "pool": "a/b", "ranges": [[{"subnet": "10.0.0.0/24"}]], ` + etcd + `}`, "", 7, `ipam.pool: "a/b" is not a valid name`},
		{`{"type": "nicmux-ipam", "pool": "p", ` + etcd + `}`, "", 7, "ipam.ranges: missing"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.1/24"}]], ` + etcd + `}`, "", 7, "ipam.ranges[0][0].subnet: 10.0.0.1/24 has host bits set"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}]], ` + etcd + `}`, "", 7, "ipam.ranges[0][0].rangeStart: 10.0.1.5 is not in subnet 10.0.0.0/24"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]], ` + etcd + `}`, "", 7, "ipam.ranges[0][1].subnet: fd00::/64 is not of the family"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.128/25"}]], ` + etcd + `}`, "", 7, "ipam.ranges[1][0].subnet: 10.0.0.128/25 overlaps 10.0.0.0/24"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]]}`, "", 7, "ipam.etcd: missing"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], "etcd": {"endpoints": ["10.0.0.5:2379"]}}`, "", 7, `ipam.etcd.endpoints[0]: "10.0.0.5:2379" is not an etcd client URL`},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], "etcd": {"endpoints": ["http://a:1"], "timeout": "soon"}}`, "", 7, `ipam.etcd.timeout: "soon"`},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], "etcd": {"endpoints": ["http://a:1"], "certFile": "/c"}}`, "", 7, "ipam.etcd: give certFile and keyFile together"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], ` + etcd + `, "etcdConfig": "/x"}`, "", 7, "give etcd or etcdConfig, not both"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], "etcdConfig": "/nonexistent/etcd.json"}`, "", 7, "ipam.etcdConfig: open /nonexistent/etcd.json"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], ` + etcd + `, "dataDir": "rel"}`, "", 7, `ipam.dataDir: "rel" is not an absolute path`},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], ` + etcd + `, "blockPrefixLength": {"ipv4": 8}}`, "", 7, "ipam.blockPrefixLength: ipv4: 8 is not between 16 and 32"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], ` + etcd + `, "sticky": "2d"}`, "", 7, `ipam.sticky: "2d" is not a duration between 0s`},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], ` + etcd + `, "rangez": 1}`, "", 6, `ipam: json: unknown field "rangez"`},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], ` + etcd + `}`, "IP=10.0.1.5", 7, "CNI_ARGS IP: 10.0.1.5 is not an address pool p hands out"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}]], ` + etcd + `}`, "IP=10.0.0.1", 7, "CNI_ARGS IP: 10.0.0.1 is not an address pool p hands out"},
		{`{"type": "nicmux-ipam", "pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], ` + etcd + `}`, "IP=10.0.0.5,10.0.0.6", 7, "both in range set 0"},
	} {
		_, err := parseConfig([]byte(`{"cniVersion": "1.0.0", "name": "n", "ipam": `+tc.ipam+`}`), tc.args, host)
		if err == nil || codeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s:\n got code %d, %v\nwant code %d, %q", tc.ipam, tc.args, codeOf(err), err, tc.code, tc.want)
		}
	}
}

func TestEtcdConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "etcd.json")
	if err := os.WriteFile(file, []byte(`{"endpoints": ["http://127.0.0.1:2379/"], "prefix": "/x", "timeout": "2s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]byte(`{"cniVersion": "1.0.0", "name": "n", "ipam": {"pool": "p", "ranges": [[{"subnet": "10.0.0.0/24"}]], "etcdConfig": "`+file+`", "node": "n1"}}`), "", host)
	if err != nil {
		t.Fatal(err)
	}
	if c.Etcd.String() != "etcd at http://127.0.0.1:2379" || c.Etcd.Prefix != "/x" || c.Etcd.Timeout != 2*time.Second || c.Node != "n1" {
		t.Errorf("etcd %+v, node %s", c.Etcd, c.Node)
	}
}

// nicmux's own binary must not link the etcd client: its start, once per
// verb and per Nomad fingerprint, would grow. Nor must nicmux-ipam, the
// thin client of nicmux-ipamd: grpc's, protobuf's and etcd's package
// initialisation is most of a direct call's start.
func TestNicmuxDoesNotImportIPAM(t *testing.T) {
	for _, c := range []struct{ cmd, links, forbidden string }{
		{"nicmux", "github.com/nicmux/nicmux/mux", "github.com/nicmux/nicmux/ipam"},
		{"nicmux-ipam", "github.com/nicmux/nicmux/ipam/ipamd", "github.com/nicmux/nicmux/ipam/etcd"},
	} {
		out, err := exec.Command("go", "list", "-deps", "github.com/nicmux/nicmux/cmd/"+c.cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), c.links) {
			t.Fatalf("go list printed no %s:\n%s", c.links, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.Contains(dep, "etcd") || dep == c.forbidden || dep == "github.com/nicmux/nicmux/ipam" ||
				strings.HasPrefix(dep, "google.golang.org/") || strings.Contains(dep, "protobuf") ||
				c.cmd == "nicmux" && strings.HasPrefix(dep, c.forbidden) {
				t.Errorf("cmd/%s depends on %s", c.cmd, dep)
			}
		}
	}
}
