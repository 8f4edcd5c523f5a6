package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/test/testworld"
)

// prestartYAML: eth0's chain fails at its second plugin when Fail is set;
// neither the plugin after it nor eth1's chain (with "parallel": false,
// eth1 runs after eth0) may then run.
const prestartYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]]}
      - {type: recorder, recordFile: {{.RecordFile}}.first{{if .Fail}}, failOn: [ADD], failCode: 7{{end}}}
      - {type: recorder, recordFile: {{.RecordFile}}}
      - type: tuning
  - ifname: eth1
    network: storage
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}
      - {type: recorder, recordFile: {{.RecordFile}}}
`

// TestPrestart: a plugin runs only after the plugin before it succeeded,
// a chain that stops leaves the plugins after it unrun, and no plugin
// process outlives the verb; "prestart" (accepted and ignored, see
// docs/configuration.md) changes none of it, true or false.
func TestPrestart(t *testing.T) {
	for _, prestart := range []bool{true, false} {
		t.Run(fmt.Sprintf("prestart=%v", prestart), func(t *testing.T) {
			w := newWorld(t)
			w.Master = testworld.MakeMaster(t, 0)
			pw := &prestartWorld{world: w, Fail: true}
			path := filepath.Join(w.Dir, "multi.yaml")
			var buf strings.Builder
			renderTo(t, &buf, prestartYAML, pw)
			testworld.WriteFile(t, path, buf.String())
			l := w.list(path, map[string]any{"prestart": prestart, "parallel": false})
			netns := newNS(t)
			r := rt("pre-1", netns)

			_, err := w.add(l, r)
			testworld.WantCNIError(t, err, types.ErrInvalidNetworkConfig, "eth0: plugin recorder: recorder told to fail ADD on eth0")
			assertNoPluginProcess(t)
			w.assertNothingLeft(netns, "svc", "storage")
			// Neither eth0's last recorder, after the failure, nor eth1
			// ever ran.
			if got := summary(w.calls()); len(got) != 0 {
				t.Errorf("calls after the failed ADD = %v, want none", got)
			}

			pw.Fail = false
			buf.Reset()
			renderTo(t, &buf, prestartYAML, pw)
			testworld.WriteFile(t, path, buf.String())
			w.mustAdd(l, r)
			if err := w.check(l, r); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := w.del(l, r); err != nil {
				t.Fatal(err)
			}
			assertNoPluginProcess(t)
			w.assertNothingLeft(netns, "svc", "storage")
			// In file order, DEL in reverse.
			want := []string{"ADD eth0", "ADD eth1", "CHECK eth0", "CHECK eth1", "DEL eth1", "DEL eth0"}
			if got := summary(w.calls()); !slices.Equal(got, want) {
				t.Errorf("calls = %v, want %v", got, want)
			}
		})
	}
}

type prestartWorld struct {
	*world
	Fail bool
}

func summary(calls []testworld.Call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.Command+" "+c.IfName)
	}
	return out
}

// assertNoPluginProcess checks that no process runs a plugin binary of the
// test's CNI path: every delegate nicmux started is gone.
func assertNoPluginProcess(t *testing.T) {
	t.Helper()
	procs, err := testworld.Procs(func(p testworld.Proc) bool {
		return slices.ContainsFunc(testworld.CNIPath(), func(d string) bool {
			return strings.HasPrefix(p.Exe, d+string(os.PathSeparator))
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		t.Errorf("process %d still runs %s", p.PID, p.Exe)
	}
}
