package nomad

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/nicmux/nicmux/test/testworld"
)

// The examples in examples/nomad are the suite's input: it parses the HCL
// files for what Nomad would read from them and installs the conflist and
// attachment files with test paths put in, so the examples cannot rot.

// clientConfig is what client.hcl tells Nomad about CNI.
type clientConfig struct {
	CNIPath      string
	CNIConfigDir string
}

// jobPort is one `port "label" { to = N }` of the job's network block.
type jobPort struct {
	Label string
	To    int
}

// jobSpec is what a job file tells Nomad about the group's network.
type jobSpec struct {
	Job, Namespace, Group string
	Mode                  string
	Ports                 []jobPort
	CNIArgs               map[string]string
	// AddressModes and Providers are the services' address_mode and
	// provider, in order.
	AddressModes []string
	Providers    []string
}

func parseHCL(t *testing.T, name string) *hclsyntax.Body {
	t.Helper()
	path := filepath.Join(examplesDir(), name)
	src, err := os.ReadFile(path)
	failIf(t, err, "reading example")
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s is not valid HCL: %v", path, diags)
	}
	return f.Body.(*hclsyntax.Body)
}

// blocks returns the blocks of a type in body.
func blocks(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var found []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			found = append(found, b)
		}
	}
	return found
}

// block returns the only block of a type in body.
func block(t *testing.T, body *hclsyntax.Body, typ string) *hclsyntax.Block {
	t.Helper()
	found := blocks(body, typ)
	if len(found) != 1 {
		t.Fatalf("want exactly one %q block, found %d", typ, len(found))
	}
	return found[0]
}

// attr evaluates an attribute of body that must be present.
func attr(t *testing.T, body *hclsyntax.Body, name string) cty.Value {
	t.Helper()
	a, ok := body.Attributes[name]
	if !ok {
		t.Fatalf("attribute %q missing (line %d)", name, body.SrcRange.Start.Line)
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("attribute %q: %v", name, diags)
	}
	return v
}

func attrString(t *testing.T, body *hclsyntax.Body, name string) string {
	t.Helper()
	v := attr(t, body, name)
	if v.Type() != cty.String {
		t.Fatalf("attribute %q is %s, want a string", name, v.Type().FriendlyName())
	}
	return v.AsString()
}

// readClientConfig parses examples/nomad/client.hcl.
func readClientConfig(t *testing.T) clientConfig {
	t.Helper()
	client := block(t, parseHCL(t, "client.hcl"), "client").Body
	return clientConfig{CNIPath: attrString(t, client, "cni_path"), CNIConfigDir: attrString(t, client, "cni_config_dir")}
}

// readJob parses examples/nomad/job.nomad.hcl.
func readJob(t *testing.T) jobSpec { return readJobFile(t, "job.nomad.hcl") }

// readJobFile parses a job file of examples/nomad. A job without a
// namespace is in Nomad's "default".
func readJobFile(t *testing.T, name string) jobSpec {
	t.Helper()
	job := block(t, parseHCL(t, name), "job")
	group := block(t, job.Body, "group")
	network := block(t, group.Body, "network").Body
	spec := jobSpec{Job: job.Labels[0], Namespace: "default", Group: group.Labels[0], Mode: attrString(t, network, "mode")}
	if _, ok := job.Body.Attributes["namespace"]; ok {
		spec.Namespace = attrString(t, job.Body, "namespace")
	}
	for _, s := range blocks(group.Body, "service") {
		spec.AddressModes = append(spec.AddressModes, attrString(t, s.Body, "address_mode"))
		spec.Providers = append(spec.Providers, attrString(t, s.Body, "provider"))
	}
	for _, b := range network.Blocks {
		if b.Type == "port" {
			to, _ := attr(t, b.Body, "to").AsBigFloat().Int64()
			spec.Ports = append(spec.Ports, jobPort{Label: b.Labels[0], To: int(to)})
		}
	}
	spec.CNIArgs = map[string]string{}
	args := attr(t, block(t, network, "cni").Body, "args")
	for k, v := range args.AsValueMap() {
		spec.CNIArgs[k] = v.AsString()
	}
	return spec
}

// TestExamplesParse pins what the suite relies on in the HCL examples.
func TestExamplesParse(t *testing.T) {
	c := readClientConfig(t)
	if c.CNIPath != "/opt/cni/bin" || c.CNIConfigDir != "/opt/cni/config" {
		t.Errorf("client.hcl: cni_path %q, cni_config_dir %q; want Nomad's defaults spelled out", c.CNIPath, c.CNIConfigDir)
	}
	j := readJob(t)
	want := fmt.Sprint(jobSpec{Job: "web", Namespace: "default", Group: "web", Mode: "cni/multi", Ports: []jobPort{{"http", 8080}},
		CNIArgs: map[string]string{"NICMUX_ATTACHMENTS": "storage"}, AddressModes: []string{"alloc"}, Providers: []string{"nomad"}})
	if got := fmt.Sprint(j); got != want {
		t.Errorf("job.nomad.hcl reads as %s, want %s", got, want)
	}
	j = readJobFile(t, "job-backend.nomad.hcl")
	want = fmt.Sprint(jobSpec{Job: "db", Namespace: "backend", Group: "db", Mode: "cni/multi", Ports: []jobPort{{"pg", 5432}},
		CNIArgs: map[string]string{"NICMUX_ATTACHMENTS": "backend", "NICMUX_IPS_eth1": "10.40.0.17/24,fd00:40::17/64",
			"NICMUX_MAC_eth1": "02:00:0a:28:00:11"},
		AddressModes: []string{"alloc", "alloc_ipv6"}, Providers: []string{"nomad", "nomad"}})
	if got := fmt.Sprint(j); got != want {
		t.Errorf("job-backend.nomad.hcl reads as %s, want %s", got, want)
	}
}

// TestExampleConflist pins what docs/nomad.md promises of multi.conflist:
// cniVersion 1.0.0, a lower-case name the job's mode names, the
// portMappings capability on the nicmux entry, and a loopback plugin after
// it (Nomad's exec and java tasks get no lo up otherwise; it passes
// nicmux's result on).
func TestExampleConflist(t *testing.T) {
	var list struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type         string          `json:"type"`
			Attachments  string          `json:"attachments"`
			Capabilities map[string]bool `json:"capabilities"`
		} `json:"plugins"`
	}
	testworld.ReadJSON(t, filepath.Join(examplesDir(), "multi.conflist"), &list)
	name, err := networkName(readJob(t).Mode)
	failIf(t, err, "the job's network mode")
	if list.CNIVersion != "1.0.0" || list.Name != name || len(list.Plugins) != 2 {
		t.Fatalf("multi.conflist: cniVersion %q, name %q, %d plugins; want 1.0.0, %q (the job's mode), two", list.CNIVersion, list.Name, len(list.Plugins), name)
	}
	p := list.Plugins[0]
	if p.Type != "nicmux" || p.Attachments != "/etc/nicmux/multi.yaml" || !p.Capabilities["portMappings"] {
		t.Errorf("multi.conflist's entry = %+v, want nicmux reading /etc/nicmux/multi.yaml, declaring portMappings", p)
	}
	if list.Plugins[1].Type != "loopback" {
		t.Errorf("multi.conflist's second plugin is %q, want loopback", list.Plugins[1].Type)
	}
}

// TestExamplesValidate: nicmux validate finds nothing to say, not even a
// warning, of the examples as the suite installs them (the client's paths
// and links put in), with the leg's plugins as the client's cni_path.
func TestExamplesValidate(t *testing.T) {
	w := newWorld(t)
	w.install()
	conflist := filepath.Join(w.node.ConfigDir, "multi.conflist")
	cmd := exec.Command(testworld.NicmuxBin(), "validate", "-strict", "-conflist", conflist, "-cni-path", testCNIPath())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok: 3 files (") {
		t.Errorf("nicmux validate -strict of the installed examples: %v\n%s", err, out)
	}
}
