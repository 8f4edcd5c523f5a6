// Package delegate runs one interface's delegate plugin chain the way libcni
// runs a network configuration list: each plugin gets the chain's name and
// cniVersion, the previous plugin's result as prevResult, and the runtime's
// capability arguments it declares in runtimeConfig.
package delegate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
)

// Runner runs delegate chains.
type Runner struct {
	// Path is where plugin binaries are looked up (the runtime's CNI_PATH).
	Path []string
	// Exec runs plugins; nil runs the binaries found in Path.
	Exec Exec
	// Stderr receives the plugins' standard error when Exec is nil.
	Stderr io.Writer
	// NoPrestart turns off starting plugins ahead (see Call).
	NoPrestart bool
	// AheadLimit bounds starting ahead: a plugin is started ahead only
	// while fewer of the runner's plugin processes are alive; 0 means the
	// number of CPUs nicmux may run on. Beyond that a process started
	// early only takes CPU from those doing work.
	AheadLimit int
	// Observe, if set, is called as each plugin process ends, with when it
	// was started (ahead or not) and when it ended.
	Observe func(start, end time.Time)

	live atomic.Int32 // plugin processes alive
}

func (r *Runner) aheadLimit() int32 {
	if r.AheadLimit > 0 {
		return int32(r.AheadLimit)
	}
	return int32(runtime.NumCPU())
}

// ended does the bookkeeping of a plugin process that ended.
func (r *Runner) ended(start time.Time) {
	r.live.Add(-1)
	if r.Observe != nil {
		r.Observe(start, time.Now())
	}
}

// Env is what a chain gets from the runtime besides its configuration.
type Env struct {
	ContainerID string
	NetNS       string
	IfName      string
	// CNIArgs is passed on verbatim as CNI_ARGS.
	CNIArgs string
	// CapabilityArgs are the runtime's capability arguments; each plugin
	// gets those its configuration declares.
	CapabilityArgs map[string]json.RawMessage
}

// PluginError is a failure of one plugin of a chain.
type PluginError struct {
	Plugin string
	// Index is the plugin's position in its chain.
	Index int
	Err   error
}

func (e *PluginError) Error() string { return "plugin " + e.Plugin + ": " + e.Err.Error() }
func (e *PluginError) Unwrap() error { return e.Err }

// Attempted returns how many plugins of a chain may hold resources after an
// ADD that failed with err: those before the failed one, and the failed one
// itself unless it never ran (its binary was not found).
func Attempted(err error) int {
	var pe *PluginError
	if !errors.As(err, &pe) {
		return -1
	}
	var nf *NotFoundError
	if errors.As(pe.Err, &nf) {
		return pe.Index
	}
	return pe.Index + 1
}

// NotFoundError reports a plugin binary missing from the search path.
type NotFoundError struct {
	Plugin string
	Err    error
}

func (e *NotFoundError) Error() string { return e.Err.Error() }
func (e *NotFoundError) Unwrap() error { return e.Err }

func (r *Runner) exec() Exec {
	if r.Exec != nil {
		return r.Exec
	}
	stderr := r.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	return &RawExec{Stderr: stderr}
}

// Add runs the chain's ADD. It returns the chain's result at the chain's
// cniVersion. On failure it also returns the last result the chain reached
// (nil if none), for the caller's rollback to hand to DEL.
func (r *Runner) Add(ctx context.Context, c *conf.Chain, env Env) (types.Result, error) {
	return r.Start(ctx, "ADD", c, env).Run(nil)
}

// Check runs the chain's CHECK, every plugin with prev as prevResult, and
// stops at the first failure, as libcni does.
func (r *Runner) Check(ctx context.Context, c *conf.Chain, env Env, prev types.Result) error {
	_, err := r.Start(ctx, "CHECK", c, env).Run(prev)
	return err
}

// Del runs the chain's DEL in reverse order, every plugin with prev as
// prevResult (for chains at 0.4.0 or later, as libcni does). Unlike libcni it
// goes on past a failing plugin, so one failure does not leak what the
// others hold, and returns every failure.
func (r *Runner) Del(ctx context.Context, c *conf.Chain, env Env, prev types.Result) error {
	_, err := r.Start(ctx, "DEL", c, env).Run(prev)
	return err
}

// A Call is one verb (ADD, CHECK or DEL) of one chain, whose first plugin
// (the last for DEL) may already be starting.
//
// Plugins are started one step ahead: while a plugin runs, the process of
// the next one starts and waits for its configuration on standard input,
// which it gets once the one before it has finished (ADD's prevResult
// comes from it) and succeeded, as the chain requires; if the chain stops
// there, the waiting process is killed, having read nothing. A Go plugin's
// start-up, a few milliseconds, thus overlaps the plugin before it, and
// Start lets the caller overlap the first plugin's with its own work.
// Plugins that act before reading their configuration (none of the
// reference plugins do) need NoPrestart.
type Call struct {
	r     *Runner
	ctx   context.Context
	ex    Exec
	verb  string
	c     *conf.Chain
	env   Env
	order []int
	first *starting // order[0], started by Start; nil once Run took it
}

// starting is a plugin being started ahead, in a goroutine of its own: a
// fork waits for the child's exec, which on a busy machine can take
// milliseconds the caller can use. get waits for it and returns nil if it
// could not be started.
type starting struct {
	done chan struct{}
	a    *ahead
}

func (s *starting) get() *ahead {
	if s == nil {
		return nil
	}
	<-s.done
	return s.a
}

func (s *starting) abort() { s.get().abort() }

// ahead is a plugin process started ahead.
type ahead struct {
	r     *Runner
	proc  Started
	start time.Time
}

func (a *ahead) abort() {
	if a != nil {
		a.proc.Abort()
		a.r.ended(a.start)
	}
}

// Start prepares the chain's verb and starts its first plugin. Run or
// Abort must follow.
func (r *Runner) Start(ctx context.Context, verb string, c *conf.Chain, env Env) *Call {
	call := &Call{r: r, ctx: ctx, ex: r.exec(), verb: verb, c: c, env: env}
	call.order = make([]int, len(c.Plugins))
	for i := range call.order {
		call.order[i] = i
		if verb == "DEL" {
			call.order[i] = len(c.Plugins) - 1 - i
		}
	}
	if len(call.order) > 0 {
		call.first = call.prestart(call.order[0])
	}
	return call
}

// Abort kills the process Start started if Run never took it. It is a
// no-op on a nil Call and after Run.
func (call *Call) Abort() {
	if call != nil {
		call.first.abort()
		call.first = nil
	}
}

// Run runs the verb on every plugin of the chain. For ADD it returns the
// chain's result, prev being unused; see Add, Check and Del.
func (call *Call) Run(prev types.Result) (types.Result, error) {
	cur := call.first.get()
	call.first = nil
	var result types.Result
	var errs []error
	if call.verb == "DEL" && !conf.AtLeast(call.c.CNIVersion, "0.4.0") {
		prev = nil
	}
	for k, i := range call.order {
		var next *starting
		if k+1 < len(call.order) {
			next = call.prestart(call.order[k+1])
		}
		switch call.verb {
		case "ADD":
			res, err := call.run(i, result, cur, true)
			if err != nil {
				next.abort()
				return result, err
			}
			result = res
		case "CHECK":
			if _, err := call.run(i, prev, cur, false); err != nil {
				next.abort()
				return nil, err
			}
		default:
			if _, err := call.run(i, prev, cur, false); err != nil {
				errs = append(errs, err)
			}
		}
		cur = next.get()
	}
	if call.verb != "ADD" {
		return nil, errors.Join(errs...)
	}
	if result == nil {
		return nil, fmt.Errorf("chain for %s returned no result", call.c.IfName)
	}
	converted, err := result.GetAsVersion(call.c.CNIVersion)
	if err != nil {
		return result, fmt.Errorf("converting the chain's result to %s: %w", call.c.CNIVersion, err)
	}
	return converted, nil
}

func (call *Call) environ() environ {
	e := call.env
	return environ{command: call.verb, containerID: e.ContainerID, netns: e.NetNS,
		ifname: e.IfName, args: e.CNIArgs, path: joinPath(call.r.Path)}
}

// prestart starts plugin i ahead when the Exec can and the AheadLimit
// allows. It returns nil when it does not; run then starts the plugin, and
// reports whatever stopped it.
func (call *Call) prestart(i int) *starting {
	r := call.r
	st, ok := call.ex.(Starter)
	if !ok || r.NoPrestart {
		return nil
	}
	// Counted from now, so that the limit holds while it starts.
	for {
		n := r.live.Load()
		if n >= r.aheadLimit() {
			return nil
		}
		if r.live.CompareAndSwap(n, n+1) {
			break
		}
	}
	s := &starting{done: make(chan struct{})}
	env := call.environ().list()
	go func() {
		defer close(s.done)
		if path, err := call.ex.FindInPath(call.c.Plugins[i].Type, r.Path); err == nil {
			start := time.Now()
			if proc, err := st.StartPlugin(call.ctx, path, env); err == nil {
				s.a = &ahead{r: r, proc: proc, start: start}
				return
			}
		}
		r.live.Add(-1)
	}()
	return s
}

// run runs plugin i, on the process started ahead if there is one.
func (call *Call) run(i int, prev types.Result, started *ahead, withResult bool) (types.Result, error) {
	p := call.c.Plugins[i]
	fail := func(err error) error { return &PluginError{Plugin: p.Type, Index: i, Err: err} }
	stdin, err := BuildConfig(call.c, p, prev, call.env.CapabilityArgs)
	if err != nil {
		started.abort()
		return nil, fail(err)
	}
	var exec func() ([]byte, error)
	if started != nil {
		exec = func() ([]byte, error) {
			defer call.r.ended(started.start)
			return started.proc.Feed(call.ctx, stdin)
		}
	} else {
		path, err := call.ex.FindInPath(p.Type, call.r.Path)
		if err != nil {
			return nil, fail(&NotFoundError{Plugin: p.Type, Err: err})
		}
		exec = func() ([]byte, error) {
			call.r.live.Add(1)
			defer call.r.ended(time.Now())
			return call.ex.ExecPlugin(call.ctx, path, stdin, call.environ().list())
		}
	}
	if !withResult {
		if _, err := exec(); err != nil {
			return nil, fail(err)
		}
		return nil, nil
	}
	res, err := decodeResult(exec, stdin)
	if err != nil {
		return nil, fail(err)
	}
	return res, nil
}

// BuildConfig returns the configuration one plugin of a chain gets on stdin:
// its own object with the chain's name and cniVersion, prevResult when given,
// and runtimeConfig holding the capability arguments it declares.
func BuildConfig(c *conf.Chain, p *conf.Plugin, prev types.Result, caps map[string]json.RawMessage) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(p.Bytes, &obj); err != nil {
		return nil, fmt.Errorf("decoding plugin configuration: %w", err)
	}
	name, _ := conf.MarshalJSON(c.Network)
	ver, _ := conf.MarshalJSON(c.CNIVersion)
	obj["name"], obj["cniVersion"] = name, ver
	delete(obj, "prevResult")
	if prev != nil {
		b, err := conf.MarshalJSON(prev)
		if err != nil {
			return nil, fmt.Errorf("encoding prevResult: %w", err)
		}
		obj["prevResult"] = b
	}
	rc := map[string]json.RawMessage{}
	for capability, on := range p.Capabilities {
		if v, ok := caps[capability]; ok && on {
			rc[capability] = v
		}
	}
	if len(rc) > 0 {
		b, err := conf.MarshalJSON(rc)
		if err != nil {
			return nil, fmt.Errorf("encoding runtimeConfig: %w", err)
		}
		obj["runtimeConfig"] = b
	}
	return conf.MarshalJSON(obj)
}

func joinPath(p []string) string { return strings.Join(p, string(os.PathListSeparator)) }

// Prefix returns a copy of c holding only its first n plugins.
func Prefix(c *conf.Chain, n int) *conf.Chain {
	cp := *c
	if n >= 0 && n < len(c.Plugins) {
		cp.Plugins = c.Plugins[:n]
	}
	return &cp
}

// GC runs GC for every plugin of the chain (spec 1.1), handing each the
// attachments of this chain that are still valid, under both the current
// and the legacy key, as libcni does. It goes on past a failing plugin.
//
// GC also goes to each plugin's IPAM plugin, with the same configuration:
// the spec leaves forwarding GC to IPAM to the main plugin, and the
// reference main plugins (bridge, macvlan, ...) do not do it yet, so their
// host-local leases would never be collected. GC is idempotent, so a main
// plugin that does forward it does no harm.
func (r *Runner) GC(ctx context.Context, c *conf.Chain, valid []types.GCAttachment) error {
	if valid == nil {
		valid = []types.GCAttachment{}
	}
	inject := map[string]any{"cni.dev/valid-attachments": valid, "cni.dev/attachments": valid}
	return r.each(ctx, "GC", c, inject, true)
}

// Status runs STATUS for every plugin of the chain (spec 1.1) and stops at
// the first that is not ready.
func (r *Runner) Status(ctx context.Context, c *conf.Chain) error {
	return r.each(ctx, "STATUS", c, nil, false)
}

// each runs a verb that takes no container (GC, STATUS) on every plugin.
func (r *Runner) each(ctx context.Context, verb string, c *conf.Chain, inject map[string]any, goOn bool) error {
	ex := r.exec()
	var errs []error
	for i, p := range c.Plugins {
		fail := func(err error) error { return &PluginError{Plugin: p.Type, Index: i, Err: err} }
		path, err := ex.FindInPath(p.Type, r.Path)
		if err != nil {
			errs = append(errs, fail(&NotFoundError{Plugin: p.Type, Err: err}))
		} else if stdin, err := injectConfig(c, p, inject); err != nil {
			errs = append(errs, fail(err))
		} else if err := r.execPlain(ctx, ex, path, stdin, environ{command: verb, path: joinPath(r.Path)}); err != nil {
			errs = append(errs, fail(err))
		} else if ipam := ipamType(p); verb == "GC" && ipam != "" {
			if err := r.ipamGC(ctx, ex, ipam, stdin); err != nil {
				errs = append(errs, fail(fmt.Errorf("ipam %s: %w", ipam, err)))
			}
		}
		if len(errs) > 0 && !goOn {
			break
		}
	}
	return errors.Join(errs...)
}

func injectConfig(c *conf.Chain, p *conf.Plugin, inject map[string]any) ([]byte, error) {
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(p.Bytes))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("decoding plugin configuration: %w", err)
	}
	obj["name"], obj["cniVersion"] = c.Network, c.CNIVersion
	for k, v := range inject {
		obj[k] = v
	}
	return conf.MarshalJSON(obj)
}

func (r *Runner) ipamGC(ctx context.Context, ex Exec, ipam string, stdin []byte) error {
	path, err := ex.FindInPath(ipam, r.Path)
	if err != nil {
		return &NotFoundError{Plugin: ipam, Err: err}
	}
	return r.execPlain(ctx, ex, path, stdin, environ{command: "GC", path: joinPath(r.Path)})
}

// ipamType returns the type of a plugin's IPAM section, if it has one.
func ipamType(p *conf.Plugin) string {
	var pc types.PluginConf
	if json.Unmarshal(p.Bytes, &pc) != nil {
		return ""
	}
	return pc.IPAM.Type
}

// execPlain runs a plugin whose output does not matter (GC, STATUS).
func (r *Runner) execPlain(ctx context.Context, ex Exec, path string, stdin []byte, env environ) error {
	r.live.Add(1)
	defer r.ended(time.Now())
	_, err := ex.ExecPlugin(ctx, path, stdin, env.list())
	return err
}
