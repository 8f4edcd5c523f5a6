package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The pieces the validate cases are made of. $DIR is the case's folder,
// $BIN the fake plugins' (see writeFakes).
const (
	// A conflist that passes every check.
	okConflist = `{
  "cniVersion": "1.0.0",
  "name": "multi",
  "plugins": [
    {
      "type": "nicmux",
      "attachments": "$DIR/multi.yaml",
      "capabilities": {"portMappings": true}, "stateDir": "$DIR/state"
    },
    {"type": "loopback"}
  ]
}
`
	// An attachment file that passes every check.
	okYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - type: bridge
        bridge: nicmux0
        ipam:
          type: host-local
          ranges: [[{subnet: 172.26.64.0/20}]]
          routes: [{dst: 0.0.0.0/0}]
      - type: portmap
        capabilities: {portMappings: true}
`
)

// wantFinding is one finding, as printed: its line and its hint.
type wantFinding struct{ line, hint string }

type validateCase struct {
	name string
	// files to write in the case's folder; a value starting with "->" makes
	// a symbolic link to the rest.
	files map[string]string
	// args follow "validate -cni-path $BIN -json".
	args []string
	want []wantFinding
	// code is the exit code; 0 unless set, 1 when want has an error.
	code int
	// versionTimeout, when set, bounds the plugins' VERSION answers.
	versionTimeout time.Duration
	// setup, when set, prepares the case's folder beyond its files.
	setup func(t *testing.T, dir string)
}

// hints used by several cases
const (
	hintSchema   = "nicmux refuses ADD with this attachment set (CNI error 7) until it parses"
	hintEntry    = "nicmux fails every verb with this entry until it is fixed"
	hintNotFound = "install it there, or name the folders that hold it with -cni-path (Nomad: the client's cni_path)"
	hintMaster   = "name a host interface that exists (ip link show); validate checks the host it runs on: run it on the client"
	hintLoopback = `add {"type": "loopback"} after the nicmux entry in "plugins": it brings lo up and passes nicmux's result on`
)

// TestValidateFindings: one case per finding, each with its exact message
// and hint, and nothing else found.
func TestValidateFindings(t *testing.T) {
	cases := []validateCase{
		{name: "clean, files", files: map[string]string{"multi.yaml": okYAML},
			args: []string{"$DIR/multi.yaml"}},
		{name: "clean, conflist", files: map[string]string{"multi.conflist": okConflist, "multi.yaml": okYAML},
			args: []string{"-conflist", "$DIR/multi.conflist"}},

		// --- the attachment files
		{name: "schema", files: map[string]string{"a.yaml": "interfaces:\n  - ifname: \"eth0:1\"\n    plugins: [{type: bridge}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:13: error: interfaces[0].ifname: invalid interface name "eth0:1": interface name contains / or : or whitespace characters`, hintSchema}}},
		{name: "YAML syntax", files: map[string]string{"a.yaml": "interfaces:\n  - ifname: eth0\n    plugins: [{type: bridge}\n  - ifname: eth1\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:3: error: not valid YAML: did not find expected ',' or ']'`, hintSchema}}},
		// yaml.v3 says "line 1" for each: where the enclosing block begins.
		{name: "YAML: a key indented less than its siblings", files: map[string]string{"a.yaml": "interfaces:\n  - ifname: eth0\n   plugins:\n      - type: bridge\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:3: error: not valid YAML: did not find expected '-' indicator`, hintSchema}}},
		{name: "YAML: plugins: out of its list entry", files: map[string]string{"a.yaml": "interfaces:\n  - ifname: eth0\n    plugins:\n    - type: bridge\n      ipam: {type: host-local}\n  - ifname: eth1\n  plugins:\n      - type: macvlan\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:7: error: not valid YAML: did not find expected '-' indicator`, hintSchema}}},
		{name: "YAML: a plugin's key indented less than the plugin", files: map[string]string{"a.yaml": "interfaces:\n- ifname: eth0\n  plugins:\n  - type: bridge\n    bridge: br0\n   ipam: {type: host-local}\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:6: error: not valid YAML: did not find expected key`, hintSchema}}},
		{name: "YAML: a scanner error keeps its line", files: map[string]string{"a.yaml": "interfaces:\n  - ifname: eth0\n    plugins:\n      - type: bridge\n  - ifname: eth1\n     plugins:\n      - type: macvlan\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:6: error: not valid YAML: mapping values are not allowed in this context`, hintSchema}}},
		{name: "conflist reference missing", files: map[string]string{"a.yaml": "interfaces:\n  - conflist: gone.conflist\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:15: error: interfaces[0].conflist: cannot read $DIR/gone.conflist: open $DIR/gone.conflist: no such file or directory`, hintSchema}}},
		{name: "a set in the folder", files: map[string]string{"multi.conflist": okConflist, "multi.yaml": okYAML,
			"storage.yaml": "interfaces:\n  - plugins: []\n"},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/storage.yaml:2:14: error: interfaces[0].plugins: the list is empty: a chain needs at least one plugin`, hintSchema}}},
		{name: "a set leading out of the folder", files: map[string]string{"multi.conflist": okConflist, "multi.yaml": okYAML,
			"evil.yaml": "->/etc/hostname"},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/evil.yaml: error: attachment set "evil" resolves to /etc/hostname, outside $DIR`,
				"a job that names this set fails: make it a regular file in $DIR, or remove it"}}},

		// --- plugin binaries and their VERSION
		{name: "plugin missing", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: nosuch}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:16: error: interfaces[0].plugins[0].type: no plugin binary "nosuch" in $BIN`, hintNotFound}}},
		{name: "IPAM plugin missing", files: map[string]string{"a.yaml": "interfaces:\n  - plugins:\n      - type: bridge\n        ipam: {type: nosuch}\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:4:16: error: interfaces[0].plugins[0].ipam.type: no IPAM plugin binary "nosuch" in $BIN`, hintNotFound}}},
		{name: "plugin in a conflist reference missing", files: map[string]string{"a.yaml": "interfaces:\n  - conflist: s.conflist\n",
			"s.conflist": `{"cniVersion": "1.0.0", "name": "s", "plugins": [{"type": "bridge"}, {"type": "nosuch"}]}`},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/s.conflist:1:71: error: interfaces[0].plugins[1].type: no plugin binary "nosuch" in $BIN`, hintNotFound}}},
		{name: "plugin not executable", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: noexec}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:16: error: interfaces[0].plugins[0].type: plugin binary $BIN/noexec is not executable`, "chmod +x $BIN/noexec"}}},
		{name: "plugin type is a path", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: ../bin/bridge}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:16: error: interfaces[0].plugins[0].type: plugin type "../bin/bridge" holds a "/": runtimes look the type up as a file name in the CNI path`,
				"name the binary, not its path, and put its folder in the CNI path"}}},
		{name: "VERSION: chain's version unsupported", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: oldplug}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:16: error: interfaces[0].plugins[0].type: plugin $BIN/oldplug speaks CNI 0.3.0, 0.3.1, not the chain's cniVersion 1.0.0`,
				"set cniVersion to a version it speaks, or install a newer oldplug"}}},
		{name: "VERSION: the chain's own version", files: map[string]string{"a.yaml": "interfaces:\n  - cniVersion: 0.3.1\n    plugins: [{type: oldplug}]\n"},
			args: []string{"$DIR/a.yaml"}},
		{name: "VERSION: hangs", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: hangs}]\n"},
			args: []string{"$DIR/a.yaml"}, versionTimeout: 300 * time.Millisecond,
			want: []wantFinding{{`$DIR/a.yaml:2:16: error: interfaces[0].plugins[0].type: plugin $BIN/hangs did not answer VERSION within 300ms`,
				`a plugin that hangs stalls every CNI call of a Nomad client, which runs them one at a time: run it by hand: echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION $BIN/hangs`}}},
		{name: "VERSION: fails", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: broken}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:16: error: interfaces[0].plugins[0].type: plugin $BIN/broken failed VERSION: exit status 3: exec format trouble`,
				`run it by hand: echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION $BIN/broken`}}},
		{name: "VERSION: CNI error", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: cnierr}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:16: error: interfaces[0].plugins[0].type: plugin $BIN/cnierr failed VERSION: boom`,
				`run it by hand: echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION $BIN/cnierr`}}},
		{name: "VERSION: no list", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: noversion}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:16: error: interfaces[0].plugins[0].type: plugin $BIN/noversion answered VERSION with no version list: decoding version info: missing field cniVersion`,
				`run it by hand: echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION $BIN/noversion`}}},
		{name: "VERSION: older than VERSION", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: legacy}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:16: error: interfaces[0].plugins[0].type: plugin $BIN/legacy speaks CNI 0.1.0, not the chain's cniVersion 1.0.0`,
				"set cniVersion to a version it speaks, or install a newer legacy"}}},
		{name: "VERSION: IPAM plugin", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: bridge, ipam: {type: oldplug}}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:37: error: interfaces[0].plugins[0].ipam.type: IPAM plugin $BIN/oldplug speaks CNI 0.3.0, 0.3.1, not the chain's cniVersion 1.0.0`,
				"set cniVersion to a version it speaks, or install a newer oldplug"}}},

		// --- host facts (in the current namespace; see host_test.go for
		// links of its own)
		{name: "master missing", files: map[string]string{"a.yaml": "interfaces:\n  - plugins:\n      - type: macvlan\n        master: nx-missing0\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:4:9: error: interfaces[0].plugins[0].master: master "nx-missing0" does not exist on this host`, hintMaster}}},
		{name: "ipvlan master missing, in a conflist reference", files: map[string]string{"a.yaml": "interfaces:\n  - conflist: s.conf\n",
			"s.conf": "{\"cniVersion\": \"1.0.0\", \"name\": \"s\", \"type\": \"ipvlan\",\n \"master\": \"nx-missing0\"}"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/s.conf:2:2: error: interfaces[0].plugins[0].master: master "nx-missing0" does not exist on this host`, hintMaster}}},
		{name: "master in the container", files: map[string]string{"a.yaml": "interfaces:\n  - plugins:\n      - {type: macvlan, master: nx-missing0, linkInContainer: true}\n"},
			args: []string{"$DIR/a.yaml"}},
		// lo is in every namespace, with an MTU of 65536.
		{name: "MTU above the master's", files: map[string]string{"a.yaml": "interfaces:\n  - plugins:\n      - {type: macvlan, master: lo, mtu: 70000}\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:3:37: error: interfaces[0].plugins[0].mtu: MTU 70000 is above the MTU 65536 of master "lo"`,
				"raise the master's MTU (ip link set lo mtu 70000; jumbo frames need the switch ports too) or lower mtu"}}},
		{name: "tuning's MTU above the master's", files: map[string]string{"a.yaml": "interfaces:\n  - plugins:\n      - {type: vlan, master: lo}\n      - {type: tuning, mtu: 65537}\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:4:24: error: interfaces[0].plugins[1].mtu: MTU 65537 is above the MTU 65536 of master "lo"`,
				"raise the master's MTU (ip link set lo mtu 65537; jumbo frames need the switch ports too) or lower mtu"}}},

		// --- chains
		{name: "portmap without its capability", files: map[string]string{"a.yaml": "interfaces:\n  - plugins:\n      - {type: bridge}\n      - {type: portmap, snat: true}\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:4:9: error: interfaces[0].plugins[1]: portmap does not declare capabilities {portMappings: true}, so nicmux hands it no port mappings and no port is forwarded`,
				"add `capabilities: {portMappings: true}` to this plugin"}}},
		{name: "two default routes", files: map[string]string{"a.yaml": okYAML + `  - ifname: eth1
    plugins:
      - type: macvlan
        master: lo
        ipam: {type: static, routes: [{dst: "::/0"}, {dst: 0.0.0.0/0, gw: 10.1.0.1}]}
`},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:17:55: error: interfaces[1].plugins[0].ipam.routes[1].dst: a second IPv4 default route in this set (the first: interfaces[0], eth0, at $DIR/a.yaml:10:21): the container gets two, and which one carries its traffic depends on which chain came up first`,
				"keep the default route on one interface (usually eth0) and give the others routes to specific networks"}}},
		{name: "default routes of two families", files: map[string]string{"a.yaml": okYAML + `  - ifname: eth1
    plugins:
      - {type: macvlan, master: lo, ipam: {type: static, routes: [{dst: "::/0"}, {dst: 10.0.0.0/8}]}}
`},
			args: []string{"$DIR/a.yaml"}},
		{name: "an IPAM type validate does not check", files: map[string]string{"a.yaml": "interfaces:\n  - plugins: [{type: macvlan, master: lo, ipam: {type: dhcp}}]\n"},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:2:50: note: interfaces[0].plugins[0].ipam.type: validate does not check the section of IPAM type "dhcp": it runs the ADD of host-local and static only`,
				"the first ADD that uses this chain is the first to try it"}}},
		{name: "two interfaces on one subnet", files: map[string]string{"a.yaml": okYAML + `  - ifname: eth1
    plugins:
      - type: macvlan
        master: lo
        ipam: {type: host-local, ranges: [[{subnet: 10.1.0.0/24}, {subnet: 172.26.64.0/20}]]}
`},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:17:68: error: interfaces[1].plugins[0].ipam.ranges[0][1].subnet: subnet 172.26.64.0/20 is also interfaces[0] (eth0)'s, at $DIR/a.yaml:9:22: the container gets two routes to it, and which interface its traffic to it takes depends on which chain came up first`,
				"give each interface of a set a subnet of its own"}}},
		{name: "an interface's subnet inside another's", files: map[string]string{"a.yaml": okYAML + `  - ifname: eth1
    plugins:
      - type: macvlan
        master: lo
        ipam: {type: static, addresses: [{address: 172.26.70.5/24}]}
`},
			args: []string{"$DIR/a.yaml"},
			want: []wantFinding{{`$DIR/a.yaml:17:43: warning: interfaces[1].plugins[0].ipam.addresses[0].address: subnet 172.26.70.0/24 overlaps interfaces[0] (eth0)'s 172.26.64.0/20, at $DIR/a.yaml:9:22: the container's traffic to the narrower one's addresses takes its interface, the rest the other's`,
				"give each interface of a set a subnet of its own, unless the narrower route is what you mean"}}},
		{name: "two sets on one bridge, two subnets", files: map[string]string{"multi.yaml": okYAML,
			"storage.yaml": strings.Replace(okYAML, "172.26.64.0/20", "172.26.80.0/20", 1)},
			args: []string{"$DIR/multi.yaml", "$DIR/storage.yaml"},
			want: []wantFinding{{`$DIR/storage.yaml:6:9: warning: interfaces[0].plugins[0].bridge: bridge "nicmux0" with subnet 172.26.80.0/20; $DIR/multi.yaml:6:9 puts it on 172.26.64.0/20`,
				"chains that plug into one bridge should share its subnet (and network name, so that host-local hands each address out once); give another subnet another bridge"}}},
		{name: "two sets on the default bridge, same subnet", files: map[string]string{
			"a.yaml": "interfaces:\n  - plugins: [{type: bridge, ipam: {type: host-local, subnet: 10.9.0.1/24}}]\n",
			"b.yaml": "interfaces:\n  - plugins: [{type: bridge, ipam: {type: host-local, ranges: [[{subnet: 10.9.0.0/24}]]}}]\n"},
			args: []string{"$DIR/a.yaml", "$DIR/b.yaml"}},

		// --- the conflist and nicmux's entry
		{name: "conflist unreadable", args: []string{"-conflist", "$DIR/none.conflist"},
			want: []wantFinding{{`$DIR/none.conflist: error: cannot read the conflist: open $DIR/none.conflist: no such file or directory`,
				"pass the runtime's conflist (Nomad: a file in the client's cni_config_dir)"}}},
		{name: "conflist not JSON", files: map[string]string{"c.conflist": "{\n  \"name\": \"multi\",\n  \"plugins\": [}\n"},
			args: []string{"-conflist", "$DIR/c.conflist"},
			want: []wantFinding{{`$DIR/c.conflist:3:15: error: not a JSON object: invalid character '}' looking for beginning of value`,
				"the runtime cannot read it either: fix the JSON"}}},
		{name: "no nicmux entry", files: map[string]string{"c.conflist": `{"cniVersion": "1.0.0", "name": "multi", "plugins": [{"type": "bridge"}]}`},
			args: []string{"-conflist", "$DIR/c.conflist"},
			want: []wantFinding{{`$DIR/c.conflist:1:42: error: plugins: no plugin of type "nicmux"`,
				`nicmux's entry is the plugin with "type": "nicmux": pass the conflist that names it`}}},
		{name: "unknown key, a typo", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `"capabilities"`, `"logFle": "/tmp/x.log", "paralel": false,
      "capabilities"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{
				{`$DIR/multi.conflist:8:7: error: plugins[0].logFle: unknown key: nicmux ignores it`, `did you mean "logFile"?`},
				{`$DIR/multi.conflist:8:31: error: plugins[0].paralel: unknown key: nicmux ignores it`, `did you mean "parallel"?`},
			}},
		{name: "unknown key, no guess", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `"capabilities"`, `"flavour": "x",
      "capabilities"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:8:7: error: plugins[0].flavour: unknown key: nicmux ignores it`,
				"nicmux's keys: attachments, capabilities, cni.dev/attachments, cni.dev/valid-attachments, cniVersion, delegateTimeout, disableCheck, disableGC, logFile, logLevel, metricsFile, name, parallel, prestart, prevResult, runtimeConfig, stateDir, type"}}},
		{name: "key in another case", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `"capabilities"`, `"LogLevel": "debug",
      "capabilities"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"}},
		{name: "entry setting invalid", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `"capabilities"`, `"logLevel": "loud",
      "capabilities"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:8:7: error: plugins[0].logLevel: "loud" is not one of debug, info, warn, error`, hintEntry}}},
		{name: "entry setting of the wrong type", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `"capabilities"`, `"parallel": "yes",
      "capabilities"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:8:7: error: plugins[0].parallel: expected bool, got JSON string`, hintEntry}}},
		{name: "attachments relative", files: map[string]string{"multi.conflist": strings.Replace(okConflist, "$DIR/multi.yaml", "multi.yaml", 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:7:7: error: plugins[0].attachments: "multi.yaml" must be an absolute path`, hintEntry}}},
		{name: "attachments missing", files: map[string]string{"multi.conflist": okConflist},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:7:7: error: plugins[0].attachments: cannot read the attachment file: stat $DIR/multi.yaml: no such file or directory`,
				"validate reads the files nicmux will read: run it on the client, or pass the attachment files as arguments"}}},
		{name: "conflist version unsupported", files: map[string]string{"multi.yaml": "interfaces:\n  - cniVersion: 0.3.1\n    plugins: [{type: loopback}]\n",
			"multi.conflist": strings.Replace(okConflist, `"1.0.0"`, `"0.2.0"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:2:3: error: cniVersion: "0.2.0" is not supported (supported: [0.3.0 0.3.1 0.4.0 1.0.0 1.1.0])`, hintEntry}}},
		{name: "conflist plugin binary missing", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `{"type": "loopback"}`, `{"type": "loopback"}, {"type": "nosuch"}`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:10:28: error: plugins[2].type: no plugin binary "nosuch" in $BIN`, hintNotFound}}},
		{name: "conflist plugin's VERSION", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `{"type": "loopback"}`, `{"type": "loopback"}, {"type": "oldplug"}`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:10:28: error: plugins[2].type: plugin $BIN/oldplug speaks CNI 0.3.0, 0.3.1, not the conflist's cniVersion 1.0.0`,
				"set cniVersion to a version it speaks, or install a newer oldplug"}}},
		{name: "portmap, entry without portMappings", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `,
      "capabilities": {"portMappings": true}`, ``, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:5:5: error: plugins[0]: the nicmux entry does not declare "capabilities": {"portMappings": true}, but $DIR/multi.yaml:11:9 (interfaces[0], eth0) uses portmap: the runtime hands nicmux no port mappings, so no port is forwarded`,
				`add "capabilities": {"portMappings": true} to the nicmux entry`}}},
		{name: "portmap, entry with other capabilities", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `"portMappings": true`, `"ips": true`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:8:7: error: plugins[0].capabilities: the nicmux entry does not declare "capabilities": {"portMappings": true}, but $DIR/multi.yaml:11:9 (interfaces[0], eth0) uses portmap: the runtime hands nicmux no port mappings, so no port is forwarded`,
				`add "capabilities": {"portMappings": true} to the nicmux entry`}}},
		{name: "no loopback", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `,
    {"type": "loopback"}`, ``, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:4:3: warning: plugins: no "loopback" plugin in the conflist: the tasks of Nomad's exec and java drivers get their "lo" interface down`, hintLoopback}}},
		{name: "no loopback, strict", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `,
    {"type": "loopback"}`, ``, 1)},
			args: []string{"-strict", "-conflist", "$DIR/multi.conflist"}, code: 1,
			want: []wantFinding{{`$DIR/multi.conflist:4:3: warning: plugins: no "loopback" plugin in the conflist: the tasks of Nomad's exec and java drivers get their "lo" interface down`, hintLoopback}}},
		{name: "a .conf", files: map[string]string{"multi.yaml": okYAML,
			"multi.conf": `{"cniVersion": "1.0.0", "name": "multi", "type": "nicmux", "attachments": "$DIR/multi.yaml", "capabilities": {"portMappings": true}, "stateDir": "$DIR/state"}`},
			args: []string{"-conflist", "$DIR/multi.conf"},
			want: []wantFinding{{`$DIR/multi.conf:1:42: warning: type: no "loopback" plugin in the conflist: the tasks of Nomad's exec and java drivers get their "lo" interface down`,
				`make this a .conflist whose "plugins" are the nicmux entry, then {"type": "loopback"}`}}},
		{name: "log folder missing", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `"capabilities"`, `"logFile": "$DIR/log/nicmux.log",
      "capabilities"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:8:7: warning: plugins[0].logFile: the folder $DIR/log does not exist: nicmux cannot open its log and writes warnings and errors to stderr, which Nomad does not keep`,
				"create it (mkdir -p $DIR/log) or point logFile at an existing folder"}}},
		{name: "log folder a file", files: map[string]string{"multi.yaml": okYAML, "log": "",
			"multi.conflist": strings.Replace(okConflist, `"capabilities"`, `"logFile": "$DIR/log/nicmux.log",
      "capabilities"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:8:7: warning: plugins[0].logFile: the folder $DIR/log is not a folder: nicmux cannot open its log and writes warnings and errors to stderr, which Nomad does not keep`,
				"point logFile at a file in an existing folder"}}},
		{name: "state folder under a file", files: map[string]string{"multi.yaml": okYAML, "st": "",
			"multi.conflist": strings.Replace(okConflist, `"$DIR/state"`, `"$DIR/st/state"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:8:47: error: plugins[0].stateDir: stateDir $DIR/st/state: $DIR/st is a file, not a folder`,
				"nicmux fails every ADD and DEL with it (CNI error 5, I/O failure) until it is fixed"}}},
		{name: "state folder others can write", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `"$DIR/state"`, `"$DIR/st"`, 1)},
			setup: func(t *testing.T, dir string) {
				if err := os.Mkdir(filepath.Join(dir, "st"), 0o700); err != nil || os.Chmod(filepath.Join(dir, "st"), 0o777) != nil {
					t.Fatal(err)
				}
			},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:8:47: error: plugins[0].stateDir: stateDir: $DIR/st is writable by group or others (mode 0777): make it 0700`,
				"nicmux fails every ADD and DEL with it (CNI error 5, I/O failure) until it is fixed"}}},
		{name: "cniVersion 1.1.0", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `"1.0.0"`, `"1.1.0"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:2:3: warning: cniVersion: 1.1.0: Nomad 1.9.5 and later ask every plugin for STATUS before every setup and teardown of a list at 1.1.0 or later, and skip the teardown (no DEL) when STATUS fails: the allocation's links, leases and iptables rules stay; Nomad 1.8.0 to 1.8.2 fail every setup of such a list`,
				`give the list "cniVersion": "1.0.0" (docs/nomad.md, section 6, "Why cniVersion 1.0.0")`}}},
		{name: "name with capitals", files: map[string]string{"multi.yaml": okYAML,
			"multi.conflist": strings.Replace(okConflist, `"multi"`, `"Multi"`, 1)},
			args: []string{"-conflist", "$DIR/multi.conflist"},
			want: []wantFinding{{`$DIR/multi.conflist:3:3: warning: name: "Multi" has capitals: Nomad lower-cases the job's network mode, so cni/Multi finds no conflist of this name`,
				"write the name in lower case (and the job's mode with it)"}}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			checkValidate(t, tt)
		})
	}
}

// checkValidate runs a case and compares its findings, in order, and its
// exit code.
func checkValidate(t *testing.T, tt validateCase) {
	t.Helper()
	dir := t.TempDir()
	expand := strings.NewReplacer("$DIR", dir, "$BIN", fakeBin).Replace
	for name, body := range tt.files {
		path := filepath.Join(dir, name)
		if target, ok := strings.CutPrefix(body, "->"); ok {
			if err := os.Symlink(expand(target), path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := writeSettled(path, []byte(expand(body)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if tt.setup != nil {
		tt.setup(t, dir)
	}
	args := []string{"validate", "-cni-path", fakeBin, "-json"}
	for _, a := range tt.args {
		args = append(args, expand(a))
	}
	timeout := tt.versionTimeout
	if timeout == 0 {
		timeout = defaultVersionTimeout
	}
	stdout, stderr, code := runTimeout(t, timeout, pathEnv, args...)
	var r report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s\nstderr: %s", err, stdout, stderr)
	}
	var got, want []string
	for _, f := range r.Findings {
		got = append(got, f.String()+"\n\thint: "+f.Hint)
	}
	wantCode := tt.code
	for _, w := range tt.want {
		want = append(want, expand(w.line)+"\n\thint: "+expand(w.hint))
		if strings.Contains(w.line, ": error: ") {
			wantCode = 1
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		unexpand := strings.NewReplacer(dir, "$DIR", fakeBin, "$BIN").Replace
		var b strings.Builder
		for _, f := range r.Findings {
			fmt.Fprintf(&b, "\t{%q,\n\t\t%q},\n", unexpand(f.String()), unexpand(f.Hint))
		}
		t.Errorf("findings:\n%s\nwant:\n%s\nas Go:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), b.String())
	}
	if code != wantCode {
		t.Errorf("exit code %d, want %d", code, wantCode)
	}
	if r.Errors+r.Warnings+r.Notes != len(r.Findings) {
		t.Errorf("report counts %d errors, %d warnings and %d notes for %d findings", r.Errors, r.Warnings, r.Notes, len(r.Findings))
	}
}

// TestJSONKeys: the entry's known keys come from the struct's JSON names,
// embedded structs included, so that a field added to conf.NetConf (say
// delegateTimeout) is known without a word here.
func TestJSONKeys(t *testing.T) {
	type inner struct {
		Deep string `json:"deep"`
	}
	type sample struct {
		inner
		Tagged   string `json:"tagged,omitempty"`
		Untagged int
		Skipped  bool `json:"-"`
		private  bool
	}
	got := strings.Join(jsonKeys(reflect.TypeFor[sample]()), " ")
	if want := "Untagged deep tagged"; got != want {
		t.Errorf("jsonKeys = %q, want %q", got, want)
	}
	for _, k := range []string{"attachments", "stateDir", "logFile", "logLevel", "parallel", "prestart", "capabilities", "runtimeConfig", "cni.dev/valid-attachments"} {
		if !known(netConfKeys(), k) {
			t.Errorf("netConfKeys lacks %q", k)
		}
	}
	if !known(netConfKeys(), "LOGFILE") || known(netConfKeys(), "logFle") {
		t.Error("known: want encoding/json's case-insensitive match, and no more")
	}
}

// TestValidateConflistShapes: conflists nicmux's entry cannot be read from.
func TestValidateConflistShapes(t *testing.T) {
	cases := []validateCase{
		{name: "plugins not a list", files: map[string]string{"c.conflist": `{"cniVersion": "1.0.0", "name": "m", "plugins": {"type": "nicmux"}}`},
			args: []string{"-conflist", "$DIR/c.conflist"},
			want: []wantFinding{{`$DIR/c.conflist:1:38: error: plugins: must be a list of plugin objects: json: cannot unmarshal object into Go value of type []json.RawMessage`,
				"the runtime refuses it too: make it a list of plugin objects"}}},
		{name: "a .conf of another type", files: map[string]string{"c.conf": `{"cniVersion": "1.0.0", "name": "m", "type": "bridge"}`},
			args: []string{"-conflist", "$DIR/c.conf"},
			want: []wantFinding{{`$DIR/c.conf:1:38: error: type: no plugin of type "nicmux"`,
				`nicmux's entry is the plugin with "type": "nicmux": pass the conflist that names it`}}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) { checkValidate(t, tt) })
	}
}
