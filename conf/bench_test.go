package conf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sixteenInterfaces is an attachment file with 16 interfaces, each a bridge
// with IPAM and port mapping, sharing an anchored IPAM block.
func sixteenInterfaces() string {
	var b strings.Builder
	b.WriteString("interfaces:\n")
	for i := range 16 {
		if i == 0 {
			b.WriteString("  - plugins:\n")
		} else {
			fmt.Fprintf(&b, "  - ifname: net%d\n    network: net-%d\n    cniVersion: \"1.1.0\"\n    plugins:\n", i, i)
		}
		fmt.Fprintf(&b, "      - type: bridge\n        bridge: br%d\n        isGateway: true\n        ipMasq: true\n        mtu: 1500\n", i)
		if i == 0 {
			b.WriteString("        ipam: &ipam\n")
		} else {
			b.WriteString("        ipam:\n          <<: *ipam\n")
		}
		fmt.Fprintf(&b, "          type: host-local\n          ranges: [[{subnet: 10.%d.0.0/16, gateway: 10.%d.0.1}]]\n          routes: [{dst: 0.0.0.0/0}]\n", i, i)
		b.WriteString("      - type: portmap\n        capabilities: {portMappings: true}\n        snat: true\n")
	}
	return b.String()
}

func TestSixteenInterfaces(t *testing.T) {
	a, err := parseAttachmentFile("/etc/nicmux/big.yaml", []byte(sixteenInterfaces()), testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Interfaces) != 16 {
		t.Fatalf("%d interfaces", len(a.Interfaces))
	}
	last := a.Interfaces[15]
	want := `{"bridge":"br15","ipMasq":true,"ipam":{"ranges":[[{"gateway":"10.15.0.1","subnet":"10.15.0.0/16"}]],"routes":[{"dst":"0.0.0.0/0"}],"type":"host-local"},"isGateway":true,"mtu":1500,"type":"bridge"}`
	if last.IfName != "net15" || last.Network != "net-15" || last.CNIVersion != "1.1.0" || string(last.Plugins[0].Bytes) != want {
		t.Errorf("last interface: %s", dumpChain(last))
	}
}

func BenchmarkParseAttachmentFile(b *testing.B) {
	basic := filepath.Join("testdata", "valid", "basic.yaml")
	basicData, err := os.ReadFile(basic)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name, path string
		data       []byte
	}{
		// Two interfaces, one of them read from a .conflist on disk.
		{"2-interfaces", basic, basicData},
		{"16-interfaces", "/etc/nicmux/big.yaml", []byte(sixteenInterfaces())},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				if _, err := parseAttachmentFile(c.path, c.data, testDefaults); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
