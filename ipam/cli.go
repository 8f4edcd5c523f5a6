package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/nicmux/nicmux/cmdline"
	"github.com/nicmux/nicmux/release"
)

// Exit codes of the commands, as nicmux's.
const (
	exitOK   = cmdline.ExitOK   // done, nothing wrong
	exitFail = cmdline.ExitFail // the command ran and found disagreements, or failed
)

// Dialer connects to the store an etcd configuration names.
type Dialer func(EtcdConfig) (Store, error)

// Main runs nicmux-ipamd with args (the program name left out) and returns
// its exit code. Run bare, or with CNI_COMMAND set, it is the CNI plugin
// (the bare run prints its version line as a plugin's); otherwise args
// name a command.
func Main(args []string, getenv func(string) string, stdout, stderr io.Writer, dial Dialer) int {
	if len(args) == 0 || getenv("CNI_COMMAND") != "" {
		p := &plugin{Dial: dial, Hostname: os.Hostname, Stdout: stdout}
		if e := skel.PluginMainFuncsWithError(p.Funcs(), supported(), release.About("nicmux-ipamd")); e != nil {
			_ = e.Print()
			return exitFail
		}
		return exitOK
	}
	e := &env{getenv: getenv, stdout: stdout, stderr: stderr, dial: dial, now: time.Now}
	return program().Dispatch(e, stderr, args)
}

// env is what a command runs with.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	dial           Dialer
	now            func() time.Time
}

// program is nicmux-ipam's command line: the command table and the help.
func program() *cmdline.Program[*env] {
	return &cmdline.Program[*env]{Name: "nicmux-ipam", Intro: `nicmux-ipam is a CNI IPAM plugin: one address pool across every node, kept in etcd.

Usage:
  nicmux-ipam                    print the version (how Nomad fingerprints plugins)
  nicmux-ipam COMMAND [ARGS]     run a command
  CNI_COMMAND=VERB nicmux-ipam   act as the IPAM plugin (as a plugin's ipam runs it)

Commands:
`, Outro: `
Run "nicmux-ipam COMMAND -h" for a command's flags. The commands reach etcd
through -endpoints (and the TLS flags) or -etcd-config FILE, the file an
ipam configuration's etcdConfig names.
Exit status: 0 ok, 1 the command found disagreements or failed, 2 usage error.
`, Commands: []cmdline.Command[*env]{
		{Name: "show", Synopsis: "[-pool P] [-node N] [-json] [ETCD FLAGS]", Summary: "print each pool's size, use, blocks per node and leases", Run: runShow},
		{Name: "check", Synopsis: "[-node N] [-data-dir DIR] [-pool P] [-json] [ETCD FLAGS]", Summary: "compare a node's own records with etcd, and complete its queued releases", Run: runCheck},
		{Name: "release-node", Synopsis: "-node NAME [-dry-run] [-force] [-grace D] [-pool P] [-json] [ETCD FLAGS]", Summary: "free the blocks and leases of a node that is gone for good", Run: runReleaseNode},
		{Name: "serve", Synopsis: "[-socket PATH]", Summary: "run the node's daemon, which answers nicmux-ipam's calls (nicmux-ipamd)", Run: runServe},
		{Name: "version", Synopsis: "[-json]", Summary: "print nicmux-ipam's version, commit and the CNI versions it speaks", Run: runVersion},
		{Name: "help", Synopsis: "[COMMAND]", Summary: "print this help, or a command's", Run: runHelp},
	}}
}

func runHelp(e *env, args []string) int { return program().Help(e, e.stdout, e.stderr, args) }

func runVersion(e *env, args []string) int {
	f := newFlags("version", "Prints nicmux-ipam's version, the commit it was built from and the CNI\nspecification versions it speaks.")
	asJSON := f.Bool("json", false, "print one JSON object")
	if code, ok := f.parse(e, args); !ok {
		return code
	}
	r := release.Get()
	v := struct {
		Version     string   `json:"version"`
		Commit      string   `json:"commit"`
		CNIVersions []string `json:"cniVersions"`
	}{r.Version, r.Commit, supported().SupportedVersions()}
	if *asJSON {
		printJSON(e.stdout, v)
		return exitOK
	}
	fmt.Fprintf(e.stdout, "nicmux-ipam %s\ncommit: %s\nCNI versions: %s\n", v.Version, v.Commit, strings.Join(v.CNIVersions, ", "))
	return exitOK
}

// flags is a command's flag set; -h prints the command's help on stdout.
type flags struct {
	*cmdline.Flags
}

func newFlags(name, help string) *flags {
	return &flags{cmdline.NewFlags("nicmux-ipam", program().Lookup(name), help)}
}

// parse parses args, which must all be flags; ok false means stop with
// code (exitOK after -h).
func (f *flags) parse(e *env, args []string) (int, bool) {
	rest, code, ok := f.Parse(e.stdout, e.stderr, args)
	if ok && len(rest) > 0 {
		return f.fail(e, "takes no arguments, got %q", rest[0]), false
	}
	return code, ok
}

func (f *flags) fail(e *env, format string, args ...any) int {
	return f.Fail(e.stderr, format, args...)
}

// etcdFlags are the flags that say how to reach etcd.
type etcdFlags struct {
	endpoints, prefix, ca, cert, key, timeout, file string
}

func (c *etcdFlags) register(f *flags) {
	f.StringVar(&c.endpoints, "endpoints", "", "etcd client `URLS`, comma-separated (default: $NICMUX_IPAM_ENDPOINTS)")
	f.StringVar(&c.prefix, "prefix", "", "the key `PREFIX` the pools live under (default "+DefaultPrefix+")")
	f.StringVar(&c.ca, "ca-file", "", "the CA certificate `FILE` that signed etcd's")
	f.StringVar(&c.cert, "cert-file", "", "the client certificate `FILE`")
	f.StringVar(&c.key, "key-file", "", "the client key `FILE`")
	f.StringVar(&c.timeout, "timeout", "", "bound on the command's etcd work (default 5s; the etcd-config's otherwise)")
	f.StringVar(&c.file, "etcd-config", "", "an etcd settings `FILE` (the etcdConfig of an ipam configuration) instead of the flags above")
}

// config is the etcd configuration the flags give.
func (c *etcdFlags) config(e *env) (EtcdConfig, error) {
	if c.file != "" {
		if c.endpoints != "" || c.ca != "" || c.cert != "" || c.key != "" {
			return EtcdConfig{}, errors.New("give -etcd-config or the endpoint and TLS flags, not both")
		}
		ec, err := loadEtcdConfig(c.file)
		if err != nil {
			return ec, err
		}
		// -prefix and -timeout still apply, checked as in the file.
		over, err := (&etcdConf{Endpoints: ec.Endpoints, Prefix: c.prefix, Timeout: c.timeout}).check("flags")
		if err != nil {
			return ec, err
		}
		if c.prefix != "" {
			ec.Prefix = over.Prefix
		}
		if c.timeout != "" {
			ec.Timeout = over.Timeout
		}
		return ec, nil
	}
	list := c.endpoints
	if list == "" {
		list = e.getenv("NICMUX_IPAM_ENDPOINTS")
	}
	if list == "" {
		return EtcdConfig{}, errors.New("give -endpoints URLS or -etcd-config FILE")
	}
	ec := etcdConf{Endpoints: strings.Split(list, ","), CAFile: c.ca, CertFile: c.cert, KeyFile: c.key, Prefix: c.prefix, Timeout: c.timeout}
	return ec.check("flags")
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
