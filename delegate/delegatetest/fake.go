// Package delegatetest provides a fake plugin runner for unit tests of
// nicmux's logic: it records every delegate call (verb, CNI variables and
// stdin), answers with configurable results, and fails or goes missing on
// demand, without running any binary.
package delegatetest

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/version"
)

// Call is one recorded delegate invocation.
type Call struct {
	Plugin      string // base name of the plugin path
	Command     string // CNI_COMMAND
	IfName      string // CNI_IFNAME
	NetNS       string // CNI_NETNS
	Args        string // CNI_ARGS
	ContainerID string // CNI_CONTAINERID
	Path        string // CNI_PATH
	Stdin       []byte
	// Conf is Stdin decoded one level deep.
	Conf map[string]json.RawMessage
}

func (c Call) String() string { return c.Command + " " + c.Plugin + "/" + c.IfName }

// HasPrevResult reports whether the plugin got a prevResult.
func (c Call) HasPrevResult() bool {
	_, ok := c.Conf["prevResult"]
	return ok
}

// PrevResult decodes the prevResult the plugin got, at 1.1.0, or nil.
func (c Call) PrevResult(t testing.TB) *types100.Result {
	t.Helper()
	raw, ok := c.Conf["prevResult"]
	if !ok {
		return nil
	}
	return DecodeResult(t, raw)
}

// Str returns a top-level string field of the plugin's configuration.
func (c Call) Str(key string) string {
	var s string
	_ = json.Unmarshal(c.Conf[key], &s)
	return s
}

// DecodeResult decodes a result of any version as a 1.1.0 result.
func DecodeResult(t testing.TB, raw []byte) *types100.Result {
	t.Helper()
	var hdr struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatalf("decoding result %s: %v", raw, err)
	}
	r, err := create.Create(hdr.CNIVersion, raw)
	if err != nil {
		t.Fatalf("decoding result %s: %v", raw, err)
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		t.Fatalf("converting result %s: %v", raw, err)
	}
	return res
}

type fakeKey struct{ plugin, ifname string }
type failKey struct{ plugin, verb, ifname string }

// failure is how a call the fake was told to fail fails: its code, and
// its message ("" for the fake's own).
type failure struct {
	code uint
	msg  string
}

// Exec is an invoke.Exec that runs no binary. It records every call,
// answers ADD with a result per (plugin, ifname) (by default one interface
// named CNI_IFNAME in CNI_NETNS with DefaultIP(plugin, ifname)), fails the
// (plugin, verb, ifname) it is told to with a *types.Error, and reports the
// plugins it is told to as missing from the path. It is safe for concurrent
// use.
type Exec struct {
	version.PluginDecoder

	mu       sync.Mutex
	calls    []Call
	results  map[fakeKey]*types100.Result
	fails    map[failKey]failure
	notFound map[string]bool
	// refuseArgs are the plugins that parse CNI_ARGS as the reference
	// plugins do, knowing no key of their own (see RefuseArgs).
	refuseArgs map[string]bool
	// versions are the versions the plugins named answer VERSION with;
	// every other plugin answers with every version the CNI library knows.
	versions map[string][]string
	// resultVersion, when set, is the version ADD results are printed at
	// instead of the configuration's cniVersion.
	resultVersion string
	// hook, when set, is called with every call once it is recorded,
	// before its answer is chosen; tests use it to order concurrent calls
	// and to change the answer.
	hook func(Call)
}

// The fake fits both the CNI library's invoke.Exec and delegate.Exec (the
// same method set).
var (
	_ invoke.Exec = (*Exec)(nil)
)

func New() *Exec {
	return &Exec{
		results:    map[fakeKey]*types100.Result{},
		fails:      map[failKey]failure{},
		notFound:   map[string]bool{},
		refuseArgs: map[string]bool{},
		versions:   map[string][]string{},
	}
}

// SetVersions makes plugin answer VERSION with versions as those it
// supports.
func (f *Exec) SetVersions(plugin string, versions ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.versions[plugin] = versions
}

// SetResult makes ADD of plugin for ifname return r.
func (f *Exec) SetResult(plugin, ifname string, r *types100.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results[fakeKey{plugin, ifname}] = r
}

// FailOn makes verb of plugin for ifname fail with code. ifname "*"
// matches any interface.
func (f *Exec) FailOn(plugin, verb, ifname string, code uint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails[failKey{plugin, verb, ifname}] = failure{code: code}
}

// FailWith is FailOn with the plugin's own message.
func (f *Exec) FailWith(plugin, verb, ifname string, code uint, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails[failKey{plugin, verb, ifname}] = failure{code: code, msg: msg}
}

// ClearFailures undoes every FailOn and NotFound.
func (f *Exec) ClearFailures() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails = map[failKey]failure{}
	f.notFound = map[string]bool{}
}

// RefuseArgs makes plugin parse CNI_ARGS on every verb with the CNI
// library's parser, as the reference plugins do, knowing no key but
// IgnoreUnknown: it fails with that parser's error (code 999) on any pair
// unless IgnoreUnknown is set, and on an empty or malformed pair.
func (f *Exec) RefuseArgs(plugin string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuseArgs[plugin] = true
}

// NotFound makes FindInPath report plugin as missing.
func (f *Exec) NotFound(plugin string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notFound[plugin] = true
}

// SetResultVersion makes ADD print results at v ("" for the config's).
func (f *Exec) SetResultVersion(v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resultVersion = v
}

// SetHook makes every call run hook once recorded (nil for none).
func (f *Exec) SetHook(hook func(Call)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}

// Calls returns a copy of the calls so far.
func (f *Exec) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// CallsOf returns the calls of one verb.
func (f *Exec) CallsOf(verb string) []Call {
	var out []Call
	for _, c := range f.Calls() {
		if c.Command == verb {
			out = append(out, c)
		}
	}
	return out
}

// Reset forgets the calls so far.
func (f *Exec) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

func (f *Exec) FindInPath(plugin string, paths []string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.notFound[plugin] {
		return "", fmt.Errorf("failed to find plugin %q in path %s", plugin, paths)
	}
	dir := "/fake/cni/bin"
	if len(paths) > 0 {
		dir = paths[0]
	}
	return filepath.Join(dir, plugin), nil
}

func (f *Exec) ExecPlugin(_ context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	c := Call{
		Plugin:      filepath.Base(pluginPath),
		Command:     env["CNI_COMMAND"],
		IfName:      env["CNI_IFNAME"],
		NetNS:       env["CNI_NETNS"],
		Args:        env["CNI_ARGS"],
		ContainerID: env["CNI_CONTAINERID"],
		Path:        env["CNI_PATH"],
		Stdin:       append([]byte(nil), stdin...),
	}
	if err := json.Unmarshal(stdin, &c.Conf); err != nil {
		return nil, fmt.Errorf("fake: stdin is not a JSON object: %v", err)
	}

	f.mu.Lock()
	f.calls = append(f.calls, c)
	hook := f.hook
	f.mu.Unlock()

	// The hook runs before the answer is chosen, so it may change it.
	if hook != nil {
		hook(c)
	}

	f.mu.Lock()
	how, fail := f.fails[failKey{c.Plugin, c.Command, c.IfName}]
	if !fail {
		how, fail = f.fails[failKey{c.Plugin, c.Command, "*"}]
	}
	res := f.results[fakeKey{c.Plugin, c.IfName}]
	resVer := f.resultVersion
	strict := f.refuseArgs[c.Plugin]
	vers, versSet := f.versions[c.Plugin]
	f.mu.Unlock()

	if strict {
		if err := types.LoadArgs(c.Args, &struct{ types.CommonArgs }{}); err != nil {
			return nil, types.NewError(types.ErrInternal, err.Error(), "")
		}
	}
	if fail && how.msg != "" {
		return nil, types.NewError(how.code, how.msg, "")
	}
	if fail {
		return nil, types.NewError(how.code, fmt.Sprintf("fake %s failed %s", c.Plugin, c.Command), "on "+c.IfName)
	}
	if c.Command == "VERSION" {
		info := version.All
		if versSet {
			info = version.PluginSupports(vers...)
		}
		return json.Marshal(info)
	}
	if c.Command != "ADD" {
		return nil, nil
	}
	if res == nil {
		res = defaultResult(c.Plugin, c.IfName, c.NetNS)
	} else {
		res = CopyResult(res)
	}
	if resVer == "" {
		resVer = c.Str("cniVersion")
	}
	out, err := res.GetAsVersion(resVer)
	if err != nil {
		return nil, fmt.Errorf("fake: converting result to %s: %v", resVer, err)
	}
	return json.Marshal(out)
}

// DefaultIP is the address the fake gives plugin for ifname by default.
func DefaultIP(plugin, ifname string) string {
	h := fnv.New32a()
	h.Write([]byte(plugin + "/" + ifname))
	s := h.Sum32()
	return fmt.Sprintf("10.%d.%d.2", byte(s>>8), byte(s))
}

// defaultResult is what the fake's ADD returns when not told otherwise.
func defaultResult(plugin, ifname, netns string) *types100.Result {
	zero := 0
	return &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{{Name: ifname, Sandbox: netns, Mac: "02:00:00:00:00:01"}},
		IPs: []*types100.IPConfig{{
			Interface: &zero,
			Address:   net.IPNet{IP: net.ParseIP(DefaultIP(plugin, ifname)).To4(), Mask: net.CIDRMask(24, 32)},
		}},
	}
}

func CopyResult(r *types100.Result) *types100.Result {
	out := &types100.Result{CNIVersion: r.CNIVersion, DNS: *r.DNS.Copy()}
	if out.CNIVersion == "" {
		out.CNIVersion = types100.ImplementedSpecVersion
	}
	for _, i := range r.Interfaces {
		out.Interfaces = append(out.Interfaces, i.Copy())
	}
	for _, ip := range r.IPs {
		out.IPs = append(out.IPs, ip.Copy())
	}
	for _, rt := range r.Routes {
		out.Routes = append(out.Routes, rt.Copy())
	}
	return out
}

// IPOf returns the first IP address of a result, or "".
func IPOf(r *types100.Result) string {
	if r == nil || len(r.IPs) == 0 {
		return ""
	}
	return r.IPs[0].Address.IP.String()
}

// Summary lists calls as "VERB plugin/ifname".
func Summary(calls []Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.String()
	}
	return out
}
