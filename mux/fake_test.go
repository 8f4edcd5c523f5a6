package mux

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

	"github.com/nicmux/nicmux/delegate"
)

// fakeCall is one recorded delegate invocation.
type fakeCall struct {
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

func (c fakeCall) String() string { return c.Command + " " + c.Plugin + "/" + c.IfName }

// HasPrevResult reports whether the plugin got a prevResult.
func (c fakeCall) HasPrevResult() bool {
	_, ok := c.Conf["prevResult"]
	return ok
}

// PrevResult decodes the prevResult the plugin got, at 1.1.0, or nil.
func (c fakeCall) PrevResult(t testing.TB) *types100.Result {
	t.Helper()
	raw, ok := c.Conf["prevResult"]
	if !ok {
		return nil
	}
	return decodeResult(t, raw)
}

// Str returns a top-level string field of the plugin's configuration.
func (c fakeCall) Str(key string) string {
	var s string
	_ = json.Unmarshal(c.Conf[key], &s)
	return s
}

// decodeResult decodes a result of any version as a 1.1.0 result.
func decodeResult(t testing.TB, raw []byte) *types100.Result {
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

// fakeExec is an invoke.Exec that runs no binary. It records every call,
// answers ADD with a result per (plugin, ifname) (by default one interface
// named CNI_IFNAME in CNI_NETNS with defaultIP(plugin, ifname)), fails the
// (plugin, verb, ifname) it is told to with a *types.Error, and reports the
// plugins it is told to as missing from the path. It is safe for concurrent
// use.
type fakeExec struct {
	version.PluginDecoder

	mu       sync.Mutex
	calls    []fakeCall
	results  map[fakeKey]*types100.Result
	fails    map[failKey]uint
	notFound map[string]bool
	// resultVersion, when set, is the version ADD results are printed at
	// instead of the configuration's cniVersion.
	resultVersion string
	// hook, when set, is called with every call once it is recorded,
	// before the call returns; tests use it to order concurrent calls.
	hook func(fakeCall)
}

// The fake fits both the CNI library's invoke.Exec and delegate.Exec (the
// same method set).
var (
	_ invoke.Exec   = (*fakeExec)(nil)
	_ delegate.Exec = (*fakeExec)(nil)
)

func newFakeExec() *fakeExec {
	return &fakeExec{
		results:  map[fakeKey]*types100.Result{},
		fails:    map[failKey]uint{},
		notFound: map[string]bool{},
	}
}

// SetResult makes ADD of plugin for ifname return r.
func (f *fakeExec) SetResult(plugin, ifname string, r *types100.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results[fakeKey{plugin, ifname}] = r
}

// FailOn makes verb of plugin for ifname fail with code. ifname "*"
// matches any interface.
func (f *fakeExec) FailOn(plugin, verb, ifname string, code uint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails[failKey{plugin, verb, ifname}] = code
}

// ClearFailures undoes every FailOn and NotFound.
func (f *fakeExec) ClearFailures() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails = map[failKey]uint{}
	f.notFound = map[string]bool{}
}

// NotFound makes FindInPath report plugin as missing.
func (f *fakeExec) NotFound(plugin string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notFound[plugin] = true
}

// SetResultVersion makes ADD print results at v ("" for the config's).
func (f *fakeExec) SetResultVersion(v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resultVersion = v
}

// SetHook makes every call run hook once recorded (nil for none).
func (f *fakeExec) SetHook(hook func(fakeCall)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}

// Calls returns a copy of the calls so far.
func (f *fakeExec) Calls() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls...)
}

// CallsOf returns the calls of one verb.
func (f *fakeExec) CallsOf(verb string) []fakeCall {
	var out []fakeCall
	for _, c := range f.Calls() {
		if c.Command == verb {
			out = append(out, c)
		}
	}
	return out
}

// Reset forgets the calls so far.
func (f *fakeExec) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

func (f *fakeExec) FindInPath(plugin string, paths []string) (string, error) {
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

func (f *fakeExec) ExecPlugin(_ context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	c := fakeCall{
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
	code, fail := f.fails[failKey{c.Plugin, c.Command, c.IfName}]
	if !fail {
		code, fail = f.fails[failKey{c.Plugin, c.Command, "*"}]
	}
	res := f.results[fakeKey{c.Plugin, c.IfName}]
	resVer := f.resultVersion
	hook := f.hook
	f.mu.Unlock()

	if hook != nil {
		hook(c)
	}

	if fail {
		return nil, types.NewError(code, fmt.Sprintf("fake %s failed %s", c.Plugin, c.Command), "on "+c.IfName)
	}
	if c.Command != "ADD" {
		return nil, nil
	}
	if res == nil {
		res = defaultResult(c.Plugin, c.IfName, c.NetNS)
	} else {
		res = copyResult(res)
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

// defaultIP is the address the fake gives plugin for ifname by default.
func defaultIP(plugin, ifname string) string {
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
			Address:   net.IPNet{IP: net.ParseIP(defaultIP(plugin, ifname)).To4(), Mask: net.CIDRMask(24, 32)},
		}},
	}
}

func copyResult(r *types100.Result) *types100.Result {
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

// ipOf returns the first IP address of a result, or "".
func ipOf(r *types100.Result) string {
	if r == nil || len(r.IPs) == 0 {
		return ""
	}
	return r.IPs[0].Address.IP.String()
}

// summary lists calls as "VERB plugin/ifname".
func summary(calls []fakeCall) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.String()
	}
	return out
}
