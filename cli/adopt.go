package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nicmux/nicmux/adopt"
	"github.com/nicmux/nicmux/rehearse"
)

const adoptHelp = `Reads a hand-written multi-interface conflist (a bridge for eth0 and a
macvlan renamed to eth1 by a wrapper, in one list) and writes into -out DIR
what nicmux runs instead:

  - NAME.yaml, an attachment file: one interface per interface plugin
    (bridge, macvlan, ipvlan, ptp, host-device, vlan, tap, dummy), with its
    IPAM and the meta plugins that act on it (tuning, portmap, bandwidth,
    firewall, sbr, vrf); a wrapper's delegate goes, unwrapped, to the
    wrapper's "ifname", every other plugin to eth0, the CNI_IFNAME Nomad
    gives the list; each interface's host-local leases go under the
    network NAME-IFNAME;
  - NAME.conflist, with the hand-written list's name: nicmux, declaring
    the capabilities the chains declare, then loopback.

NAME is the list's name. Wrappers known: ` + "ifrename" + ` and those named with
-wrapper (a plugin that runs its "delegate" with CNI_IFNAME set to its
"ifname"). adopt refuses, naming each plugin and why, what it cannot split
safely: a plugin holding another plugin's configuration that is no known
wrapper, a plugin whose interface it cannot tell, a second interface
plugin for one interface name (which fails in one list with "file exists").
It never overwrites a file without -force. It then checks the files as
nicmux validate does, on this host.

With -rehearse it rehearses the hand-written conflist and the new one side
by side, as nicmux rehearse does (-nomad, -arg, -port as there): that makes
real, temporary attachments on this host.

Exit status: 0 written (and with -rehearse, the new conflist passes every
release), 1 refused, not written, errors found by the check, or a release
failing with the new conflist, 2 usage error.`

func runAdopt(e *env, args []string) int {
	f, c := deploymentFlags("adopt", adoptHelp, "print one JSON object")
	out := f.String("out", "", "the folder `DIR` to write NAME.yaml and NAME.conflist into")
	o := adopt.Options{}
	f.StringVar(&o.Attachments, "attachments", "", "the attachment file's `PATH` on the client, for nicmux's entry (default: the file written in -out)")
	f.StringVar(&o.StateDir, "state-dir", "", "nicmux's stateDir `DIR` (default: nicmux's, /var/lib/cni/nicmux)")
	f.StringVar(&o.LogFile, "log-file", "", "nicmux's logFile `FILE` (default: none, warnings and errors on stderr)")
	var wrappers listFlag
	f.Var(&wrappers, "wrapper", "another wrapper plugin `TYPE` to unwrap, repeatable")
	force := f.Bool("force", false, "overwrite files that exist")
	rehearseBoth := f.Bool("rehearse", false, "rehearse the hand-written conflist and the new one side by side")
	releases := f.String("nomad", "all", "with -rehearse, the Nomad `VERSIONS` to rehearse")
	ro := rehearse.Options{JobArgs: map[string]string{}, Namespace: "default", Job: "nicmux-rehearse"}
	f.Var(jobArgs(ro.JobArgs), "arg", "with -rehearse, a job network.cni.args `KEY=VALUE`, repeatable")
	f.Var((*portFlags)(&ro.Ports), "port", "with -rehearse, a port mapping `HOST:CONTAINER[/PROTO]`, repeatable")
	if _, code, ok := f.parseN(e, args, 0, 0, ""); !ok {
		return code
	}
	if c.conflist == "" || *out == "" {
		return f.fail(e, "give -conflist FILE (the hand-written conflist) and -out DIR")
	}
	var err error
	if ro.Releases, err = lookupReleases(*releases); err != nil {
		return f.fail(e, "-nomad: %v", err)
	}
	o.Wrappers = append(append([]string{}, adopt.DefaultWrappers...), wrappers...)
	a := &adoption{e: e, c: *c, out: *out, force: *force, opts: o, rehearse: ro, asJSON: c.asJSON}
	if *rehearseBoth && o.Attachments != "" {
		return f.fail(e, "-rehearse rehearses the files written in -out: leave -attachments out")
	}
	return a.run(*rehearseBoth)
}

// listFlag is a repeatable flag of strings.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// adoption is one run of adopt.
type adoption struct {
	e        *env
	c        common
	out      string
	force    bool
	opts     adopt.Options
	rehearse rehearse.Options
	asJSON   bool
	name     string
}

type adoptFiles struct{ yaml, conflist string }

// files are the paths adopt writes, absolute.
func (a *adoption) files() adoptFiles {
	dir, err := filepath.Abs(a.out)
	if err != nil {
		dir = a.out
	}
	return adoptFiles{yaml: filepath.Join(dir, a.name+".yaml"), conflist: filepath.Join(dir, a.name+".conflist")}
}

// adoptReport is adopt's -json object.
type adoptReport struct {
	*adopt.Result
	Refusals    []adopt.Refusal `json:"refusals,omitempty"`
	Error       string          `json:"error,omitempty"`
	Attachments string          `json:"attachmentFile,omitempty"`
	Conflist    string          `json:"conflistFile,omitempty"`
	Check       *report         `json:"check,omitempty"`
	Rehearsal   *sideBySide     `json:"rehearsal,omitempty"`
}

type sideBySide struct {
	HandWritten *rehearse.Report `json:"handWritten"`
	Nicmux      *rehearse.Report `json:"nicmux"`
}

func (a *adoption) run(rehearseBoth bool) int {
	rep := &adoptReport{}
	code := a.write(rep)
	if code == exitOK {
		code = a.check(rep)
	}
	if code == exitOK && rehearseBoth {
		code = a.rehearseBoth(rep)
	}
	if a.asJSON {
		printJSON(a.e.stdout, rep)
	} else if rep.Error != "" {
		fmt.Fprintf(a.e.stderr, "nicmux adopt: %s\n", rep.Error)
	}
	return code
}

// write splits the conflist and writes the two files.
func (a *adoption) write(rep *adoptReport) int {
	data, err := os.ReadFile(a.c.conflist)
	if err != nil {
		rep.Error = err.Error()
		return exitFail
	}
	a.name = listName(data)
	fs := a.files()
	a.opts.Source = a.c.conflist
	if a.opts.Attachments == "" {
		a.opts.Attachments = fs.yaml
	}
	res, err := adopt.Split(data, a.opts)
	var refused *adopt.RefusedError
	if errors.As(err, &refused) {
		rep.Refusals = refused.Refusals
	}
	if err != nil {
		rep.Error = fmt.Sprintf("%s: %v", a.c.conflist, err)
		return exitFail
	}
	rep.Result = res
	for _, p := range []string{fs.yaml, fs.conflist} {
		if _, err := os.Lstat(p); err == nil && !a.force {
			rep.Error = fmt.Sprintf("%s exists: nothing written (-force overwrites)", p)
			return exitFail
		}
	}
	if err := writeAtomic(fs.yaml, res.Attachments); err != nil {
		rep.Error = err.Error()
		return exitFail
	}
	if err := writeAtomic(fs.conflist, res.Conflist); err != nil {
		rep.Error = err.Error()
		return exitFail
	}
	rep.Attachments, rep.Conflist = fs.yaml, fs.conflist
	if !a.asJSON {
		printAdopted(a.e.stdout, res, fs)
	}
	return exitOK
}

// listName is the conflist's name, for the file names ("" if none: Split
// then says why).
func listName(data []byte) string {
	var l struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(data, &l)
	return filepath.Base(l.Name)
}

// writeAtomic writes a complete file renamed into place, so that the
// runtime reading the folder never sees half of it.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

func printAdopted(w io.Writer, r *adopt.Result, fs adoptFiles) {
	fmt.Fprintf(w, "wrote %s and %s (network %q):\n", fs.yaml, fs.conflist, r.Name)
	for _, it := range r.Interfaces {
		un := ""
		if len(it.Unwrapped) > 0 {
			un = " (unwrapped from " + strings.Join(it.Unwrapped, ", ") + ")"
		}
		fmt.Fprintf(w, "  %s  network %s: %s%s\n", it.IfName, it.Network, strings.Join(it.Plugins, " "), un)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// check validates the files written, as nicmux validate does.
func (a *adoption) check(rep *adoptReport) int {
	fs := a.files()
	r := newValidator(a.e, a.c.path(a.e)).run(fs.conflist, []string{fs.yaml})
	rep.Check = r
	if !a.asJSON {
		fmt.Fprintln(a.e.stdout, "nicmux validate of the files written:")
		r.printText(a.e.stdout)
	}
	if r.Errors > 0 {
		return exitFail
	}
	return exitOK
}

// rehearseBoth rehearses the hand-written conflist, then the new one.
func (a *adoption) rehearseBoth(rep *adoptReport) int {
	fs := a.files()
	old, code := a.rehearseOne(a.c.conflist, "hand-written")
	if old == nil {
		return code
	}
	neu, code := a.rehearseOne(fs.conflist, "nicmux")
	if neu == nil {
		return code
	}
	rep.Rehearsal = &sideBySide{HandWritten: old, Nicmux: neu}
	if !a.asJSON {
		printSideBySide(a.e.stdout, old, neu)
	}
	if !neu.Pass() {
		return exitFail
	}
	return exitOK
}

func (a *adoption) rehearseOne(file, label string) (*rehearse.Report, int) {
	o := a.rehearse
	o.File, o.CNIPath = file, a.c.path(a.e)
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(a.e.stderr, "nicmux adopt: %v\n", err)
		return nil, exitFail
	}
	o.Data = data
	fmt.Fprintf(a.e.stderr, "nicmux adopt: rehearsing the %s conflist: the attachments are real (bridges, iptables rules, addresses from the real pools) until cleaned up\n", label)
	ctx, stop, done := interruptible(a.e.stderr)
	defer done()
	o.Stop = stop
	rep, err := rehearse.Run(ctx, o)
	if err != nil && rep == nil {
		fmt.Fprintf(a.e.stderr, "nicmux adopt: %v\n", err)
		return nil, exitFail
	}
	if rep.Interrupted {
		fmt.Fprintln(a.e.stderr, "nicmux adopt: interrupted: what the rehearsal made is removed")
		return nil, exitFail
	}
	return rep, exitOK
}

func printSideBySide(w io.Writer, old, neu *rehearse.Report) {
	fmt.Fprintf(w, "rehearsal, hand-written %s beside nicmux %s:\n", old.File, neu.File)
	for i := range old.Outcomes {
		o := old.Outcomes[i]
		fmt.Fprintf(w, "Nomad %s\n", o.Release.Version)
		fmt.Fprintf(w, "  hand-written  %s\n", verdictWords(o))
		if i < len(neu.Outcomes) {
			fmt.Fprintf(w, "  nicmux        %s\n", verdictWords(neu.Outcomes[i]))
		}
	}
	fmt.Fprintf(w, "hand-written: %d of %d releases pass; nicmux: %d of %d\n", passed(old), len(old.Outcomes), passed(neu), len(neu.Outcomes))
}

func passed(r *rehearse.Report) int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Pass {
			n++
		}
	}
	return n
}
