package conf

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// nomadArgs are the CNI_ARGS Nomad 1.9.4+ sends besides the job's own.
const nomadArgs = "IgnoreUnknown=true;NOMAD_REGION=global;NOMAD_NAMESPACE=backend;NOMAD_JOB_ID=db;NOMAD_GROUP_NAME=db;NOMAD_ALLOC_ID=5b1c"

func TestParseJobArgs(t *testing.T) {
	tests := []struct {
		name, in  string
		ns, job   string
		ifaces    []ifaceArg
		delegated string
	}{
		{name: "empty"},
		{name: "Nomad 1.8.2: no identity; the set is nicmux's", in: "IgnoreUnknown=true;NICMUX_ATTACHMENTS=storage",
			delegated: "IgnoreUnknown=true"},
		{name: "cnitool: the set alone leaves nothing to the delegates", in: "NICMUX_ATTACHMENTS=storage"},
		{name: "the set among the runtime's pairs, which keep their order", in: "JOB=web;NICMUX_ATTACHMENTS=storage;IgnoreUnknown=1",
			delegated: "JOB=web;IgnoreUnknown=1"},
		{name: "Nomad 1.9.4: identity, verbatim to the delegates", in: nomadArgs, ns: "backend", job: "db", delegated: nomadArgs},
		{name: "per-interface arguments leave CNI_ARGS, in any order",
			in: "NICMUX_MAC_eth1=02:00:0A:28:00:11;" + nomadArgs + ";NICMUX_IPS_eth1=10.40.0.17/24, fd00:40::17/64;NICMUX_IPS_eth0=172.26.64.9/20",
			ns: "backend", job: "db",
			ifaces: []ifaceArg{
				{Key: "NICMUX_IPS_eth0", IfName: "eth0", Capability: "ips", Value: json.RawMessage(`["172.26.64.9/20"]`)},
				{Key: "NICMUX_IPS_eth1", IfName: "eth1", Capability: "ips", Value: json.RawMessage(`["10.40.0.17/24","fd00:40::17/64"]`)},
				// Canonical: lower case.
				{Key: "NICMUX_MAC_eth1", IfName: "eth1", Capability: "mac", Value: json.RawMessage(`"02:00:0a:28:00:11"`)},
			},
			delegated: nomadArgs},
		{name: "interface names with dots and dashes", in: "NICMUX_MAC_vlan.40-a=02:00:00:00:00:01",
			ifaces: []ifaceArg{{Key: "NICMUX_MAC_vlan.40-a", IfName: "vlan.40-a", Capability: "mac", Value: json.RawMessage(`"02:00:00:00:00:01"`)}}},
		{name: "other keys pass whatever they hold, empty pairs too", in: "K8S_POD_NAME=x;;nicmux_ips_eth0=junk;IP=1.2.3.4", delegated: "K8S_POD_NAME=x;;nicmux_ips_eth0=junk;IP=1.2.3.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := ParseJobArgs(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if j.Namespace != tt.ns || j.JobID != tt.job || j.Delegated != tt.delegated {
				t.Errorf("namespace, job, delegated = %q, %q, %q; want %q, %q, %q", j.Namespace, j.JobID, j.Delegated, tt.ns, tt.job, tt.delegated)
			}
			if !reflect.DeepEqual(j.ifaces, tt.ifaces) {
				t.Errorf("interfaces = %+v\nwant %+v", j.ifaces, tt.ifaces)
			}
		})
	}
}

func TestParseJobArgsErrors(t *testing.T) {
	tests := []struct {
		in    string
		parts []string
	}{
		{"NICMUX_IPS_eth1=10.40.0.300/24", []string{"CNI_ARGS: NICMUX_IPS_eth1: interface eth1:", `"10.40.0.300/24" is not an IP address in CIDR form`}},
		{"NICMUX_IPS_eth1=10.40.0.17", []string{"NICMUX_IPS_eth1: interface eth1:", `"10.40.0.17" is not an IP address in CIDR form`}},
		{"NICMUX_IPS_eth1=", []string{"NICMUX_IPS_eth1: interface eth1:", `"" is not an IP address`}},
		{"NICMUX_IPS_eth1=10.40.0.17/24,", []string{`"" is not an IP address`}},
		{"NICMUX_IPS_eth1=10.40.0.17/24,10.40.0.17/25", []string{"10.40.0.17 is given twice"}},
		{"NICMUX_IPS_eth1=10.40.0.17/24;NICMUX_IPS_eth1=10.40.0.18/24", []string{"NICMUX_IPS_eth1: interface eth1: given more than once"}},
		{"NICMUX_MAC_eth1=02:00:0a:28:00", []string{"NICMUX_MAC_eth1: interface eth1:", "is not a 48-bit MAC address"}},
		{"NICMUX_MAC_eth1=00:00:5e:00:53:01:02:03", []string{"is not a 48-bit MAC address"}},
		{"NICMUX_MAC_eth1=01:00:5e:00:00:01", []string{"01:00:5e:00:00:01 is a multicast address"}},
		{"NICMUX_MAC_eth1=00:00:00:00:00:00", []string{"is not a usable address"}},
		{"NICMUX_MAC_=02:00:00:00:00:01", []string{"NICMUX_MAC_: \"\" after NICMUX_MAC_ is not a valid interface name"}},
		{"NICMUX_IPS_a/b=10.0.0.1/24", []string{`"a/b" after NICMUX_IPS_ is not a valid interface name`}},
		{"NICMUX_IPS_averyveryverylongname=10.0.0.1/24", []string{"is not a valid interface name"}},
		{"NICMUX_IP_eth1=10.40.0.17/24", []string{"NICMUX_IP_eth1: not an argument nicmux knows (NICMUX_ATTACHMENTS, NICMUX_IPS_<ifname>, NICMUX_MAC_<ifname>)"}},
		{"NOMAD_NAMESPACE=a;NOMAD_NAMESPACE=b", []string{"NOMAD_NAMESPACE: given more than once"}},
		// Every problem is reported.
		{"NICMUX_MAC_eth0=x;NICMUX_IPS_eth1=y", []string{"NICMUX_IPS_eth1: interface eth1", "NICMUX_MAC_eth0: interface eth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			j, err := ParseJobArgs(tt.in)
			if err == nil {
				t.Fatalf("no error: %+v", j)
			}
			wantCode7(t, err, tt.parts...)
		})
	}
}

// bindYAML: eth0 declares nothing, eth1's macvlan declares ips and mac,
// eth2's tuning declares mac only.
const bindYAML = `interfaces:
  - plugins:
      - {type: bridge, capabilities: {portMappings: true}}
  - ifname: eth1
    plugins:
      - {type: macvlan, capabilities: {ips: true, mac: true}, ipam: {type: static}}
  - ifname: eth2
    plugins:
      - {type: bridge, capabilities: {ips: false}}
      - {type: tuning, capabilities: {mac: true}}
`

func TestBind(t *testing.T) {
	a, err := parseAttachmentFile("/etc/nicmux/backend.yaml", []byte(bindYAML), testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	runtime := map[string]json.RawMessage{"portMappings": json.RawMessage(`[{"hostPort":8080}]`), "mac": json.RawMessage(`"02:ff:ff:ff:ff:ff"`)}
	job, err := ParseJobArgs(nomadArgs + ";NICMUX_IPS_eth1=10.40.0.17/24;NICMUX_MAC_eth1=02:00:0a:28:00:11;NICMUX_MAC_eth2=02:00:0a:28:00:12")
	if err != nil {
		t.Fatal(err)
	}
	caps, err := a.Bind(job, runtime)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"eth0": {"portMappings": `[{"hostPort":8080}]`, "mac": `"02:ff:ff:ff:ff:ff"`}, // the runtime's, as today
		"eth1": {"portMappings": `[{"hostPort":8080}]`, "ips": `["10.40.0.17/24"]`, "mac": `"02:00:0a:28:00:11"`},
		"eth2": {"portMappings": `[{"hostPort":8080}]`, "mac": `"02:00:0a:28:00:12"`}, // the job's wins for its interface
	}
	got := map[string]map[string]string{}
	for ifname, m := range caps {
		got[ifname] = map[string]string{}
		for k, v := range m {
			got[ifname][k] = string(v)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("capability arguments =\n%v\nwant\n%v", got, want)
	}
	if string(runtime["mac"]) != `"02:ff:ff:ff:ff:ff"` || len(runtime) != 2 {
		t.Errorf("Bind changed the runtime's arguments: %v", runtime)
	}

	// No per-interface argument: every chain gets the runtime's.
	none, err := ParseJobArgs(nomadArgs)
	if err != nil {
		t.Fatal(err)
	}
	caps, err = a.Bind(none, runtime)
	if err != nil || len(caps) != 3 || !reflect.DeepEqual(caps["eth1"], runtime) {
		t.Errorf("Bind without job arguments = %v, %v", caps, err)
	}
}

func TestBindErrors(t *testing.T) {
	a, err := parseAttachmentFile("/etc/nicmux/backend.yaml", []byte(bindYAML), testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args  string
		parts []string
	}{
		{"NICMUX_IPS_eth3=10.0.0.1/24", []string{"CNI_ARGS: NICMUX_IPS_eth3: interface eth3: not in attachment set \"backend\" (/etc/nicmux/backend.yaml), whose interfaces are eth0, eth1, eth2"}},
		{"NICMUX_IPS_eth0=10.0.0.1/24", []string{`CNI_ARGS: NICMUX_IPS_eth0: interface eth0: no plugin of its chain declares the "ips" capability`, "capabilities: {ips: true}", "host-local or static"}},
		// ips: false is no declaration.
		{"NICMUX_IPS_eth2=10.0.0.1/24", []string{`NICMUX_IPS_eth2: interface eth2: no plugin of its chain declares the "ips" capability`}},
		{"NICMUX_MAC_eth0=02:00:00:00:00:01", []string{`NICMUX_MAC_eth0: interface eth0: no plugin of its chain declares the "mac" capability`, "macvlan, bridge or tuning"}},
		{"NICMUX_MAC_eth0=02:00:00:00:00:01;NICMUX_IPS_eth9=10.0.0.1/24;NICMUX_IPS_eth1=10.0.0.1/24", []string{"NICMUX_IPS_eth9: interface eth9: not in", "NICMUX_MAC_eth0: interface eth0: no plugin"}},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			job, err := ParseJobArgs(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			caps, err := a.Bind(job, nil)
			if err == nil {
				t.Fatalf("no error: %v", caps)
			}
			if caps != nil {
				t.Errorf("capability arguments along with the error: %v", caps)
			}
			wantCode7(t, err, tt.parts...)
		})
	}
}

// FuzzParseJobArgs: no CNI_ARGS makes ParseJobArgs panic; on success no
// per-interface key is left for the delegates, everything else is, and
// every value is valid JSON.
func FuzzParseJobArgs(f *testing.F) {
	for _, s := range []string{"", nomadArgs, "NICMUX_IPS_eth1=10.40.0.17/24,fd00::1/64;NICMUX_MAC_eth1=02:00:00:00:00:01", "NICMUX_IPS_=;;=", "NICMUX_MAC_eth0=01-00-5e-00-00-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		j, err := ParseJobArgs(in)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *conf.Error", err, err)
			}
			return
		}
		if !strings.Contains(in, "NICMUX_") && j.Delegated != in {
			t.Fatalf("no argument of nicmux's, but CNI_ARGS changed: %q -> %q", in, j.Delegated)
		}
		for _, kv := range strings.Split(j.Delegated, ";") {
			if strings.HasPrefix(kv, "NICMUX_") {
				t.Fatalf("%q left in the delegates' CNI_ARGS %q", kv, j.Delegated)
			}
		}
		for _, a := range j.ifaces {
			if !json.Valid(a.Value) {
				t.Fatalf("%s: value %s is not JSON", a.Key, a.Value)
			}
		}
	})
}

const allowYAML = `allow:
  namespaces: [backend, "team-*"]
  jobs: [db, "db-*", "batch/*"]
interfaces:
  - primary: false
    plugins: [{type: bridge}]
  - ifname: eth1
    primary: true
    plugins: [{type: macvlan}]
`

func TestParseAllowAndPrimary(t *testing.T) {
	a, err := parseAttachmentFile("/etc/nicmux/backend.yaml", []byte(allowYAML), testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	want := &allowRule{Namespaces: []string{"backend", "team-*"}, Jobs: []string{"db", "db-*", "batch/*"}}
	if !reflect.DeepEqual(a.allowed, want) {
		t.Errorf("allow = %+v, want %+v", a.allowed, want)
	}
	if p := a.Primary(); p == nil || p.IfName != "eth1" || a.Interfaces[0].Primary {
		t.Errorf("primary = %+v, want eth1 only", p)
	}
	if a.setName() != "backend" {
		t.Errorf("setName = %q", a.setName())
	}
	// primary is the entry's, not the chain's: the recorded chain is the
	// same with and without it.
	b, err := parseAttachmentFile("/etc/nicmux/backend.yaml", []byte(strings.ReplaceAll(allowYAML, "    primary: true\n", "")), testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	c1, err1 := a.Interfaces[1].ConfList()
	c2, err2 := b.Interfaces[1].ConfList()
	if err1 != nil || err2 != nil {
		t.Fatalf("ConfList: %v, %v", err1, err2)
	}
	if string(c1) != string(c2) || b.Primary() != nil {
		t.Errorf("conflist with primary %s, without %s; primary without = %v", c1, c2, b.Primary())
	}
	// Without allow: nil, any job.
	c, err := parseAttachmentFile("/etc/nicmux/multi.yaml", []byte("interfaces: [{plugins: [{type: bridge}]}]\n"), testDefaults)
	if err != nil || c.allowed != nil || c.Permit(&JobArgs{}) != nil {
		t.Errorf("a set without allow: %+v, %v, permit %v", c.allowed, err, c.Permit(&JobArgs{}))
	}
}

func TestPermit(t *testing.T) {
	parse := func(allow string) *AttachmentFile {
		t.Helper()
		a, err := parseAttachmentFile("/etc/nicmux/backend.yaml", []byte(allow+"interfaces: [{plugins: [{type: bridge}]}]\n"), testDefaults)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	both := parse("allow: {namespaces: [backend, \"team-*\"], jobs: [db, \"db-*\", \"batch/*\"]}\n")
	nsOnly := parse("allow: {namespaces: [backend]}\n")
	jobsOnly := parse("allow: {jobs: [\"db*\"]}\n")
	tests := []struct {
		a        *AttachmentFile
		ns, job  string
		refusal  []string // nil: allowed
		rulename string
	}{
		{both, "backend", "db", nil, "both match"},
		{both, "team-red", "db-replica", nil, "patterns"},
		{both, "backend", "batch/periodic-1700000000", nil, "a periodic child matches parent/*"},
		{both, "backend", "db-backup/periodic-1700000000", []string{`job "db-backup/periodic-1700000000" in namespace "backend" may not use the set`}, "* stops at /"},
		{both, "dev", "db", []string{"CNI_ARGS: NOMAD_NAMESPACE:", `namespace "dev" may not use the set: it allows namespaces backend, team-*`, `(attachment set "backend", /etc/nicmux/backend.yaml)`}, "another namespace"},
		{both, "team", "db", []string{`namespace "team"`}, "team-* needs the dash"},
		{both, "backend", "web", []string{"CNI_ARGS: NOMAD_JOB_ID:", `job "web" in namespace "backend" may not use the set: it allows jobs db, db-*, batch/*`, `attachment set "backend"`}, "another job"},
		{both, "", "", []string{"CNI_ARGS: NOMAD_NAMESPACE: missing", "allows namespaces backend, team-* only", "from 1.9.4", `attachment set "backend"`}, "Nomad before 1.9.4"},
		{nsOnly, "backend", "", nil, "no job rule, no job needed"},
		{jobsOnly, "", "db", nil, "no namespace rule, no namespace needed"},
		{jobsOnly, "x", "", []string{"NOMAD_JOB_ID: missing", "allows jobs db* only"}, "job missing"},
		{jobsOnly, "", "web", []string{`job "web" may not use the set`}, "no namespace in the message when none was given"},
	}
	for _, tt := range tests {
		t.Run(tt.rulename, func(t *testing.T) {
			err := tt.a.Permit(&JobArgs{Namespace: tt.ns, JobID: tt.job})
			if tt.refusal == nil {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			wantCode7(t, err, tt.refusal...)
		})
	}
}

// wantCode7 asserts err is a *conf.Error with code 7 whose message holds
// every part.
func wantCode7(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want a code-7 *conf.Error containing %q", parts)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.CNICode() != types.ErrInvalidNetworkConfig {
		t.Errorf("error %v is not a code-7 *conf.Error", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
