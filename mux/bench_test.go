package mux

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nicmux/nicmux/delegate/delegatetest"

	"github.com/containernetworking/cni/pkg/skel"
)

// benchYAML is shaped like the seed job: two interfaces, four plugins.
const benchYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - {type: bridge, bridge: nomad-br0, isGateway: true, ipam: {type: host-local, ranges: [[{subnet: 172.26.64.0/20}]], routes: [{dst: 0.0.0.0/0}]}}
      - {type: portmap, capabilities: {portMappings: true}}
  - ifname: eth1
    network: storage
    plugins:
      - {type: macvlan, master: eth0, mode: bridge, ipam: {type: host-local, ranges: [[{subnet: 10.99.0.0/24}]]}}
      - {type: tuning, sysctl: {net.ipv4.conf.IFNAME.arp_ignore: "1"}}
`

// BenchmarkVerbs measures nicmux's own work per verb: parsing, locking,
// state records (fsync included) and merging, with delegates that answer at
// once. CHECK is left out: it needs a real network namespace (see make
// bench for the real thing).
func BenchmarkVerbs(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		dir := b.TempDir()
		attach := filepath.Join(dir, "multi.yaml")
		netns := filepath.Join(dir, "netns")
		for path, data := range map[string]string{attach: benchYAML, netns: ""} {
			if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
				b.Fatal(err)
			}
		}
		nc := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"multi","type":"nicmux","attachments":%q,"stateDir":%q,"parallel":%v}`,
			attach, filepath.Join(dir, "state"), parallel)
		p := &Plugin{Exec: delegatetest.New(), Stdout: io.Discard, Stderr: io.Discard, Identify: identifyFile}
		args := func(i int) *skel.CmdArgs {
			return &skel.CmdArgs{ContainerID: fmt.Sprintf("c%d", i), Netns: netns, IfName: "eth0", Path: "/opt/cni/bin", StdinData: []byte(nc)}
		}
		ctx := context.Background()
		for _, verb := range []string{"ADD", "DEL"} {
			b.Run(fmt.Sprintf("%s/parallel=%v", verb, parallel), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					a := args(i)
					if verb == "DEL" {
						b.StopTimer()
					}
					if err := p.Add(ctx, a); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if verb == "DEL" {
						b.StartTimer()
					}
					if err := p.Del(ctx, a); err != nil {
						b.Fatal(err)
					}
					if verb == "ADD" {
						b.StartTimer()
					}
				}
			})
		}
	}
}
