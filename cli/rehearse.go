package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/nicmux/nicmux/nomad"
	"github.com/nicmux/nicmux/rehearse"
)

const rehearseHelp = `Drives a CNI configuration, nicmux's or a hand-written chain, exactly as
each chosen Nomad client release would, in a scratch network namespace, with
the plugins of the CNI path:

  - the fingerprint: every binary of the CNI path run bare; CHECK runs only
    when the bridge binary reports 1.3.0 or later;
  - ADD with the release's CNI_ARGS (IgnoreUnknown; the job's -arg from
    1.8.2; NOMAD_* from 1.9.4), tried up to 3 times, 1 s apart, no DEL
    between; STATUS first where the release sends it (1.9.5 and later, a
    1.1.0 list);
  - the result read as go-cni and the release read it, and the address the
    release reports ("no interface with an address" fails the allocation);
  - a client restart: CHECK where the release runs it (1.9.5 and later);
    when it fails, the netns destroyed WITHOUT DEL, made again and set up
    again, as the release does;
  - the teardown (STATUS, then DEL), then a leak check: links in the netns
    and on the host, host-local leases in the data folders the
    configuration names, iptables rules naming the rehearsal's container ID,
    nicmux state.

It prints a line per release: pass, or the step that failed with the
plugin's own message. Whatever happens, it then removes what the rehearsal
made and says so, also when interrupted (SIGINT, SIGTERM: it stops after the
plugin call under way; a second signal kills that call).

THE ATTACHMENTS ARE REAL: bridges and iptables rules may be created, and
addresses are taken from the real pools, for as long as a rehearsal lasts.
Run it on a test node, or a client in a maintenance window.

-nomad takes "all" (the releases -releases lists, one per distinct
behaviour), or versions separated by commas (a later release behaves as the
newest listed one before it; Enterprise-only releases are refused).
-net NAME finds the configuration as the client does for mode "cni/NAME":
the first .conf, .conflist or .json file of -confdir whose name matches.

Exit status: 0 every release passed, 1 a release failed (or the run was
interrupted, or the configuration does not load), 2 usage error.`

// defaultConfDir is Nomad's default cni_config_dir.
const defaultConfDir = "/opt/cni/config"

func runRehearse(e *env, args []string) int {
	f, c := deploymentFlags("rehearse", rehearseHelp, "print one JSON object")
	net := f.String("net", "", "the network `NAME` to find in -confdir, as a job's mode cni/NAME does (instead of -conflist)")
	confDir := f.String("confdir", defaultConfDir, "the client's cni_config_dir `DIR`, for -net")
	releases := f.String("nomad", "all", "the Nomad `VERSIONS` to rehearse: all, or versions separated by commas")
	list := f.Bool("releases", false, "list the releases nicmux models and what changes at each, and rehearse nothing")
	o := rehearse.Options{JobArgs: map[string]string{}}
	f.Var(jobArgs(o.JobArgs), "arg", "a job network.cni.args `KEY=VALUE`, repeatable")
	f.Var((*portFlags)(&o.Ports), "port", "a port mapping `HOST:CONTAINER[/PROTO]`, repeatable (tcp and udp without a protocol, as Nomad maps them)")
	f.StringVar(&o.Namespace, "namespace", "default", "the allocation's NOMAD_NAMESPACE")
	f.StringVar(&o.Job, "job", "nicmux-rehearse", "the allocation's NOMAD_JOB_ID (and group name)")
	if _, code, ok := f.parseN(e, args, 0, 0, ""); !ok {
		return code
	}
	if *list {
		printReleases(e.stdout, c.asJSON)
		return exitOK
	}
	if (c.conflist == "") == (*net == "") {
		return f.fail(e, "give -conflist FILE, or -net NAME (with -confdir), one of them")
	}
	var err error
	if o.Releases, err = lookupReleases(*releases); err != nil {
		return f.fail(e, "-nomad: %v", err)
	}
	o.File = c.conflist
	if *net != "" {
		if o.File, err = rehearse.FindNetwork(*confDir, *net); err != nil {
			fmt.Fprintf(e.stderr, "nicmux rehearse: %v\n", err)
			return exitFail
		}
	}
	o.CNIPath = c.path(e)
	return rehearseRun(e, o, c.asJSON)
}

func lookupReleases(s string) ([]nomad.Release, error) {
	if s == "all" {
		return nomad.Releases(), nil
	}
	var out []nomad.Release
	for _, v := range strings.Split(s, ",") {
		r, err := nomad.Lookup(strings.TrimSpace(v))
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// rehearseRun rehearses, stopping on SIGINT or SIGTERM, and prints.
func rehearseRun(e *env, o rehearse.Options, asJSON bool) int {
	data, err := os.ReadFile(o.File)
	if err != nil {
		fmt.Fprintf(e.stderr, "nicmux rehearse: %v\n", err)
		return exitFail
	}
	o.Data = data
	fmt.Fprintln(e.stderr, "nicmux rehearse: the attachments are real: bridges and iptables rules may be created and addresses are taken from the real pools until each rehearsal is cleaned up. Use a test node or a maintenance window.")
	ctx, stop, done := interruptible(e.stderr)
	defer done()
	o.Stop = stop
	if !asJSON {
		o.Done = func(out rehearse.Outcome) { printOutcome(e.stdout, out) }
	}
	rep, err := rehearse.Run(ctx, o)
	if err != nil && rep == nil {
		fmt.Fprintf(e.stderr, "nicmux rehearse: %v\n", err)
		return exitFail
	}
	if asJSON {
		printJSON(e.stdout, rep)
	} else {
		printSummary(e.stdout, rep)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "nicmux rehearse: %v\n", err)
	}
	if err != nil || !rep.Pass() {
		return exitFail
	}
	return exitOK
}

// interruptible returns the context plugin calls run under and the channel
// that stops the rehearsal: the first SIGINT or SIGTERM closes the
// channel, the second cancels the context. done ends the watch.
func interruptible(w io.Writer) (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	stop, quit := make(chan struct{}), make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		defer cancel()
		select {
		case s := <-sigs:
			fmt.Fprintf(w, "nicmux rehearse: %v: stopping after the plugin call under way, then cleaning up (signal again to kill that call)\n", s)
			close(stop)
		case <-quit:
			return
		}
		select {
		case <-sigs:
			fmt.Fprintln(w, "nicmux rehearse: killing the plugin call under way, then cleaning up")
		case <-quit:
		}
	}()
	return ctx, stop, func() { signal.Stop(sigs); close(quit) }
}

func printReleases(w io.Writer, asJSON bool) {
	if asJSON {
		printJSON(w, nomad.Releases())
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NOMAD\tGO-CNI\tCNI\tWHAT CHANGES")
	for _, r := range nomad.Releases() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Version, r.GoCNI, r.CNI, r.Change)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "Enterprise-only releases (1.8.5+, 1.9.8+) are not modelled; Enterprise 1.8.10+ runs CHECK as 1.9.5 does.")
}

// printOutcome prints a release's line, and for a failure what led to it.
func printOutcome(w io.Writer, o rehearse.Outcome) {
	name := "Nomad " + o.Release.Version
	if o.Release.As != "" {
		name += " (as " + o.Release.As + ")"
	}
	fmt.Fprintf(w, "%-24s %s\n", name, verdictWords(o))
	for _, s := range o.Steps {
		// A passing ADD has a note when a try failed: worth seeing.
		shown := !s.OK || strings.HasPrefix(s.Name, rehearse.Rebuild) || s.Name == rehearse.StepAdd
		if shown && s.Note != "" {
			fmt.Fprintf(w, "    %s: %s\n", s.Name, s.Note)
		}
	}
	held := "leaked"
	if o.Interrupted {
		held = "held when interrupted"
	}
	for _, l := range o.Leaks {
		fmt.Fprintf(w, "    %s: %s\n", held, l)
	}
	for _, l := range o.Left {
		fmt.Fprintf(w, "    LEFT BEHIND (remove by hand): %s\n", l)
	}
}

// verdictWords says how a release's rehearsal ended.
func verdictWords(o rehearse.Outcome) string {
	switch {
	case o.Interrupted:
		return "INTERRUPTED"
	case o.Pass && o.Address != nil:
		return fmt.Sprintf("pass: address %s %s", o.Address.Interface, o.Address.IP)
	case o.Pass:
		return "pass"
	}
	plugin := ""
	if o.Plugin != "" && !strings.Contains(o.Message, strconv.Quote(o.Plugin)) {
		plugin = "plugin " + o.Plugin + ": "
	}
	return fmt.Sprintf("FAIL at %s: %s%s", o.Step, plugin, o.Message)
}

func printSummary(w io.Writer, rep *rehearse.Report) {
	var cleaned []string
	for _, o := range rep.Outcomes {
		for _, c := range o.CleanedUp {
			if !slices.Contains(cleaned, c) {
				cleaned = append(cleaned, c)
			}
		}
	}
	fp := rep.Fingerprint
	gate := "closed"
	if fp.CheckGate {
		gate = "open"
	}
	fmt.Fprintf(w, "fingerprint: bridge %s reports %q: CHECK gate %s\n", orDash(fp.Bridge), fp.Versions["bridge"], gate)
	fmt.Fprintf(w, "cleaned up after each release: %s\n", strings.Join(cleaned, "; "))
	if rep.Interrupted {
		fmt.Fprintln(w, "interrupted: the releases left were not rehearsed; what the rehearsal made is removed")
	}
	fmt.Fprintf(w, "%s (network %q): %d of %d releases pass\n", rep.File, rep.Network, passed(rep), len(rep.Outcomes))
}

// jobArgs is a repeatable KEY=VALUE flag.
type jobArgs map[string]string

func (a jobArgs) String() string { return "" }

func (a jobArgs) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", s)
	}
	a[k] = v
	return nil
}

// portFlags is a repeatable HOST:CONTAINER[/PROTO] flag.
type portFlags []rehearse.PortMapping

func (p *portFlags) String() string { return "" }

func (p *portFlags) Set(s string) error {
	spec, proto, _ := strings.Cut(s, "/")
	h, c, ok := strings.Cut(spec, ":")
	host, err1 := strconv.ParseUint(h, 10, 16)
	cont, err2 := strconv.ParseUint(c, 10, 16)
	if !ok || err1 != nil || err2 != nil || host == 0 || cont == 0 {
		return fmt.Errorf("%q is not HOST:CONTAINER[/PROTO] with ports 1-65535", s)
	}
	protos := []string{"tcp", "udp"}
	if proto != "" {
		protos = []string{proto}
	}
	for _, pr := range protos {
		*p = append(*p, rehearse.PortMapping{HostPort: int32(host), ContainerPort: int32(cont), Protocol: pr})
	}
	return nil
}
