package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
)

// needPrivateNetns skips a test that makes links when not root: as root,
// TestMain has moved the whole test binary into a private network
// namespace, where links with fixed names are the test's alone.
func needPrivateNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("makes links in a private network namespace: needs root (make test runs it so)")
	}
	if os.Getenv(privateEnv) == "" {
		t.Fatal("root, but not in the private network namespace TestMain makes")
	}
}

// addMaster makes a link named name with the given MTU, removed at cleanup.
func addMaster(t *testing.T, name string, mtu int) {
	t.Helper()
	addVeth(t, name)
	setMTU(t, name, mtu)
}

func setMTU(t *testing.T, name string, mtu int) {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetMTU(l, mtu); err != nil {
		t.Fatal(err)
	}
}

// TestValidateExamplesHost checks the examples Nomad users copy against a
// host whose NICs have the standard MTU: storage.yaml assumes jumbo frames
// on ens5.
func TestValidateExamplesHost(t *testing.T) {
	needPrivateNetns(t)
	examples := func(name string) string { return filepath.Join("..", "examples", "nomad", name) }
	multi, storage := examples("multi.yaml"), examples("storage.yaml")
	addMaster(t, "ens5", 1500)
	t.Run("no ens4", func(t *testing.T) {
		checkValidate(t, validateCase{args: []string{multi, storage},
			want: []wantFinding{
				{multi + `:30:9: error: interfaces[1].plugins[0].master: master "ens4" does not exist on this host`, hintMaster},
				{storage + `:33:9: error: interfaces[1].plugins[0].mtu: MTU 9000 is above the MTU 1500 of master "ens5"`,
					"raise the master's MTU (ip link set ens5 mtu 9000; jumbo frames need the switch ports too) or lower mtu"},
			}})
	})
	addMaster(t, "ens4", 1500)
	t.Run("jumbo frames", func(t *testing.T) {
		setMTU(t, "ens5", 9000)
		t.Cleanup(func() { setMTU(t, "ens5", 1500) })
		checkValidate(t, validateCase{args: []string{multi, storage}})
	})
}

// TestValidateHostFacts: masters and MTUs on links made for the test.
func TestValidateHostFacts(t *testing.T) {
	needPrivateNetns(t)
	addMaster(t, "nx-master0", 1500)
	cases := []validateCase{
		{name: "master exists", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: macvlan, master: nx-master0, mtu: 1500}]\n"},
			args: []string{"$DIR/a.yaml"}},
		{name: "ipvlan MTU above", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: ipvlan, master: nx-master0, mtu: 1501}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:50: error: interfaces[0].plugins[0].mtu: MTU 1501 is above the MTU 1500 of master "nx-master0"`,
				"raise the master's MTU (ip link set nx-master0 mtu 1501; jumbo frames need the switch ports too) or lower mtu"}}},
		{name: "tuning MTU above", files: map[string]string{"a.yaml": "interfaces:\n  - plugins:\n      - {type: macvlan, master: nx-master0}\n      - {type: tuning, mtu: 9000}\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:4:24: error: interfaces[0].plugins[1].mtu: MTU 9000 is above the MTU 1500 of master "nx-master0"`,
				"raise the master's MTU (ip link set nx-master0 mtu 9000; jumbo frames need the switch ports too) or lower mtu"}}},
		{name: "another name", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: macvlan, master: nx-master1}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:31: error: interfaces[0].plugins[0].master: master "nx-master1" does not exist on this host`, hintMaster}}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) { checkValidate(t, tt) })
	}
}
