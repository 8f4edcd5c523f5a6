package integration

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/test/testworld"
)

// TestErrorTable runs the real binary as a runtime would, with bad
// environments, bad stdin and bad attachment files, and asserts the CNI
// error code and that the message names the variable, field or file line.
func TestErrorTable(t *testing.T) {
	w := newWorld(t)
	netns := newNS(t)
	good := w.seedless()
	badYAML := filepath.Join(w.Dir, "bad.yaml")
	testworld.WriteFile(t, badYAML, "interfaces:\n  - ifname: eth0\n    plugins: [{type: bridge}]\n    colour: blue\n")
	conf := func(extra string) string {
		return `{"cniVersion":"1.0.0","name":"multi","type":"nicmux","stateDir":"` + w.StateDir + `"` + extra + `}`
	}
	env := func(over ...string) []string {
		base := map[string]string{
			"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "err-1", "CNI_NETNS": netns,
			"CNI_IFNAME": "eth0", "CNI_PATH": strings.Join(testworld.CNIPath(), ":"),
		}
		for _, kv := range over {
			k, v, _ := strings.Cut(kv, "=")
			if v == "" {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		var out []string
		for k, v := range base {
			out = append(out, k+"="+v)
		}
		return out
	}
	withAtt := `,"attachments":"` + good + `"`
	cases := []struct {
		name  string
		env   []string
		stdin string
		code  uint
		parts []string
	}{
		{"missing CNI_COMMAND", env("CNI_COMMAND="), conf(withAtt), 4, []string{"CNI_COMMAND"}},
		{"unknown CNI_COMMAND", env("CNI_COMMAND=FROB"), conf(withAtt), 4, []string{"CNI_COMMAND", "FROB"}},
		{"missing CNI_CONTAINERID", env("CNI_CONTAINERID="), conf(withAtt), 4, []string{"CNI_CONTAINERID"}},
		{"bad CNI_CONTAINERID", env("CNI_CONTAINERID=../etc"), conf(withAtt), 4, []string{"CNI_CONTAINERID", "../etc"}},
		{"missing CNI_NETNS on ADD", env("CNI_NETNS="), conf(withAtt), 4, []string{"CNI_NETNS"}},
		{"CNI_NETNS not there", env("CNI_NETNS=/run/netns/no-such-ns"), conf(withAtt), 4, []string{"CNI_NETNS", "no-such-ns"}},
		{"bad CNI_IFNAME", env("CNI_IFNAME=eth/0"), conf(withAtt), 4, []string{"CNI_IFNAME", "eth/0"}},
		{"long CNI_IFNAME", env("CNI_IFNAME=averyveryverylongname"), conf(withAtt), 4, []string{"CNI_IFNAME"}},
		{"missing CNI_PATH", env("CNI_PATH="), conf(withAtt), 4, []string{"CNI_PATH"}},
		{"stdin not JSON", env(), "{not json", 6, []string{"network config"}},
		{"name of the wrong type", env(), `{"cniVersion":"1.0.0","name":5,"type":"nicmux"}`, 6, []string{"name"}},
		{"attachments of the wrong type", env(), conf(`,"attachments":["a"]`), 6, []string{"attachments"}},
		{"unsupported version", env(), strings.Replace(conf(withAtt), "1.0.0", "0.2.0", 1), 1, []string{"0.2.0"}},
		{"missing attachments", env(), conf(""), 7, []string{"attachments", "required"}},
		{"relative stateDir", env(), conf(withAtt + `,"stateDir":"state"`), 7, []string{"stateDir"}},
		{"bad logLevel", env(), conf(withAtt + `,"logLevel":"loud"`), 7, []string{"logLevel", "loud"}},
		{"attachment file missing", env(), conf(`,"attachments":"/nonexistent/x.yaml"`), 7, []string{"/nonexistent/x.yaml"}},
		{"unknown key in attachment file", env(), conf(`,"attachments":"` + badYAML + `"`), 7, []string{"bad.yaml:4:5", "interfaces[0].colour"}},
		{"bad set name", env("CNI_ARGS=IgnoreUnknown=true;NICMUX_ATTACHMENTS=../x"), conf(withAtt), 4, []string{"NICMUX_ATTACHMENTS", "../x"}},
		{"unknown set", env("CNI_ARGS=NICMUX_ATTACHMENTS=nosuch"), conf(withAtt), 7, []string{"NICMUX_ATTACHMENTS", "nosuch", "available", "bad", "seed"}},
		{"CHECK below 0.4.0", env("CNI_COMMAND=CHECK"), strings.Replace(conf(withAtt), "1.0.0", "0.3.1", 1), 1, []string{"CHECK"}},
		{"GC below 1.1.0", env("CNI_COMMAND=GC"), conf(withAtt), 1, []string{"GC"}},
		{"STATUS below 1.1.0", env("CNI_COMMAND=STATUS"), conf(withAtt), 1, []string{"STATUS"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(testworld.NicmuxBin())
			cmd.Env = c.env
			cmd.Stdin = strings.NewReader(c.stdin)
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			err := cmd.Run()
			if err == nil {
				t.Fatalf("exit 0, want a CNI error; stdout %s", stdout.String())
			}
			var e types.Error
			if err := json.Unmarshal(stdout.Bytes(), &e); err != nil {
				t.Fatalf("stdout is not a CNI error: %q", stdout.String())
			}
			if e.Code != c.code {
				t.Errorf("code %d, want %d: %s", e.Code, c.code, e.Error())
			}
			for _, p := range c.parts {
				if !strings.Contains(e.Error(), p) {
					t.Errorf("message %q does not name %q", e.Error(), p)
				}
			}
		})
	}
	if got := w.stateFiles(); len(got) != 0 {
		t.Errorf("state left by failed calls: %v", got)
	}
}

// seedless writes an attachment file that the error cases never reach.
func (w *world) seedless() string {
	return w.writeYAML("seed.yaml", "interfaces:\n  - plugins: [{type: recorder}]\n")
}

// TestMissingMasterNamed: macvlan says only "Link not found" when its
// master is missing; nicmux's error adds the master its configuration
// names, on ADD and on the DEL that follows, and leaves nothing.
func TestMissingMasterNamed(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.writeYAML("multi.yaml", `interfaces:
  - ifname: eth1
    network: storage
    plugins:
      - type: macvlan
        master: nosuch0
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}
`), nil)
	netns := newNS(t)
	_, err := w.add(l, rt("nomaster-1", netns))
	testworld.WantCNIError(t, err, 999, "eth1: plugin macvlan: Link not found (master: nosuch0)")
	w.assertNothingLeft(netns, "storage")
	if err := w.del(l, rt("nomaster-1", netns)); err != nil && !strings.Contains(err.Error(), "(master: nosuch0)") {
		t.Errorf("DEL: %v, want success or the master named", err)
	}
}
