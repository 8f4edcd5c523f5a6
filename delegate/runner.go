// Package delegate runs one interface's delegate plugin chain the way libcni
// runs a network configuration list: each plugin gets the chain's name and
// cniVersion, the previous plugin's result as prevResult, and the runtime's
// capability arguments it declares in runtimeConfig.
package delegate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nicmux/nicmux/conf"
)

// Exec finds and runs plugin binaries in place of the Runner's own
// processes: tests give it a fake. It has the method set of the CNI
// library's invoke.Exec, so that library's fakes fit; nicmux does not import
// invoke itself because it links OpenTelemetry and net/http, which would
// more than double the start-up time of every nicmux run.
type Exec interface {
	ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error)
	FindInPath(plugin string, paths []string) (string, error)
	Decode(jsonBytes []byte) (version.PluginInfo, error)
}

// Runner runs delegate chains.
type Runner struct {
	// Path is where plugin binaries are looked up (the runtime's CNI_PATH).
	Path []string
	// Exec, if set, runs the plugins instead of the Runner's processes.
	Exec Exec
	// Stderr receives what plugins print on their standard error.
	Stderr io.Writer
	// Timeout bounds each plugin call; past it the plugin and its process
	// group are killed. Zero means no bound.
	Timeout time.Duration
	// Observe, if set, is told of every plugin call as it ends.
	Observe func(Span)
	// Started, if set, is told of every plugin process as it starts, so
	// that a successor can kill it should nicmux die (see Fence).
	Started func(Proc)
}

// Span is one plugin call, for the log and the metrics.
type Span struct {
	Verb, IfName, Plugin string
	// Took is how long the call took, its process's start included.
	Took time.Duration
	Err  error
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
	// Field is what the plugin's configuration says of the failure when
	// its message does not ("master: ens5"), or "".
	Field string
}

func (e *PluginError) Error() string {
	msg := "plugin " + e.Plugin + ": " + e.Err.Error()
	if e.Field != "" {
		msg += " (" + e.Field + ")"
	}
	return msg
}
func (e *PluginError) Unwrap() error { return e.Err }

// CNICode is the plugin's own CNI code when it gave one, 7 when its binary
// was not found, else 999.
func (e *PluginError) CNICode() uint {
	var nf *NotFoundError
	if errors.As(e.Err, &nf) {
		return nf.CNICode()
	}
	var te *types.Error
	if errors.As(e.Err, &te) {
		return te.Code
	}
	return types.ErrInternal
}

// NotFoundError reports a plugin binary missing from the search path.
type NotFoundError struct {
	Plugin string
	Err    error
}

func (e *NotFoundError) Error() string { return e.Err.Error() }
func (e *NotFoundError) Unwrap() error { return e.Err }

// CNICode is the error's CNI code: a missing plugin is a configuration
// error.
func (e *NotFoundError) CNICode() uint { return types.ErrInvalidNetworkConfig }

// Add runs the chain's ADD and returns its result at the chain's
// cniVersion. On failure it returns the last result the chain reached (nil
// if none), for the caller's rollback to hand to DEL. ran is the part of the
// chain that may hold resources: the plugins that ran, the failed one
// included unless its binary was not found.
func (r *Runner) Add(ctx context.Context, c *conf.Chain, env Env) (result types.Result, ran *conf.Chain, err error) {
	result, err = r.run(ctx, "ADD", c, env, nil)
	if err != nil {
		return result, prefix(c, attempted(err, len(c.Plugins))), err
	}
	if result == nil {
		return nil, c, fmt.Errorf("chain for %s returned no result", c.IfName)
	}
	converted, err := result.GetAsVersion(c.CNIVersion)
	if err != nil {
		return result, c, fmt.Errorf("converting the chain's result to %s: %w", c.CNIVersion, err)
	}
	return converted, c, nil
}

// isNotFound reports whether err is a plugin binary missing from the path.
func isNotFound(err error) bool {
	var nf *NotFoundError
	return errors.As(err, &nf)
}

// attempted returns how many plugins of a chain of n may hold resources
// after an ADD that failed with err: those before the failed one, and the
// failed one itself unless it never ran (its binary was not found).
func attempted(err error, n int) int {
	var pe *PluginError
	if !errors.As(err, &pe) {
		return n
	}
	var nf *NotFoundError
	if errors.As(pe.Err, &nf) {
		return pe.Index
	}
	return pe.Index + 1
}

// Check runs the chain's CHECK, every plugin with prev as prevResult, and
// stops at the first failure, as libcni does.
func (r *Runner) Check(ctx context.Context, c *conf.Chain, env Env, prev types.Result) error {
	_, err := r.run(ctx, "CHECK", c, env, prev)
	return err
}

// Del runs the chain's DEL in reverse order, every plugin with prev as
// prevResult (for chains at 0.4.0 or later), and stops at the first plugin
// that fails, as libcni does: the plugins below it still hold what it needs
// to finish on a retry (tuning restores its backup onto the link that
// macvlan or bridge would otherwise delete, and can never remove the backup
// once the link is gone). A plugin whose binary is missing holds nothing
// that can be released: Del goes on past it, and returns every failure.
func (r *Runner) Del(ctx context.Context, c *conf.Chain, env Env, prev types.Result) error {
	if !conf.AtLeast(c.CNIVersion, "0.4.0") {
		prev = nil
	}
	_, err := r.run(ctx, "DEL", c, env, prev)
	return err
}

// GC runs GC for every plugin of the chain (spec 1.1), handing each the
// attachments of this chain that are still valid, under both the current
// and the legacy key, as libcni does. It goes on past a failing plugin.
// The chain's IPAM plugins get theirs from GCIPAM.
func (r *Runner) GC(ctx context.Context, c *conf.Chain, valid []types.GCAttachment) error {
	extra, err := validExtra(valid)
	if err != nil {
		return err
	}
	var errs []error
	for i, p := range c.Plugins {
		if err := r.plain(ctx, "GC", c, i, p.Type, extra); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// validExtra is GC's list of valid attachments, under both keys.
func validExtra(valid []types.GCAttachment) (map[string]json.RawMessage, error) {
	if valid == nil {
		valid = []types.GCAttachment{}
	}
	b, err := json.Marshal(valid)
	if err != nil {
		return nil, err
	}
	return map[string]json.RawMessage{"cni.dev/valid-attachments": b, "cni.dev/attachments": b}, nil
}

// Status runs STATUS for every plugin of the chain (spec 1.1) and stops at
// the first that is not ready.
func (r *Runner) Status(ctx context.Context, c *conf.Chain) error {
	for i, p := range c.Plugins {
		if err := r.plain(ctx, "STATUS", c, i, p.Type, nil); err != nil {
			return err
		}
	}
	return nil
}

// order is the order a verb runs a chain's plugins in.
func order(verb string, c *conf.Chain) []int {
	out := make([]int, len(c.Plugins))
	for i := range out {
		out[i] = i
		if verb == "DEL" {
			out[i] = len(c.Plugins) - 1 - i
		}
	}
	return out
}

// run runs verb on every plugin of the chain in order, each with the
// previous plugin's result (ADD) or prev as prevResult. ADD and CHECK stop
// at the first failure, DEL goes on.
func (r *Runner) run(ctx context.Context, verb string, c *conf.Chain, env Env, prev types.Result) (types.Result, error) {
	var errs []error
	result := prev
	for _, i := range order(verb, c) {
		res, err := r.call(ctx, verb, c, i, env, result)
		switch {
		case err != nil && verb == "DEL" && isNotFound(err):
			errs = append(errs, err)
		case err != nil && verb == "DEL":
			return nil, errors.Join(append(errs, err)...)
		case err != nil && verb == "ADD":
			return result, err
		case err != nil:
			return nil, err
		case verb == "ADD":
			result = res
		}
	}
	if verb != "ADD" {
		return nil, errors.Join(errs...)
	}
	return result, nil
}

// call runs plugin i of the chain. A DEL the plugin refuses for its
// CNI_ARGS is run again without them (see refusesArgs).
func (r *Runner) call(ctx context.Context, verb string, c *conf.Chain, i int, env Env, prev types.Result) (types.Result, error) {
	p := c.Plugins[i]
	fail := func(err error) error { return &PluginError{Plugin: p.Type, Index: i, Err: err} }
	stdin, err := buildConfig(c, p, prev, env.CapabilityArgs, nil)
	if err != nil {
		return nil, fail(err)
	}
	out, err := r.exec(ctx, verb, env, p.Type, stdin)
	if err != nil && verb == "DEL" && env.CNIArgs != "" && refusesArgs(err) {
		bare := env
		bare.CNIArgs = ""
		if _, err2 := r.exec(ctx, verb, bare, p.Type, stdin); err2 != nil {
			err = fmt.Errorf("without CNI_ARGS, which it refused (%v): %w", err, err2)
		} else {
			err = nil
		}
	}
	if err != nil {
		return nil, &PluginError{Plugin: p.Type, Index: i, Err: err, Field: linkField(p, err)}
	}
	if verb != "ADD" {
		return nil, nil
	}
	res, err := decodeResult(out, stdin)
	if err != nil {
		return nil, fail(err)
	}
	return res, nil
}

// linkField names the host link a plugin's configuration points at, when
// its failure is netlink's bare "Link not found", as macvlan, ipvlan and
// vlan report a master that is missing, and host-device a device: e.g.
// "master: ens5". It is "" when the message names the link already, or
// the configuration names none.
func linkField(p *conf.Plugin, err error) string {
	var te *types.Error
	if !errors.As(err, &te) || !strings.Contains(te.Msg, "Link not found") {
		return ""
	}
	var cfg struct{ Master, Device string }
	if json.Unmarshal(p.Bytes, &cfg) != nil {
		return ""
	}
	for _, f := range []struct{ key, link string }{{"master", cfg.Master}, {"device", cfg.Device}} {
		if f.link != "" && !strings.Contains(te.Msg, f.link) {
			return f.key + ": " + f.link
		}
	}
	return ""
}

// refusesArgs reports whether a plugin failed because it refused its
// CNI_ARGS: the CNI library's parser of CNI_ARGS, which the reference
// plugins run on DEL as on ADD, refuses a key it does not know (without
// IgnoreUnknown), an empty or malformed pair and a value it cannot parse,
// each with an error that says "ARGS: ", while it loads its configuration,
// before it acts. A release needs none of them (Nomad's DEL has no
// CNI_ARGS at all, so every plugin a Nomad client runs releases without),
// so a DEL refused for them is run again with none: a record whose
// arguments a plugin refuses (an ADD that failed on them, a record of a
// nicmux that passed its own keys on) converges all the same. Retrying
// with IgnoreUnknown=1, or without the pairs the message names, would
// still fail on an empty pair or a value the plugin cannot parse.
func refusesArgs(err error) bool {
	var te *types.Error
	return errors.As(err, &te) && strings.Contains(te.Msg, "ARGS: ")
}

// plain runs a verb that takes no container (GC, STATUS) on one plugin (or
// a plugin's IPAM plugin, named by binary).
func (r *Runner) plain(ctx context.Context, verb string, c *conf.Chain, i int, binary string, extra map[string]json.RawMessage) error {
	p := c.Plugins[i]
	stdin, err := buildConfig(c, p, nil, nil, extra)
	if err == nil {
		_, err = r.exec(ctx, verb, Env{}, binary, stdin)
	}
	if err != nil {
		if binary != p.Type {
			err = fmt.Errorf("ipam %s: %w", binary, err)
		}
		return &PluginError{Plugin: p.Type, Index: i, Err: err}
	}
	return nil
}

// exec runs one plugin binary with stdin and returns its output.
func (r *Runner) exec(ctx context.Context, verb string, env Env, binary string, stdin []byte) ([]byte, error) {
	span := Span{Verb: verb, IfName: env.IfName, Plugin: binary}
	start := time.Now()
	defer func() {
		if r.Observe != nil {
			span.Took = time.Since(start)
			r.Observe(span)
		}
	}()
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, r.Timeout, &timeoutError{Timeout: r.Timeout})
		defer cancel()
	}
	if r.Exec != nil {
		path, err := r.Exec.FindInPath(binary, r.Path)
		if err != nil {
			nf := &NotFoundError{Plugin: binary, Err: err}
			span.Err = nf
			return nil, nf
		}
		out, err := r.Exec.ExecPlugin(ctx, path, stdin, r.environ(verb, env))
		span.Err = err
		return out, err
	}
	path, err := findInPath(binary, r.Path)
	if err != nil {
		nf := &NotFoundError{Plugin: binary, Err: err}
		span.Err = nf
		return nil, nf
	}
	p, err := r.start(path, r.environ(verb, env))
	if err != nil {
		span.Err = err
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	out, err := p.feed(ctx, stdin)
	if err != nil {
		err = p.pluginError(out, err)
	}
	r.copyStderr(p)
	span.Err = err
	return out, err
}

func (r *Runner) copyStderr(p *proc) {
	b := p.stderr.bytes()
	if len(b) == 0 {
		return
	}
	w := r.Stderr
	if w == nil {
		w = os.Stderr
	}
	_, _ = w.Write(b)
	if cut, total := p.stderr.cut(); cut {
		fmt.Fprintf(w, "\n[nicmux: the plugin's stderr was cut at %d of %d bytes]\n", maxStderr, total)
	}
}

// start starts a plugin process and tells Started of it.
func (r *Runner) start(path string, env []string) (*proc, error) {
	p, err := startProc(path, env)
	if err != nil {
		return nil, err
	}
	if r.Started != nil {
		r.Started(noteProc(p.pid()))
	}
	return p, nil
}

// environ is the environment of one plugin call: nicmux's own, with the CNI
// variables set for the call.
func (r *Runner) environ(verb string, env Env) []string {
	own := os.Environ()
	out := make([]string, 0, len(own)+6)
	for _, kv := range own {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH":
			continue
		}
		out = append(out, kv)
	}
	return append(out, "CNI_COMMAND="+verb, "CNI_CONTAINERID="+env.ContainerID, "CNI_NETNS="+env.NetNS,
		"CNI_IFNAME="+env.IfName, "CNI_ARGS="+env.CNIArgs, "CNI_PATH="+strings.Join(r.Path, string(os.PathListSeparator)))
}

// buildConfig returns the configuration one plugin of a chain gets on stdin:
// its own object with the chain's name and cniVersion, prevResult when given,
// runtimeConfig holding the capability arguments it declares, and extra
// top-level fields (GC's valid attachments).
func buildConfig(c *conf.Chain, p *conf.Plugin, prev types.Result, caps map[string]json.RawMessage, extra map[string]json.RawMessage) ([]byte, error) {
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
	for k, v := range extra {
		obj[k] = v
	}
	return conf.MarshalJSON(obj)
}

// decodeResult decodes a plugin's result. A result without a cniVersion is
// taken to be at the configuration's version, as libcni does.
func decodeResult(out, stdin []byte) (types.Result, error) {
	var probe struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		return nil, fmt.Errorf("decoding the plugin's result: %w", err)
	}
	ver := probe.CNIVersion
	if ver == "" {
		var err error
		if ver, err = (&version.ConfigDecoder{}).Decode(stdin); err != nil {
			return nil, err
		}
		// The result types reject an empty cniVersion: write it in, as
		// libcni's fixupResultVersion does.
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(out, &obj); err != nil {
			return nil, fmt.Errorf("decoding the plugin's result: %w", err)
		}
		if obj == nil { // "null"
			obj = map[string]json.RawMessage{}
		}
		obj["cniVersion"], _ = json.Marshal(ver)
		if out, err = json.Marshal(obj); err != nil {
			return nil, fmt.Errorf("decoding the plugin's result: %w", err)
		}
	}
	res, err := create.Create(ver, out)
	if err != nil {
		return nil, fmt.Errorf("decoding the plugin's result: %w", err)
	}
	return res, nil
}

// prefix returns a copy of c holding only its first n plugins, or nil when
// n is 0.
func prefix(c *conf.Chain, n int) *conf.Chain {
	if n <= 0 {
		return nil
	}
	cp := *c
	if n < len(c.Plugins) {
		cp.Plugins = c.Plugins[:n]
	}
	return &cp
}
