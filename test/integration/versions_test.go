package integration

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/testworld"
)

// versionYAML is the seed job with each chain at {{.ChainVersion}}.
const versionYAML = `interfaces:
  - ifname: eth0
    network: svc
    cniVersion: "{{.ChainVersion}}"
    plugins:
      - type: bridge
        bridge: {{.Bridge}}
        isGateway: true
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]], routes: [{dst: 0.0.0.0/0}]}
      - {type: recorder, recordFile: {{.RecordFile}}}
  - ifname: eth1
    network: storage
    cniVersion: "{{.ChainVersion}}"
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}
      - {type: tuning, sysctl: {net.ipv4.conf.IFNAME.arp_ignore: "1"}}
`

type versionWorld struct {
	*world
	ChainVersion string
}

// TestVersionMatrix runs ADD, CHECK and DEL for every mix of the conflist's
// and the chains' cniVersion: the merged result comes at the conflist's
// version, each chain runs at its own, and CHECK skips only the delegate
// CHECK of chains below 0.4.0 (nicmux's own netlink check still runs).
func TestVersionMatrix(t *testing.T) {
	versions := []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}
	for _, listVer := range versions {
		for _, chainVer := range versions {
			t.Run(listVer+"/"+chainVer, func(t *testing.T) {
				w := newWorld(t)
				w.CNIVersion = listVer
				w.Master = testworld.MakeMaster(t, 0)
				vw := &versionWorld{world: w, ChainVersion: chainVer}
				var buf strings.Builder
				renderTo(t, &buf, versionYAML, vw)
				path := w.Dir + "/multi.yaml"
				testworld.WriteFile(t, path, buf.String())
				l := w.list(path, nil)
				netns := newNS(t)
				r := rt("ver-1", netns)

				raw, err := w.cni.AddNetworkList(t.Context(), l, r)
				if err != nil {
					t.Fatalf("ADD: %v", err)
				}
				if raw.Version() != listVer {
					t.Errorf("merged result version %s, want the conflist's %s", raw.Version(), listVer)
				}
				res := w.mustResult(raw)
				if len(res.IPs) != 2 || *res.IPs[1].Interface >= len(res.Interfaces) || res.Interfaces[*res.IPs[1].Interface].Name != "eth1" {
					t.Errorf("merged result: %+v", res)
				}
				// Each chain ran at its own version.
				for _, c := range w.calls() {
					var conf struct {
						CNIVersion string `json:"cniVersion"`
					}
					_ = json.Unmarshal(c.Stdin, &conf)
					if conf.CNIVersion != chainVer {
						t.Errorf("%s on %s ran at %s, want %s", c.Command, c.IfName, conf.CNIVersion, chainVer)
					}
				}
				var ck struct {
					Result json.RawMessage `json:"result"`
				}
				testworld.ReadJSON(t, w.StateDir+"/containers/ver-1/if-eth1.json", &ck)
				if stored, err := create.CreateFromBytes(ck.Result); err != nil || stored.Version() != chainVer {
					t.Errorf("eth1's stored result: version %v, err %v; want %s", stored, err, chainVer)
				}

				before := len(w.calls())
				err = w.check(l, r)
				listChecks := listVer != "0.3.0" && listVer != "0.3.1"
				if !listChecks {
					if !errors.Is(err, libcni.ErrorCheckNotSupp) {
						t.Errorf("CHECK at conflist %s: %v, want libcni's 'does not support CHECK'", listVer, err)
					}
				} else if err != nil {
					t.Errorf("CHECK: %v", err)
				}
				delegateChecks := len(w.calls()) - before
				if want := 0; listChecks && chainVer >= "0.4.0" {
					if delegateChecks != 1 {
						t.Errorf("recorder saw %d CHECK calls, want 1", delegateChecks)
					}
				} else if delegateChecks != want {
					t.Errorf("recorder saw %d CHECK calls, want %d (chain %s)", delegateChecks, want, chainVer)
				}

				if listChecks {
					// The netlink check runs whatever the chain's version.
					testworld.InNetns(t, netns, func() error {
						l, err := netlink.LinkByName("eth1")
						if err != nil {
							return err
						}
						return netlink.LinkDel(l)
					})
					if err := w.check(l, r); err == nil || !strings.Contains(err.Error(), "eth1: ") {
						t.Errorf("CHECK with eth1 deleted = %v, want a failure naming eth1", err)
					}
				}
				if err := w.del(l, r); err != nil {
					t.Fatalf("DEL: %v", err)
				}
				w.assertNothingLeft(netns, "svc", "storage")
			})
		}
	}
}

// TestDisableCheck: a chain with disableCheck gets no delegate CHECK, but
// nicmux still verifies its interface.
func TestDisableCheck(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	yaml := strings.Replace(seedYAML, "    network: svc\n", "    network: svc\n    disableCheck: true\n", 1)
	l := w.list(w.writeYAML("multi.yaml", yaml), nil)
	netns := newNS(t)
	r := rt("dc-1", netns)
	w.mustAdd(l, r)
	if err := w.check(l, r); err != nil {
		t.Fatal(err)
	}
	var checked []string
	for _, c := range w.calls() {
		if c.Command == "CHECK" {
			checked = append(checked, c.IfName)
		}
	}
	if !slices.Equal(checked, []string{"eth1"}) {
		t.Errorf("delegate CHECKs on %v, want only eth1", checked)
	}
	testworld.InNetns(t, netns, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.LinkSetDown(l)
	})
	if err := w.check(l, r); err == nil || !strings.Contains(err.Error(), "eth0: ") {
		t.Errorf("CHECK with eth0 down = %v, want a failure naming eth0", err)
	}
	if err := w.del(l, r); err != nil {
		t.Fatal(err)
	}
}
