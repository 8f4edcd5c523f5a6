// Package cli is nicmux's command line. Run by a CNI runtime (CNI_COMMAND
// set) nicmux is the plugin; run bare it prints its version, which is how
// Nomad fingerprints the binaries in its cni_path; run with a command it
// serves a person or a script, in the style of ip, cnitool and nomad.
package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nicmux/nicmux/cmdline"
	"github.com/nicmux/nicmux/mux"
)

// Exit codes of the commands.
const (
	exitOK    = cmdline.ExitOK
	exitFail  = cmdline.ExitFail
	exitUsage = cmdline.ExitUsage
)

// defaultCNIPath is where the commands look for plugin binaries without
// -cni-path or CNI_PATH: Nomad's default cni_path.
const defaultCNIPath = "/opt/cni/bin"

// Main runs nicmux with args (the program name left out) and returns its
// exit code. getenv, stdin, stdout and stderr serve the commands; the CNI
// plugin (CNI_COMMAND set) and the bare run use the process's own
// environment and streams, as skel reads them.
func Main(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Nomad's fingerprint (no arguments, no CNI variable) and every runtime
	// call go straight to the plugin, so that the fingerprint costs no
	// command parsing. Without CNI_COMMAND but with another CNI variable,
	// mux.Run reports the missing variable; with arguments, CNI_PATH is
	// just where a command finds plugins.
	if len(args) == 0 || getenv("CNI_COMMAND") != "" {
		return plugin(getenv)
	}
	return dispatch(&env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}, args)
}

// dispatch runs the command args name.
func dispatch(e *env, args []string) int { return program().Dispatch(e, e.stderr, args) }

// plugin is nicmux as a CNI plugin, and its bare run.
func plugin(getenv func(string) string) int {
	if e := mux.Run(mux.New(), getenv); e != nil {
		_ = e.Print()
		return exitFail
	}
	return exitOK
}

// env is what a command runs with.
type env struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
	// versionTimeout bounds a plugin's VERSION answer; zero means
	// defaultVersionTimeout.
	versionTimeout time.Duration
	// parseOnly stops every command once its flags and the number of its
	// arguments are checked, with exitOK: how the documentation's test
	// checks the commands the docs show, without running them.
	parseOnly bool
}

// command is one entry of the command table.
type command struct {
	name     string
	synopsis string // the arguments after the name
	summary  string
	run      func(e *env, args []string) int
}

// commands is the command table, in the order help lists it.
func commands() []command {
	return []command{
		{"validate", "[-conflist FILE] [-cni-path DIRS] [-strict] [-json] [ATTACHMENT_FILE...]",
			"check nicmux's conflist entry and attachment files before an allocation lands", runValidate},
		{"show", "[-state-dir DIR | -conflist FILE] [-json] [CONTAINER_ID]",
			"list the containers nicmux holds state for, or show one in detail", runShow},
		{"gc", "[-dry-run] [-conflist FILE] [-cni-path DIRS] [-json]",
			"release the containers whose network namespace is gone, as DEL would", runGC},
		{"forget", "[-force] [-conflist FILE] [-cni-path DIRS] [-json] CONTAINER_ID",
			"release what a stuck record holds and drop it (-force: even if not all of it)", runForget},
		{"rehearse", "-conflist FILE | -net NAME [-confdir DIR] [-nomad VERSIONS|all] [-cni-path DIRS] [-arg K=V]... [-port H:C]... [-json]",
			"drive a conflist as each Nomad release would, in a scratch netns, and check nothing leaks", runRehearse},
		{"adopt", "-conflist FILE -out DIR [-attachments PATH] [-wrapper TYPE]... [-force] [-rehearse [-nomad VERSIONS]] [-json]",
			"split a hand-written multi-interface conflist into a nicmux attachment file and conflist", runAdopt},
		{"metrics", "[-state-dir DIR | -conflist FILE | -counters DIR] [-json]",
			"print the figures nicmux keeps for its metricsFile, as the file holds them", runMetrics},
		{"plugins", "[-conflist FILE] [-cni-path DIRS] [-json] [ATTACHMENT_FILE...]",
			"list the plugins the configuration uses, each binary's version, and whether Nomad runs CHECK", runPlugins},
		{"version", "[-json]", "print nicmux's version, commit, Go version and the CNI versions it speaks", runVersion},
		{"help", "[COMMAND]", "print this help, or a command's", runHelp},
	}
}

// program is nicmux's command line: the command table and the help.
func program() *cmdline.Program[*env] {
	p := &cmdline.Program[*env]{Name: "nicmux", Intro: `nicmux is a CNI meta-plugin: one CNI entry that gives a container several
interfaces, each through its own delegate plugin chain.

Usage:
  nicmux                    print the version (how Nomad fingerprints plugins)
  nicmux COMMAND [ARGS]     run a command
  CNI_COMMAND=VERB nicmux   act as the CNI plugin (as a runtime runs it)

Commands:
`, Outro: `
Run "nicmux COMMAND -h" for a command's flags. The commands find plugin
binaries through -cni-path, else CNI_PATH, else ` + defaultCNIPath + `, and nicmux's
entry through -conflist (the runtime's conflist).
Exit status: 0 ok, 1 the command found errors or failed, 2 usage error.
`}
	for _, c := range commands() {
		p.Commands = append(p.Commands, cmdline.Command[*env]{Name: c.name, Synopsis: c.synopsis, Summary: c.summary, Run: c.run})
	}
	return p
}

func usage(w io.Writer) { program().Usage(w) }

func runHelp(e *env, args []string) int { return program().Help(e, e.stdout, e.stderr, args) }

// flags is a command's flag set, parsed so that flags and arguments may mix
// ("validate a.yaml -json") and "-h" prints the command's help on stdout.
type flags struct {
	*cmdline.Flags
}

func newFlags(name, help string) *flags {
	return &flags{cmdline.NewFlags("nicmux", program().Lookup(name), help)}
}

// parseN is parse, then a check that between min and max arguments
// (max < 0: any number) are left, named what in the message; in parse-only
// mode it then stops with exitOK.
func (f *flags) parseN(e *env, args []string, min, max int, what string) ([]string, int, bool) {
	rest, code, ok := f.parse(e, args)
	switch {
	case !ok:
		return nil, code, false
	case max == 0 && len(rest) > 0:
		return nil, f.fail(e, "takes no arguments, got %q", rest[0]), false
	case min == max && len(rest) != min:
		return nil, f.fail(e, "give %s, got %d arguments", what, len(rest)), false
	case len(rest) < min:
		return nil, f.fail(e, "give %s", what), false
	case max >= 0 && len(rest) > max:
		return nil, f.fail(e, "give at most %s, got %d arguments", what, len(rest)), false
	case e.parseOnly:
		return nil, exitOK, false
	}
	return rest, 0, true
}

// parse parses args and returns the arguments that are not flags, or an exit
// code when the command should stop: exitOK after -h, exitUsage after a
// bad flag.
func (f *flags) parse(e *env, args []string) ([]string, int, bool) {
	return f.Parse(e.stdout, e.stderr, args)
}

// fail reports a usage error and returns exitUsage.
func (f *flags) fail(e *env, format string, args ...any) int {
	return f.Fail(e.stderr, format, args...)
}

// common holds the flags every command that looks at a deployment shares.
type common struct {
	cniPath  string
	conflist string
	asJSON   bool
}

// deploymentFlags returns the flags of a command that looks at a
// deployment: -cni-path, -conflist and -json (which prints what jsonHelp
// says), and the common values they set.
func deploymentFlags(name, help, jsonHelp string) (*flags, *common) {
	f := newFlags(name, help)
	c := &common{}
	f.StringVar(&c.cniPath, "cni-path", "", "colon-separated `DIRS` holding the plugin binaries (default: $CNI_PATH, else "+defaultCNIPath+")")
	f.StringVar(&c.conflist, "conflist", "", "the runtime's conflist `FILE` (or .conf) whose plugin of type nicmux is the entry to use")
	f.BoolVar(&c.asJSON, "json", false, jsonHelp)
	return f, c
}

// path returns the folders to find plugin binaries in: -cni-path, else
// CNI_PATH, else defaultCNIPath, as a runtime's cni_path would list them.
func (c *common) path(e *env) []string {
	list := c.cniPath
	if list == "" {
		list = e.getenv("CNI_PATH")
	}
	if list == "" {
		list = defaultCNIPath
	}
	var out []string
	for _, d := range filepath.SplitList(list) {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

func joinPath(dirs []string) string { return strings.Join(dirs, string(os.PathListSeparator)) }
