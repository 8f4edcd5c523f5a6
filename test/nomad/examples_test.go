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

// jobSpec is what job.nomad.hcl tells Nomad about the group's network.
type jobSpec struct {
	Job, Group  string
	Mode        string
	Ports       []jobPort
	CNIArgs     map[string]string
	Provider    string
	AddressMode string
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

// block returns the only block of a type in body.
func block(t *testing.T, body *hclsyntax.Body, typ string) *hclsyntax.Block {
	t.Helper()
	var found []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			found = append(found, b)
		}
	}
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
func readJob(t *testing.T) jobSpec {
	t.Helper()
	job := block(t, parseHCL(t, "job.nomad.hcl"), "job")
	group := block(t, job.Body, "group")
	network := block(t, group.Body, "network").Body
	service := block(t, group.Body, "service").Body
	spec := jobSpec{Job: job.Labels[0], Group: group.Labels[0], Mode: attrString(t, network, "mode"),
		Provider: attrString(t, service, "provider"), AddressMode: attrString(t, service, "address_mode")}
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
	want := fmt.Sprint(jobSpec{Job: "web", Group: "web", Mode: "cni/multi", Ports: []jobPort{{"http", 8080}},
		CNIArgs: map[string]string{"NICMUX_ATTACHMENTS": "storage"}, Provider: "nomad", AddressMode: "alloc"})
	if got := fmt.Sprint(j); got != want {
		t.Errorf("job.nomad.hcl reads as %s, want %s", got, want)
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
	readJSON(t, filepath.Join(examplesDir(), "multi.conflist"), &list)
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
	cmd := exec.Command(nicmuxBin(), "validate", "-strict", "-conflist", conflist, "-cni-path", testCNIPath())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok: 3 files (") {
		t.Errorf("nicmux validate -strict of the installed examples: %v\n%s", err, out)
	}
}
