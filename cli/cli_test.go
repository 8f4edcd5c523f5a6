package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nicmux/nicmux/metrics"
	"github.com/nicmux/nicmux/release"
)

// mainEnv makes the test binary act as nicmux itself: TestMain then hands
// its arguments to Main, so that the bare run and the CNI path, which use
// the process's own streams, are tested as a real process.
const mainEnv = "NICMUX_CLI_TEST_MAIN"

// fakeBin holds the fake plugin binaries (see writeFakes), made once before
// any test runs: writing an executable while another test forks can make
// running it fail with "text file busy".
var fakeBin string

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) != "" {
		os.Exit(Main(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
	}
	// As root (make test in CI), every test runs in a private network
	// namespace, where the host-fact tests make their links.
	if os.Geteuid() == 0 {
		if code := reexecInPrivateNetns(); code >= 0 {
			os.Exit(code)
		}
	}
	dir, err := os.MkdirTemp("", "nicmux-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeBin = dir
	if err := writeFakes(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const allVersions = `["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]`

// writeFakes writes the fake plugins: shell scripts that answer VERSION the
// way a plugin does, well or badly.
func writeFakes(dir string) error {
	good := `#!/bin/sh
echo '{"cniVersion":"1.1.0","supportedVersions":` + allVersions + `}'
`
	scripts := map[string]string{
		"oldplug": `#!/bin/sh
echo '{"cniVersion":"0.3.1","supportedVersions":["0.3.0","0.3.1"]}'
`,
		"hangs": "#!/bin/sh\nexec sleep 30\n",
		"broken": `#!/bin/sh
echo 'not json'
echo 'exec format trouble' >&2
exit 3
`,
		"cnierr": `#!/bin/sh
echo '{"cniVersion":"1.0.0","code":4,"msg":"boom"}'
exit 1
`,
		"legacy": `#!/bin/sh
echo '{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}'
exit 1
`,
		"noversion": "#!/bin/sh\necho '{}'\n",
	}
	for _, name := range []string{"nicmux", "loopback", "bridge", "macvlan", "ipvlan", "vlan", "tuning", "portmap", "host-local", "static", "dhcp"} {
		scripts[name] = good
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "noexec"), []byte(good), 0o644)
}

// run dispatches args as Main would, with env as the environment.
func run(t *testing.T, environ map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runTimeout(t, defaultVersionTimeout, environ, args...)
}

// runTimeout is run with a VERSION timeout of its own.
func runTimeout(t *testing.T, versionTimeout time.Duration, environ map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{
		getenv:         func(k string) string { return environ[k] },
		stdin:          strings.NewReader(""),
		stdout:         &out,
		stderr:         &errb,
		versionTimeout: versionTimeout,
	}
	code = dispatch(e, args)
	return out.String(), errb.String(), code
}

var pathEnv = map[string]string{"PATH": os.Getenv("PATH")}

// TestDispatch: each way of calling nicmux's command line, its exit code and
// where its text goes.
func TestDispatch(t *testing.T) {
	var usageText bytes.Buffer
	usage(&usageText)
	good := filepath.Join(t.TempDir(), "ok.yaml")
	if err := writeSettled(good, []byte("interfaces: [{plugins: [{type: loopback}]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		environ map[string]string
		args    []string
		code    int
		stdout  string // exact, when set
		outHas  string // a part of stdout
		errHas  string // a part of stderr
	}{
		{name: "help", args: []string{"help"}, stdout: usageText.String()},
		{name: "-h", args: []string{"-h"}, stdout: usageText.String()},
		{name: "--help", args: []string{"--help"}, stdout: usageText.String()},
		{name: "-help", args: []string{"-help"}, stdout: usageText.String()},
		{name: "help -h", args: []string{"help", "-h"}, stdout: usageText.String()},
		{name: "help validate", args: []string{"help", "validate"}, outHas: "Usage: nicmux validate [-conflist FILE]"},
		{name: "help version", args: []string{"help", "version"}, outHas: "Usage: nicmux version [-json]"},
		{name: "help unknown", args: []string{"help", "nope"}, code: 2, errHas: `nicmux help: unknown command "nope"`},
		{name: "help two", args: []string{"help", "a", "b"}, code: 2, errHas: "give at most one command"},
		{name: "unknown command", args: []string{"nope"}, code: 2, errHas: "nicmux: unknown command \"nope\"\n\nnicmux is a CNI meta-plugin"},
		{name: "not a command: list", args: []string{"list"}, code: 2, errHas: `unknown command "list"`},
		{name: "unknown flag first", args: []string{"-x"}, code: 2, errHas: `unknown command "-x"`},
		{name: "version", args: []string{"version"}, outHas: "nicmux " + release.Get().Version + "\ncommit: "},
		{name: "--version", args: []string{"--version"}, outHas: "nicmux " + release.Get().Version + "\n"},
		{name: "-version", args: []string{"-version"}, outHas: "nicmux " + release.Get().Version + "\n"},
		{name: "version -json", args: []string{"version", "-json"}, outHas: `"cniVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]`},
		{name: "version -h", args: []string{"version", "-h"}, outHas: "Usage: nicmux version [-json]"},
		{name: "version argument", args: []string{"version", "x"}, code: 2, errHas: `nicmux version: takes no arguments, got "x"`},
		{name: "version bad flag", args: []string{"version", "-x"}, code: 2, errHas: "nicmux version: flag provided but not defined: -x"},
		{name: "validate -h", args: []string{"validate", "-h"}, outHas: "Usage: nicmux validate"},
		{name: "validate --help", args: []string{"validate", "--help"}, outHas: "Usage: nicmux validate"},
		{name: "validate nothing", args: []string{"validate"}, code: 2, errHas: "nicmux validate: give attachment files, or -conflist"},
		{name: "validate bad flag", args: []string{"validate", "-paralel", good}, code: 2, errHas: "flag provided but not defined: -paralel"},
		{name: "validate ok", environ: pathEnv, args: []string{"validate", "-cni-path", fakeBin, good}, outHas: "ok: 1 file (" + good + ")\n"},
		// Flags after the files count, and "--" ends them.
		{name: "validate flags last", environ: pathEnv, args: []string{"validate", good, "-cni-path", fakeBin, "-json"}, outHas: `"errors": 0`},
		{name: "validate --", environ: pathEnv, args: []string{"validate", "-cni-path", fakeBin, "--", "-json"}, code: 1, outHas: "-json: error: cannot read attachment file"},
		// CNI_PATH without CNI_COMMAND and with a command: where the
		// command finds plugins, not a call of the plugin.
		{name: "validate CNI_PATH", environ: map[string]string{"CNI_PATH": fakeBin, "PATH": os.Getenv("PATH")}, args: []string{"validate", good}, outHas: "ok: 1 file"},
		{name: "validate missing file", environ: pathEnv, args: []string{"validate", "-cni-path", fakeBin, "/nonexistent/x.yaml"}, code: 1,
			outHas: "/nonexistent/x.yaml: error: cannot read attachment file: open /nonexistent/x.yaml: no such file or directory\n"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, tt.environ, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if tt.stdout != "" && stdout != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tt.stdout)
			}
			if !strings.Contains(stdout, tt.outHas) {
				t.Errorf("stdout lacks %q:\n%s", tt.outHas, stdout)
			}
			if !strings.Contains(stderr, tt.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.errHas, stderr)
			}
			if tt.code == 0 && stderr != "" {
				t.Errorf("stderr not empty on success: %s", stderr)
			}
			if tt.code == 2 && stdout != "" {
				t.Errorf("stdout not empty on a usage error: %s", stdout)
			}
		})
	}
}

// TestUsageListsCommands: the usage names every command of the table, and
// each command's help starts with its synopsis.
func TestUsageListsCommands(t *testing.T) {
	var b bytes.Buffer
	usage(&b)
	for _, c := range commands() {
		if !strings.Contains(b.String(), "\n  "+c.name+" ") {
			t.Errorf("usage does not list %s:\n%s", c.name, b.String())
		}
		if c.name == "help" {
			continue
		}
		stdout, _, code := run(t, nil, c.name, "-h")
		if code != 0 || !strings.HasPrefix(stdout, "Usage: nicmux "+c.name+" "+c.synopsis+"\n") {
			t.Errorf("%s -h: exit %d, stdout %q", c.name, code, stdout)
		}
	}
}

// TestProcess runs the test binary as nicmux for the paths that use the
// process's own streams: the bare run Nomad fingerprints, and the plugin.
func TestProcess(t *testing.T) {
	bare := release.About("nicmux") + "\nCNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n"
	cases := []struct {
		name           string
		environ        []string
		args           []string
		code           int
		stdout, stderr string // exact
		outHas         string
	}{
		// Exactly what nicmux printed before it had commands: on stderr, as
		// skel prints it.
		{name: "bare", stderr: bare},
		{name: "VERSION", environ: []string{"CNI_COMMAND=VERSION"},
			stdout: `{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}` + "\n"},
		// With CNI_COMMAND set, arguments do not make it a command.
		{name: "VERSION with arguments", environ: []string{"CNI_COMMAND=VERSION"}, args: []string{"validate", "x.yaml"},
			stdout: `{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}` + "\n"},
		{name: "CNI variable without CNI_COMMAND", environ: []string{"CNI_PATH=/opt/cni/bin"}, code: 1,
			stdout: "{\n    \"code\": 4,\n    \"msg\": \"required env variables [CNI_COMMAND] missing\"\n}"},
		{name: "bad CNI_IFNAME", environ: []string{"CNI_COMMAND=ADD", "CNI_IFNAME=a/b"}, code: 1,
			outHas: `"msg": "CNI_IFNAME \"a/b\": interface name contains / or : or whitespace characters"`},
		{name: "help", args: []string{"help"}, outHas: "Commands:\n  validate "},
		{name: "unknown command", args: []string{"nope"}, code: 2},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tt.args...)
			cmd.Env = append([]string{mainEnv + "=1"}, tt.environ...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := cmd.ProcessState.ExitCode()
			if err != nil && code < 0 {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stdout %q, stderr %q)", code, tt.code, stdout.String(), stderr.String())
			}
			if tt.outHas == "" && stdout.String() != tt.stdout {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.stdout)
			}
			if tt.outHas != "" && !strings.Contains(stdout.String(), tt.outHas) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.outHas)
			}
			if tt.stderr != "" && stderr.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.stderr)
			}
		})
	}
}

func TestBuildVersion(t *testing.T) {
	cases := []release.Info{
		{Version: "v0.3.0", Commit: "9a7f094c1e2b3d4f5a6b7c8d9e0f1a2b3c4d5e6f"},
		{Version: "v0.3.0-2-g9a7f094-dirty", Commit: "9a7f094c1e2b3d4f5a6b7c8d9e0f1a2b3c4d5e6f-dirty"},
		{Version: release.Dev, Commit: "unknown"},
	}
	for _, r := range cases {
		t.Run(r.Version, func(t *testing.T) {
			v := buildVersion(r)
			var b bytes.Buffer
			v.print(&b)
			want := fmt.Sprintf("nicmux %s\ncommit: %s\ngo: %s\nCNI versions: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n", r.Version, r.Commit, runtime.Version())
			if b.String() != want {
				t.Errorf("printed %q, want %q", b.String(), want)
			}
			j, _ := json.Marshal(v)
			if !strings.Contains(string(j), `"version":"`+r.Version+`","commit":"`+r.Commit+`"`) {
				t.Errorf("JSON %s lacks the version and commit", j)
			}
		})
	}
}

func TestMetricsPrintsTheCounters(t *testing.T) {
	state := t.TempDir()
	tally := &metrics.Tally{}
	tally.Add(metrics.Verbs, 2, "ADD", "ok")
	tally.Observe(metrics.VerbSeconds, 0.04, "ADD")
	if _, err := metrics.Fold(filepath.Join(state, "metrics"), tally); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, nil, "metrics", "-state-dir", state, "-json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r metricsReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Generation != 1 || len(r.Families) != 2 {
		t.Fatalf("report %+v", r)
	}
	h, v := r.Families[0].Series[0], r.Families[1].Series[0]
	if *v.Value != 2 || v.Labels["verb"] != "ADD" || v.Labels["result"] != "ok" {
		t.Errorf("nicmux_verbs_total: %+v", v)
	}
	if *h.Count != 1 || h.Buckets[2].LE != "0.025" || h.Buckets[2].Count != 0 || h.Buckets[3].Count != 1 || h.Buckets[13].LE != "+Inf" {
		t.Errorf("nicmux_verb_duration_seconds: %+v", h)
	}
	text, _, _ := run(t, nil, "metrics", "-state-dir", state)
	if !strings.Contains(text, "verb=ADD result=ok") || !strings.Contains(text, "0.05:1") {
		t.Errorf("for a person:\n%s", text)
	}
}

func TestMetricsPrintsProblems(t *testing.T) {
	state := t.TempDir()
	dir := filepath.Join(state, "metrics")
	if _, err := metrics.Fold(dir, &metrics.Tally{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "render-0123.problem"), []byte("open /x/nicmux.prom: permission denied"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, nil, "metrics", "-state-dir", state)
	if code != exitOK || !strings.Contains(out, "problem (render-0123): open /x/nicmux.prom: permission denied") {
		t.Errorf("exit %d: %s%s", code, out, stderr)
	}
}
