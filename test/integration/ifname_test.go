package integration

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/test/testworld"
)

// ifnameYAML is eth0 on a bridge and a macvlan named {{.IfName}}.
const ifnameYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - type: bridge
        bridge: {{.Bridge}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]]}
  - ifname: "{{.IfName}}"
    network: storage
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}
`

// TestIfNameNamespaceOwn: an interface name the kernel would replace by one
// of its own ("net%d") or that a namespace has of its own (lo, a tunnel
// module's fallback device) is refused by ADD with code 7 before anything
// runs, naming the interface and the field, and by nicmux validate.
func TestIfNameNamespaceOwn(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	for i, name := range []string{"net%d", "lo", "sit0"} {
		file := w.writeYAML(fmt.Sprintf("ifname-%d.yaml", i), strings.Replace(ifnameYAML, "{{.IfName}}", name, 1))
		l := w.list(file, nil)
		netns := newNS(t)
		_, err := w.add(l, rt(fmt.Sprintf("ifname-%d", i), netns))
		testworld.WantCNIError(t, err, types.ErrInvalidNetworkConfig, file, "interfaces[1].ifname", fmt.Sprintf("%q", name))
		w.assertNothingLeft(netns, "svc", "storage")
		if got := w.calls(); len(got) != 0 {
			t.Errorf("ifname %q: delegates reached %d times", name, len(got))
		}
		r := w.ops(w.conflistFile(l), "validate")
		if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "interfaces[1].ifname") {
			t.Errorf("nicmux validate with ifname %q: %s", name, r)
		}
	}
}

// TestDelOfANamespaceOwnName: a record an earlier nicmux wrote for an
// interface named lo (its ADD and rollback failed on the namespace's own
// link) is released without the namespace: the DEL succeeds at once and
// the namespace keeps its lo.
func TestDelOfANamespaceOwnName(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	var st syscall.Stat_t
	if err := syscall.Stat(netns, &st); err != nil {
		t.Fatal(err)
	}
	id := "ifname-lo"
	chain := map[string]any{"cniVersion": "1.0.0", "name": "storage", "plugins": []any{map[string]any{
		"type": "macvlan", "master": w.Master,
		"ipam": map[string]any{"type": "host-local", "dataDir": w.IPAMDir, "ranges": []any{[]any{map[string]any{"subnet": "10.88.0.0/24"}}}}}}}
	testworld.WriteJSON(t, testworld.PlanFile(w.StateDir, id), map[string]any{
		"kind": "nicmuxContainerV2", "containerID": id, "ifname": "eth0", "netns": netns,
		"netnsID": map[string]any{"dev": st.Dev, "ino": st.Ino}, "listName": w.Name, "cniVersion": w.CNIVersion,
		"attachmentFile": w.Dir + "/multi.yaml", "created": time.Now().UTC(),
		"interfaces": []any{map[string]any{"ifname": "lo", "network": "storage", "cniVersion": "1.0.0", "config": chain}},
	})
	for _, dir := range []string{w.StateDir, testworld.ContainersDir(w.StateDir), testworld.ContainerDir(w.StateDir, id)} {
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.del(l, rt(id, netns)); err != nil {
		t.Fatalf("DEL of a record with an interface named lo: %v", err)
	}
	if got := w.stateFiles(); len(got) != 0 {
		t.Errorf("state left: %v", got)
	}
	if lo := testworld.Link(t, netns, "lo"); lo == nil {
		t.Error("the namespace lost its lo")
	}
}
