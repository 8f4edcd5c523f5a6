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
	"strings"

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
	ex := r.exec()
	var result types.Result
	for i := range c.Plugins {
		next, err := r.run(ctx, ex, "ADD", c, i, result, env, true)
		if err != nil {
			return result, err
		}
		result = next
	}
	if result == nil {
		return nil, fmt.Errorf("chain for %s returned no result", c.IfName)
	}
	converted, err := result.GetAsVersion(c.CNIVersion)
	if err != nil {
		return result, fmt.Errorf("converting the chain's result to %s: %w", c.CNIVersion, err)
	}
	return converted, nil
}

// Check runs the chain's CHECK, every plugin with prev as prevResult, and
// stops at the first failure, as libcni does.
func (r *Runner) Check(ctx context.Context, c *conf.Chain, env Env, prev types.Result) error {
	ex := r.exec()
	for i := range c.Plugins {
		if _, err := r.run(ctx, ex, "CHECK", c, i, prev, env, false); err != nil {
			return err
		}
	}
	return nil
}

// Del runs the chain's DEL in reverse order, every plugin with prev as
// prevResult (for chains at 0.4.0 or later, as libcni does). Unlike libcni it
// goes on past a failing plugin, so one failure does not leak what the
// others hold, and returns every failure.
func (r *Runner) Del(ctx context.Context, c *conf.Chain, env Env, prev types.Result) error {
	if !conf.AtLeast(c.CNIVersion, "0.4.0") {
		prev = nil
	}
	ex := r.exec()
	var errs []error
	for i := len(c.Plugins) - 1; i >= 0; i-- {
		if _, err := r.run(ctx, ex, "DEL", c, i, prev, env, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) run(ctx context.Context, ex Exec, verb string, c *conf.Chain, i int, prev types.Result, env Env, withResult bool) (types.Result, error) {
	p := c.Plugins[i]
	fail := func(err error) error { return &PluginError{Plugin: p.Type, Index: i, Err: err} }
	path, err := ex.FindInPath(p.Type, r.Path)
	if err != nil {
		return nil, fail(&NotFoundError{Plugin: p.Type, Err: err})
	}
	stdin, err := BuildConfig(c, p, prev, env.CapabilityArgs)
	if err != nil {
		return nil, fail(err)
	}
	args := environ{command: verb, containerID: env.ContainerID, netns: env.NetNS,
		ifname: env.IfName, args: env.CNIArgs, path: joinPath(r.Path)}
	if withResult {
		res, err := execWithResult(ctx, ex, path, stdin, args)
		if err != nil {
			return nil, fail(err)
		}
		return res, nil
	}
	if err := execWithoutResult(ctx, ex, path, stdin, args); err != nil {
		return nil, fail(err)
	}
	return nil, nil
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
		} else if err := execWithoutResult(ctx, ex, path, stdin, environ{command: verb, path: joinPath(r.Path)}); err != nil {
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
	return execWithoutResult(ctx, ex, path, stdin, environ{command: "GC", path: joinPath(r.Path)})
}

// ipamType returns the type of a plugin's IPAM section, if it has one.
func ipamType(p *conf.Plugin) string {
	var pc types.PluginConf
	if json.Unmarshal(p.Bytes, &pc) != nil {
		return ""
	}
	return pc.IPAM.Type
}
