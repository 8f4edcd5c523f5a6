package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/inspect"
	"github.com/nicmux/nicmux/mux"
	"github.com/nicmux/nicmux/ops"
	"github.com/nicmux/nicmux/state"
)

// The operator's commands on nicmux's state: show reads it (package
// inspect), gc releases the containers whose namespace is gone and forget
// is the last resort for a record nothing releases (package ops).

const showHelp = `Lists the containers nicmux holds state for: for each, its status, the
conflist and attachment set that attached it, its network namespace (still
there? still the one ADD attached?), whether ADD completed, and each
interface's network, chain, MAC, addresses, state and age. With a
CONTAINER_ID, that container in detail, with each chain's configuration as
ADD ran it.

Statuses: live (ADD complete, namespace there), incomplete (ADD running, or
failed with a rollback that could not release everything), partly released
(a DEL failed part way), stale (the namespace is gone or was made again:
nicmux gc releases it), unreadable (the record cannot be read: see the
error), empty (a folder a crash left before ADD recorded anything).
Interfaces are attached, pending (held, to be released) or released.

show only reads: it takes no lock and works on a read-only state folder.
The state folder is -state-dir, else the stateDir of -conflist's nicmux
entry, else ` + conf.DefaultStateDir + `.

Exit status: 0 ok, 1 the state folder does not exist, a record cannot be
read or CONTAINER_ID has no state, 2 usage error.`

const gcHelp = `Releases every container of the conflist's network whose network namespace
no longer exists, or is not the one ADD attached (it was made again), exactly
as DEL would: the same release, under the same container locks, so it is
safe beside a running Nomad and from cron. Then it forwards GC to the
attachment files' chains (cniVersion 1.1.0 and later) with the attachments
nicmux still records, as the CNI GC verb does, so that host-local and other
plugins drop what no container holds; disableGC on the entry stops that.

A record that cannot be read is reported and never released (see nicmux
show, then DEL it or nicmux forget it). gc logs to the entry's logFile, as
the verbs do.

Exit status: 0 ok, 1 a release failed, a record cannot be read or the
forwarded GC failed, 2 usage error.`

const forgetHelp = `For a record that DEL cannot release (a chain whose recorded configuration
its plugin rejects, a plugin that fails on what is left): prints what the
record says was created (interfaces, addresses, chains, namespace), then
releases what it can, as DEL would (a chain that fails with its recorded
configuration is retried with the attachment file's, so fixing the file
first lets it converge), and removes the record.

If something could not be released, the record is kept and the exit status
is 1, unless -force: the record is then dropped, and forget prints what may
be left (links, leases, iptables rules) with the commands to remove them by
hand. forget refuses a container whose interfaces are up in the namespace
ADD attached: that is the runtime's to delete.

Exit status: 0 the record is gone, 1 it is kept (or there was none, or the
container is live), 2 usage error.`

// opsPlugin is the mux Plugin the operator's commands run: delegates'
// stderr, and without a logFile nicmux's warnings, go to the command's.
func opsPlugin(e *env) *mux.Plugin { return &mux.Plugin{Stdout: io.Discard, Stderr: e.stderr} }

// loadEntry reads nicmux's entry from the conflist, or says why it cannot.
func loadEntry(e *env, cmd, file string) (*entry, bool) {
	en, f := readEntry(file)
	if f != nil {
		fmt.Fprintf(e.stderr, "nicmux %s: %s\n", cmd, f)
		if f.Hint != "" {
			fmt.Fprintf(e.stderr, "\thint: %s\n", f.Hint)
		}
		return nil, false
	}
	return en, true
}

// stateDirOf is the state folder an operator command reads: stateDir,
// else the stateDir of conflist's nicmux entry, else nicmux's default. ok
// is false when the conflist's entry cannot be read, which it says.
func stateDirOf(e *env, cmd, stateDir, conflist string) (dir string, ok bool) {
	if conflist != "" {
		en, ok := loadEntry(e, cmd, conflist)
		if !ok {
			return "", false
		}
		nc, err := en.netConf()
		if nc == nil {
			fmt.Fprintf(e.stderr, "nicmux %s: %s: nicmux's entry: %v\n", cmd, conflist, err)
			return "", false
		}
		stateDir = nc.StateDir
	}
	return cmp.Or(stateDir, conf.DefaultStateDir), true
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// --- show -----------------------------------------------------------------

func runShow(e *env, args []string) int {
	f := newFlags("show", showHelp)
	stateDir := f.String("state-dir", "", "the state folder `DIR` to read")
	conflist := f.String("conflist", "", "the runtime's conflist `FILE`: read its nicmux entry's stateDir")
	asJSON := f.Bool("json", false, "print one JSON object")
	rest, code, ok := f.parseN(e, args, 0, 1, "one CONTAINER_ID")
	if !ok {
		return code
	}
	if *stateDir != "" && *conflist != "" {
		return f.fail(e, "give -state-dir or -conflist, not both")
	}
	dir, ok := stateDirOf(e, "show", *stateDir, *conflist)
	if !ok {
		return exitFail
	}
	id := ""
	if len(rest) == 1 {
		id = rest[0]
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		// A typo, or the wrong conflist: not an empty folder.
		fmt.Fprintf(e.stderr, "nicmux show: the state folder %s does not exist: nicmux has recorded nothing there "+
			"(the folder is -state-dir, else the stateDir of -conflist's nicmux entry, else %s)\n", dir, conf.DefaultStateDir)
		return exitFail
	}
	inv, err := inspect.Inspect(dir, id)
	if err != nil {
		fmt.Fprintf(e.stderr, "nicmux show: %v\n", err)
		return exitFail
	}
	if *asJSON {
		printJSON(e.stdout, inv)
	} else {
		printInventory(e.stdout, inv, id != "", time.Now())
	}
	for _, c := range inv.Containers {
		if c.Status == inspect.StatusUnreadable {
			return exitFail
		}
	}
	return exitOK
}

// printInventory prints what show found: a block per container, its
// interfaces in a table.
func printInventory(w io.Writer, inv *inspect.Inventory, detail bool, now time.Time) {
	if len(inv.Containers) == 0 {
		fmt.Fprintf(w, "no container in %s\n", inv.StateDir)
		return
	}
	count := map[string]int{}
	var order []string
	for i, c := range inv.Containers {
		if i > 0 {
			fmt.Fprintln(w)
		}
		printContainer(w, c, detail, now)
		if count[c.Status] == 0 {
			order = append(order, c.Status)
		}
		count[c.Status]++
	}
	if detail {
		return
	}
	var parts []string
	for _, s := range order {
		parts = append(parts, fmt.Sprintf("%d %s", count[s], s))
	}
	fmt.Fprintf(w, "\n%d %s in %s: %s\n", len(inv.Containers), plural(len(inv.Containers), "container"), inv.StateDir, strings.Join(parts, ", "))
}

func printContainer(w io.Writer, c *inspect.Container, detail bool, now time.Time) {
	var about []string
	if c.List != "" {
		about = append(about, "list "+c.List)
	}
	if c.Set != "" {
		about = append(about, "set "+c.Set)
	}
	if !c.Created.IsZero() {
		about = append(about, "created "+age(now.Sub(c.Created))+" ago")
	}
	fmt.Fprintf(w, "%s  %s", c.ContainerID, c.Status)
	if len(about) > 0 {
		fmt.Fprintf(w, "  (%s)", strings.Join(about, ", "))
	}
	fmt.Fprintln(w)
	if c.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", c.Error)
	}
	if c.Status == inspect.StatusEmpty {
		fmt.Fprintln(w, "  a folder without a plan: a crash before ADD recorded one; no delegate ran (DEL or nicmux gc removes it)")
		return
	}
	fmt.Fprintf(w, "  netns %s: %s\n", c.NetNS.Path, netnsWords(c.NetNS))
	if !c.Complete {
		fmt.Fprintln(w, "  ADD not complete")
	}
	if detail {
		fmt.Fprintf(w, "  attachment file %s, runtime ifname %s, record format %d\n", orDash(c.AttachmentFile), orDash(c.IfName), c.Format)
	}
	printInterfaces(w, "  ", c.Interfaces, now)
	if detail {
		for _, it := range c.Interfaces {
			printChainConfig(w, it)
		}
	}
}

func netnsWords(ns inspect.NetNSStatus) string {
	switch {
	case ns.Error != "":
		return "cannot tell: " + ns.Error
	case ns.Attached:
		return "the namespace ADD attached"
	case ns.Exists:
		return "another namespace than the one ADD attached (made again)"
	}
	return "gone"
}

func printInterfaces(w io.Writer, indent string, ifs []inspect.Interface, now time.Time) {
	if len(ifs) == 0 {
		fmt.Fprintf(w, "%sno interface recorded\n", indent)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%sIFNAME\tNETWORK\tCHAIN\tADDRESSES\tMAC\tSTATE\tAGE\n", indent)
	var notes []string
	for _, it := range ifs {
		addrs := strings.Join(it.Addresses, ",")
		switch {
		case it.State == inspect.IfReleased:
			addrs = "-"
		case !it.ResultKnown:
			addrs = "result unknown"
			if it.ResultError != "" {
				notes = append(notes, fmt.Sprintf("%s%s: the result record: %s", indent, it.IfName, it.ResultError))
			}
		case addrs == "":
			addrs = "none"
		}
		saved := "-"
		if !it.Saved.IsZero() {
			saved = age(now.Sub(it.Saved))
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\n", indent, it.IfName, orDash(it.Network), chainWords(it.Chain), addrs, orDash(it.MAC), it.State, saved)
	}
	_ = tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

func printChainConfig(w io.Writer, it inspect.Interface) {
	fmt.Fprintf(w, "  %s: chain at cniVersion %s", it.IfName, orDash(it.CNIVersion))
	if it.CNIArgs != "" {
		fmt.Fprintf(w, ", CNI_ARGS %s", it.CNIArgs)
	}
	if len(it.CapabilityArgs) > 0 {
		b, _ := json.Marshal(it.CapabilityArgs)
		fmt.Fprintf(w, ", capability arguments %s", b)
	}
	fmt.Fprintln(w)
	if len(it.Config) == 0 {
		fmt.Fprintln(w, "    (no configuration recorded)")
		return
	}
	// Indented as recorded, keys in their order.
	var b bytes.Buffer
	if json.Indent(&b, it.Config, "    ", "  ") != nil {
		fmt.Fprintf(w, "    %s\n", it.Config)
		return
	}
	fmt.Fprintf(w, "    %s\n", b.Bytes())
}

// chainWords writes a chain as its plugin types, each IPAM plugin in
// parentheses: "bridge(host-local) portmap".
func chainWords(chain []inspect.ChainPlugin) string {
	if len(chain) == 0 {
		return "-"
	}
	var out []string
	for _, p := range chain {
		s := orDash(p.Type)
		if p.IPAM != "" {
			s += "(" + p.IPAM + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age words a duration the way ps and nomad do: the two largest units.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// --- gc -------------------------------------------------------------------

func runGC(e *env, args []string) int {
	f, c := deploymentFlags("gc", gcHelp, "print one JSON object")
	dryRun := f.Bool("dry-run", false, "say what would be released, release nothing, forward no GC")
	if _, code, ok := f.parseN(e, args, 0, 0, ""); !ok {
		return code
	}
	if c.conflist == "" {
		return f.fail(e, "give -conflist: gc releases the containers of that conflist's network")
	}
	en, ok := loadEntry(e, "gc", c.conflist)
	if !ok {
		return exitFail
	}
	r, err := ops.CollectStale(context.Background(), opsPlugin(e), ops.Request{Entry: en.bytes, CNIPath: c.path(e)}, *dryRun)
	if r == nil {
		fmt.Fprintf(e.stderr, "nicmux gc: %s: %v\n", c.conflist, err)
		return exitFail
	}
	if c.asJSON {
		printJSON(e.stdout, r)
	} else {
		printGC(e.stdout, r)
	}
	if err != nil {
		return exitFail
	}
	return exitOK
}

func printGC(w io.Writer, r *ops.GCReport) {
	verb := "released"
	if r.DryRun {
		verb = "would release"
	}
	for _, o := range r.Released {
		fmt.Fprintf(w, "%s %s%s: %s\n", verb, o.ContainerID, ifList(o.Interfaces), o.Reason)
	}
	for _, o := range r.Failed {
		fmt.Fprintf(w, "failed %s: %s: %s\n\tkept: a later DEL or nicmux gc retries; nicmux show %s tells more\n", o.ContainerID, o.Reason, o.Error, o.ContainerID)
	}
	for _, o := range r.Unreadable {
		fmt.Fprintf(w, "unreadable %s: %s\n\tnever released by gc: see nicmux show %s, then DEL it or nicmux forget it\n", o.ContainerID, o.Error, o.ContainerID)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
	switch {
	case r.DryRun:
		fmt.Fprintln(w, "dry run: nothing released, no GC forwarded to the chains")
	case r.Forwarded && len(r.ForwardErrors) == 0:
		fmt.Fprintf(w, "GC forwarded to the chains of %s %s\n", plural(len(r.ForwardedTo), "network"), strings.Join(r.ForwardedTo, ", "))
	case r.Forwarded:
		for _, e := range r.ForwardErrors {
			fmt.Fprintf(w, "forwarded GC failed: %s\n", e)
		}
	default:
		for _, e := range r.ForwardErrors { // the attachment files that cannot be read
			fmt.Fprintf(w, "error: %s\n", e)
		}
		fmt.Fprintln(w, "GC not forwarded to the chains: "+r.NotForwarded)
	}
	fmt.Fprintf(w, "nicmux gc (list %s, %s): %d %s, %d failed, %d unreadable, %d kept\n", r.List, r.StateDir,
		len(r.Released), verb, len(r.Failed), len(r.Unreadable), r.Kept)
}

func ifList(ifnames []string) string {
	if len(ifnames) == 0 {
		return ""
	}
	return " (" + strings.Join(ifnames, ", ") + ")"
}

// --- forget ---------------------------------------------------------------

func runForget(e *env, args []string) int {
	f, c := deploymentFlags("forget", forgetHelp, "print one JSON object")
	force := f.Bool("force", false, "drop the record even if not everything could be released, and print what may be left")
	rest, code, ok := f.parseN(e, args, 1, 1, "one CONTAINER_ID")
	if !ok {
		return code
	}
	if c.conflist == "" {
		return f.fail(e, "give -conflist: forget releases with that conflist's nicmux entry (its stateDir, attachment file and log)")
	}
	if err := state.ValidateID(rest[0]); err != nil {
		return f.fail(e, "%v", err)
	}
	en, ok := loadEntry(e, "forget", c.conflist)
	if !ok {
		return exitFail
	}
	r, err := ops.Forget(context.Background(), opsPlugin(e), ops.Request{Entry: en.bytes, CNIPath: c.path(e)}, rest[0], *force)
	if r == nil {
		fmt.Fprintf(e.stderr, "nicmux forget: %s: %v\n", c.conflist, err)
		return exitFail
	}
	if c.asJSON {
		out := struct {
			*ops.ForgetReport
			Error string `json:"error,omitempty"`
		}{ForgetReport: r}
		if err != nil {
			out.Error = err.Error()
		}
		printJSON(e.stdout, out)
	} else {
		printForget(e.stdout, r, err, time.Now())
	}
	if err != nil {
		if !c.asJSON {
			fmt.Fprintf(e.stderr, "nicmux forget: %v\n", err)
		}
		return exitFail
	}
	return exitOK
}

func printForget(w io.Writer, r *ops.ForgetReport, err error, now time.Time) {
	if r.Record == nil {
		return // nothing recorded: the error says so
	}
	c := r.Record
	if c.Status == inspect.StatusEmpty {
		fmt.Fprintf(w, "container %s: a folder without a plan (no delegate ran): removed\n", c.ContainerID)
		return
	}
	fmt.Fprintf(w, "container %s (%s): the record says ADD", c.ContainerID, c.Status)
	if !c.Complete {
		fmt.Fprint(w, " (not complete)")
	}
	fmt.Fprintf(w, " created, in netns %s (%s):\n", c.NetNS.Path, netnsWords(c.NetNS))
	if c.Error != "" {
		fmt.Fprintf(w, "  the record cannot be read entirely: %s\n", c.Error)
	}
	printInterfaces(w, "  ", c.Interfaces, now)
	if errors.Is(err, ops.ErrLive) {
		return
	}
	if len(r.Released) > 0 {
		fmt.Fprintf(w, "released now: %s\n", strings.Join(r.Released, ", "))
	}
	for _, l := range r.Left {
		what := "not released"
		if l.Abandoned {
			what = "nothing can release it"
		}
		fmt.Fprintf(w, "%s: %s: %s\n", l.IfName, what, l.Error)
	}
	switch {
	case r.Dropped && len(r.Left) == 0:
		fmt.Fprintln(w, "everything released: the record is removed")
		return
	case r.Dropped:
		fmt.Fprintln(w, "the record is dropped. What may be left, to clean up by hand:")
	default:
		fmt.Fprintln(w, "the record is kept. Fix the cause and run nicmux forget again (or DEL: a chain that fails")
		fmt.Fprintln(w, "with its recorded configuration is retried with the attachment file's), or drop the")
		fmt.Fprintln(w, "record with nicmux forget -force and clean up by hand what may then be left:")
	}
	for _, l := range r.Left {
		addrs := strings.Join(l.Addresses, ", ")
		if !l.ResultKnown {
			addrs = "addresses unknown (no result recorded)"
		}
		fmt.Fprintf(w, "  %s (network %s, chain %s): %s\n", l.IfName, orDash(l.Network), chainWords(l.Chain), addrs)
		for _, h := range l.Hints {
			fmt.Fprintf(w, "    - %s\n", h)
		}
	}
}
