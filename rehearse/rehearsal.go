package rehearse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/nomad"
)

// Steps of a rehearsal, in the order they run. The rebuild after a failed
// CHECK repeats the setup's steps, named with the Rebuild prefix.
const (
	StepNetNS          = "netns"
	StepLoad           = "load"
	StepStatus         = "STATUS"
	StepAdd            = "ADD"
	StepAddress        = "address"
	StepCheck          = "CHECK"
	Rebuild            = "rebuild "
	StepTeardownStatus = "teardown STATUS"
	StepDel            = "DEL"
	StepLeaks          = "leak check"
	StepInterrupted    = "interrupted"
)

// Step is one step of a rehearsal as it went.
type Step struct {
	Name    string `json:"step"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"`
	// Plugin is the type of the plugin that failed, if one did.
	Plugin  string `json:"plugin,omitempty"`
	Message string `json:"message,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Outcome is one release's rehearsal.
type Outcome struct {
	Release     nomad.Release `json:"release"`
	ContainerID string        `json:"containerID"`
	Pass        bool          `json:"pass"`
	// Step, Plugin and Message are the first failed step's.
	Step    string         `json:"step,omitempty"`
	Plugin  string         `json:"plugin,omitempty"`
	Message string         `json:"message,omitempty"`
	Address *nomad.Address `json:"address,omitempty"`
	Steps   []Step         `json:"steps"`
	// Leaks are what the container held after the client's teardown;
	// CleanedUp what the rehearsal then removed (its netns, a bridge the
	// bridge plugin made, leaks); Left what it could not.
	Leaks       []string `json:"leaks"`
	CleanedUp   []string `json:"cleanedUp"`
	Left        []string `json:"left"`
	Interrupted bool     `json:"interrupted,omitempty"`
}

// rehearsal is one release's run.
type rehearsal struct {
	opts    *Options
	fp      Fingerprint
	release nomad.Release
	id      string
	netns   string
	// cacheDir is libcni's cache of this rehearsal: the client's
	// /var/lib/cni, where CHECK and DEL find ADD's result.
	cacheDir string
	c        *client
	finder   *leakFinder
	out      Outcome
	// made: the netns exists; deleted: a DEL went through since the
	// last ADD.
	made, deleted bool
}

func (r *rehearsal) run(ctx context.Context) Outcome {
	r.out = Outcome{Release: r.release, ContainerID: r.id, Leaks: []string{}, CleanedUp: []string{}, Left: []string{}}
	if r.begin() {
		if r.setup(ctx, "") {
			r.restart(ctx)
		}
		r.teardown(ctx)
	}
	r.finish(context.WithoutCancel(ctx))
	r.verdict()
	return r.out
}

// begin notes the host's links, makes the netns and loads the client.
func (r *rehearsal) begin() bool {
	before, err := snapshotHost()
	if err == nil {
		err = createNetNS(r.netns)
	}
	r.made = err == nil
	if !r.step(Step{Name: StepNetNS, Note: r.netns}, err) {
		return false
	}
	r.finder = &leakFinder{id: r.id, netnsDir: r.netns, before: before, places: placesOf(r.opts.Data),
		forget: nicmuxForget(r.opts.CNIPath, r.opts.File, r.id)}
	r.c, err = newClient(r.release, r.opts.File, r.opts.Data, r.opts.CNIPath, r.cacheDir)
	return r.step(Step{Name: StepLoad}, err)
}

// step records s, failed with err's message when err is not nil, and
// reports whether it passed.
func (r *rehearsal) step(s Step, err error) bool {
	s.OK = err == nil
	if err != nil {
		s.Message = strings.TrimSpace(err.Error())
		if s.Plugin == "" && r.c != nil {
			s.Plugin = r.c.failedPlugin()
		}
	}
	r.out.Steps = append(r.out.Steps, s)
	return s.OK
}

// interrupted records that Stop ended the rehearsal before step.
func (r *rehearsal) interrupted(step string) bool {
	if r.out.Interrupted || !stopped(r.opts.Stop) {
		return r.out.Interrupted
	}
	r.out.Interrupted = true
	r.step(Step{Name: StepInterrupted, Note: "stopped before " + step}, errStopped)
	return true
}

// rt is the runtime configuration of every call: DEL gets no CNI_ARGS.
func (r *rehearsal) rt(withArgs bool) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: r.id, NetNS: r.netns, IfName: nomad.IfName,
		CapabilityArgs: map[string]any{"portMappings": r.opts.Ports}}
	if withArgs {
		id := nomad.Identity{Region: "global", Namespace: r.opts.Namespace, Job: r.opts.Job, Group: r.opts.Job, AllocID: r.id}
		rt.Args = r.release.Args(id, r.opts.JobArgs)
	}
	return rt
}

// setup is the client's network setup: STATUS, ADD with its retries, the
// result read by go-cni and the address chosen. prefix names the steps of
// a rebuild.
func (r *rehearsal) setup(ctx context.Context, prefix string) bool {
	if r.interrupted(prefix + StepStatus) {
		return false
	}
	if !r.step(Step{Name: prefix + StepStatus, Skipped: !r.release.CallsStatus(r.c.list.CNIVersion)}, r.c.status(ctx)) {
		return false
	}
	res, ok := r.add(ctx, prefix)
	if !ok {
		return false
	}
	a, err := r.release.Address(res)
	s := Step{Name: prefix + StepAddress, Note: "go-cni sees " + describe(res)}
	if err == nil {
		r.out.Address = &a
		s.Note = fmt.Sprintf("%s %s%s; %s", a.Interface, a.IP, ipv6Note(a), s.Note)
	}
	return r.step(s, err)
}

// add tries ADD as the client does: up to nomad.SetupTries times, with no
// DEL between; the step fails with the first try's error, its plugin's.
func (r *rehearsal) add(ctx context.Context, prefix string) (*nomad.Result, bool) {
	var tries []string
	var first Step
	for try := 1; try <= nomad.SetupTries; try++ {
		res, err := r.c.add(ctx, r.rt(true))
		if err == nil {
			return res, r.step(Step{Name: prefix + StepAdd, Note: strings.Join(tries, "; ")}, nil)
		}
		if try == 1 {
			first = Step{Name: prefix + StepAdd, Plugin: r.c.failedPlugin()}
		}
		tries = append(tries, fmt.Sprintf("try %d: %v", try, err))
		if errors.Is(err, nomad.ErrPanic) {
			tries = append(tries, "the client crashes: no retry")
			break
		}
		if try < nomad.SetupTries && !r.sleep(nomad.SetupInterval) {
			break
		}
	}
	first.Note = strings.Join(tries, "; ")
	first.Message = strings.TrimSpace(strings.TrimPrefix(tries[0], "try 1: "))
	r.out.Steps = append(r.out.Steps, first)
	return nil, false
}

func (r *rehearsal) sleep(d time.Duration) bool {
	select {
	case <-r.opts.Stop:
		return false
	case <-time.After(d):
		return true
	}
}

// restart is a client restart that finds the netns: a fresh client runs
// CHECK where the release does and the gate is open; when CHECK fails, the
// netns is destroyed without DEL, made again, and set up again.
func (r *rehearsal) restart(ctx context.Context) {
	if r.interrupted(StepCheck) {
		return
	}
	var skip string
	switch {
	case !r.release.RunsCheck():
		skip = "Nomad " + r.release.Version + " runs no CHECK"
	case !r.fp.CheckGate:
		skip = fmt.Sprintf("the CHECK gate is closed: bridge reports %q, CHECK needs %s or later", r.fp.Versions["bridge"], nomad.CheckGateBridge)
	}
	if skip != "" {
		r.step(Step{Name: StepCheck, Skipped: true, Note: skip}, nil)
		return
	}
	c, err := newClient(r.release, r.opts.File, r.opts.Data, r.opts.CNIPath, r.cacheDir)
	if err == nil {
		r.c = c
		err = c.check(ctx, r.rt(true))
	}
	if r.step(Step{Name: StepCheck}, err) {
		return
	}
	if err := r.rebuildNetNS(); err != nil {
		r.step(Step{Name: Rebuild + StepNetNS}, err)
		return
	}
	r.setup(ctx, Rebuild)
}

func (r *rehearsal) rebuildNetNS() error {
	r.made = false
	if err := destroyNetNS(r.netns); err != nil {
		return err
	}
	err := createNetNS(r.netns)
	r.made = err == nil
	return err
}

// teardown is the client's: STATUS, then DEL, which a STATUS error skips.
func (r *rehearsal) teardown(ctx context.Context) {
	if r.interrupted(StepTeardownStatus) {
		return
	}
	err := r.c.status(ctx)
	s := Step{Name: StepTeardownStatus, Skipped: !r.release.CallsStatus(r.c.list.CNIVersion)}
	if err != nil {
		s.Note = "the client skips DEL: what the allocation holds leaks"
	}
	if !r.step(s, err) {
		return
	}
	err = r.c.del(ctx, r.rt(false))
	r.deleted = err == nil
	r.step(Step{Name: StepDel}, err)
}

// finish checks for leaks and cleans up what the rehearsal made, whatever
// happened before: a DEL of its own when the client's did not go through,
// the netns, a bridge the bridge plugin made, then each leak.
func (r *rehearsal) finish(ctx context.Context) {
	if r.finder == nil {
		return
	}
	leaks := r.finder.find(ctx)
	r.out.Leaks = strs(leaks)
	if !r.out.Interrupted {
		r.step(Step{Name: StepLeaks}, leakError(leaks))
	}
	if r.made && (!r.deleted || len(leaks) > 0) && r.c != nil {
		r.cleaned("DEL (the rehearsal's own)", r.c.del(ctx, r.rt(false)))
	}
	if r.made {
		peers := r.finder.peers()
		r.cleaned("its netns", destroyNetNS(r.netns))
		r.finder.netnsDir = ""
		waitGone(peers, netnsGoneTimeout)
	}
	for _, br := range r.finder.madeBridges() {
		r.cleaned("bridge "+br.Attrs().Name+" (the bridge plugin makes it and leaves it)", netlink.LinkDel(br))
	}
	for _, l := range r.finder.find(ctx) {
		if l.undo != nil {
			r.cleaned(l.String(), l.undo(ctx))
		}
	}
	r.out.Left = strs(r.finder.find(ctx))
	for _, br := range r.finder.bridges() {
		r.out.Left = append(r.out.Left, "bridge "+br+" made by the rehearsal, with ports")
	}
	_ = os.RemoveAll(r.cacheDir)
}

// netnsGoneTimeout bounds the wait for the links of a destroyed netns to
// go: the kernel tears a namespace down asynchronously once it is
// unmounted.
const netnsGoneTimeout = 5 * time.Second

func (r *rehearsal) cleaned(what string, err error) {
	if err != nil {
		what += ": " + err.Error()
	}
	r.out.CleanedUp = append(r.out.CleanedUp, what)
}

// verdict is the first failed step; with none, the release passes.
func (r *rehearsal) verdict() {
	for _, s := range r.out.Steps {
		if !s.OK {
			r.out.Step, r.out.Plugin, r.out.Message = s.Name, s.Plugin, s.Message
			break
		}
	}
	if r.out.Step == "" && len(r.out.Left) > 0 {
		r.out.Step, r.out.Message = StepLeaks, "left after the cleanup: "+strings.Join(r.out.Left, "; ")
	}
	r.out.Pass = r.out.Step == ""
}

func leakError(leaks []Leak) error {
	if len(leaks) == 0 {
		return nil
	}
	return errors.New("left after the teardown: " + strings.Join(strs(leaks), "; "))
}

func strs(leaks []Leak) []string {
	out := []string{}
	for _, l := range leaks {
		out = append(out, l.String())
	}
	return out
}

func ipv6Note(a nomad.Address) string {
	if a.IPv6 == "" || a.IPv6 == a.IP {
		return ""
	}
	return " (IPv6 " + a.IPv6 + ")"
}

// describe writes go-cni's view of a result: each interface, whether it
// has a sandbox, and its IPs.
func describe(res *nomad.Result) string {
	var parts []string
	for _, n := range res.Names() {
		i := res.Interfaces[n]
		var ips []string
		for _, ip := range i.IPs {
			ips = append(ips, ip.String())
		}
		where := "host"
		if i.Sandbox != "" {
			where = "sandbox"
		}
		if len(ips) == 0 {
			ips = []string{"no IP"}
		}
		parts = append(parts, fmt.Sprintf("%s (%s, %s)", n, where, strings.Join(ips, " ")))
	}
	return strings.Join(parts, ", ")
}
