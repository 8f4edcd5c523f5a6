package delegate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate/delegatetest"
)

// chainOf builds a chain for ifname from plugin configuration objects, the
// way nicmux rebuilds a stored chain.
func chainOf(t testing.TB, ifname, network, cniVersion string, plugins ...string) *conf.Chain {
	t.Helper()
	list := fmt.Sprintf(`{"cniVersion":%q,"name":%q,"plugins":[%s]}`, cniVersion, network, strings.Join(plugins, ","))
	c, err := conf.ChainFromConfList(ifname, []byte(list))
	if err != nil {
		t.Fatalf("building chain: %v", err)
	}
	return c
}

func decodeObj(t testing.TB, b []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return m
}

func compact(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("compacting %s: %v", s, err)
	}
	return b.String()
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func testResult(ip string) *types100.Result {
	zero := 0
	return &types100.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "eth1", Sandbox: "/var/run/netns/x"}},
		IPs:        []*types100.IPConfig{{Interface: &zero, Address: net.IPNet{IP: net.ParseIP(ip).To4(), Mask: net.CIDRMask(24, 32)}}},
	}
}

func pluginTypes(c *conf.Chain) []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, p := range c.Plugins {
		out = append(out, p.Type)
	}
	return out
}

func testEnv(netns string) Env {
	return Env{ContainerID: "ctr-1", NetNS: netns, IfName: "eth1", CNIArgs: "IgnoreUnknown=true;K=V"}
}

func TestBuildConfig(t *testing.T) {
	const pluginConf = `{
		"type": "bridge",
		"name": "stale-name",
		"cniVersion": "0.2.0",
		"prevResult": {"cniVersion": "0.4.0", "ips": []},
		"mtu": 1500,
		"big": 12345678901234567890,
		"ratio": 0.25,
		"flag": false,
		"none": null,
		"nested": {"a": [1, 2.5, {"b": null, "c": "x"}], "d": {"e": 1500}},
		"capabilities": {"portMappings": true, "ips": false}
	}`
	c := chainOf(t, "eth1", "storage", "1.0.0", pluginConf)
	caps := map[string]json.RawMessage{
		"portMappings": json.RawMessage(`[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]`),
		"bandwidth":    json.RawMessage(`{"ingressRate":1000}`),
		"ips":          json.RawMessage(`["10.0.0.5/24"]`),
	}
	in := decodeObj(t, []byte(pluginConf))

	t.Run("without prevResult", func(t *testing.T) {
		b, err := buildConfig(c, c.Plugins[0], nil, caps, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := decodeObj(t, b)
		if got := string(out["name"]); got != `"storage"` {
			t.Errorf("name = %s, want the chain's network", got)
		}
		if got := string(out["cniVersion"]); got != `"1.0.0"` {
			t.Errorf("cniVersion = %s, want the chain's version", got)
		}
		if _, ok := out["prevResult"]; ok {
			t.Errorf("a stale prevResult was kept: %s", out["prevResult"])
		}
		// runtimeConfig: only the capability declared true.
		rc := decodeObj(t, out["runtimeConfig"])
		if !reflect.DeepEqual(keys(rc), []string{"portMappings"}) {
			t.Errorf("runtimeConfig keys = %v, want only portMappings (bandwidth undeclared, ips declared false)", keys(rc))
		}
		if got, want := string(rc["portMappings"]), compact(t, string(caps["portMappings"])); got != want {
			t.Errorf("runtimeConfig.portMappings = %s, want %s", got, want)
		}
		// Every other key exactly as written, big numbers included.
		for k, v := range in {
			switch k {
			case "name", "cniVersion", "prevResult":
				continue
			}
			if got, want := string(out[k]), compact(t, string(v)); got != want {
				t.Errorf("%s = %s, want %s", k, got, want)
			}
		}
		wantKeys := []string{"big", "capabilities", "cniVersion", "flag", "mtu", "name", "nested", "none", "ratio", "runtimeConfig", "type"}
		if !reflect.DeepEqual(keys(out), wantKeys) {
			t.Errorf("keys = %v, want %v", keys(out), wantKeys)
		}
	})

	t.Run("with prevResult", func(t *testing.T) {
		b, err := buildConfig(c, c.Plugins[0], testResult("10.1.2.3"), caps, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := decodeObj(t, b)
		got := delegatetest.DecodeResult(t, out["prevResult"])
		if delegatetest.IPOf(got) != "10.1.2.3" || len(got.Interfaces) != 1 || got.Interfaces[0].Name != "eth1" {
			t.Errorf("prevResult = %s, want the given result", out["prevResult"])
		}
		if v := decodeObj(t, out["prevResult"])["cniVersion"]; string(v) != `"1.0.0"` {
			t.Errorf("prevResult cniVersion = %s, want the result's own 1.0.0", v)
		}
	})

	t.Run("no declared capability", func(t *testing.T) {
		c := chainOf(t, "eth1", "storage", "0.4.0", `{"type":"macvlan","master":"eth0"}`)
		b, err := buildConfig(c, c.Plugins[0], nil, caps, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := decodeObj(t, b)
		if want := []string{"cniVersion", "master", "name", "type"}; !reflect.DeepEqual(keys(out), want) {
			t.Errorf("keys = %v, want %v (no runtimeConfig)", keys(out), want)
		}
	})

	t.Run("declared capability without runtime argument", func(t *testing.T) {
		c := chainOf(t, "eth1", "storage", "1.0.0", `{"type":"portmap","capabilities":{"portMappings":true}}`)
		b, err := buildConfig(c, c.Plugins[0], nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := decodeObj(t, b)["runtimeConfig"]; ok {
			t.Errorf("runtimeConfig injected with no capability arguments: %s", b)
		}
	})

	t.Run("extra fields", func(t *testing.T) {
		c := chainOf(t, "eth1", "storage", "1.1.0", `{"type":"bridge","cni.dev/valid-attachments":[]}`)
		extra := map[string]json.RawMessage{"cni.dev/valid-attachments": json.RawMessage(`[{"containerID":"x","ifname":"eth1"}]`)}
		b, err := buildConfig(c, c.Plugins[0], nil, nil, extra)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(decodeObj(t, b)["cni.dev/valid-attachments"]); got != string(extra["cni.dev/valid-attachments"]) {
			t.Errorf("extra field = %s, want %s", got, extra["cni.dev/valid-attachments"])
		}
	})

	t.Run("not an object", func(t *testing.T) {
		p := &conf.Plugin{Type: "x", Bytes: []byte(`[1]`)}
		if _, err := buildConfig(c, p, nil, nil, nil); err == nil {
			t.Error("a plugin configuration that is not an object was accepted")
		}
	})
}

func TestBuildConfigDoesNotChangePlugin(t *testing.T) {
	c := chainOf(t, "eth1", "storage", "1.0.0", `{"type":"portmap","prevResult":{"x":1},"capabilities":{"portMappings":true}}`)
	before := string(c.Plugins[0].Bytes)
	caps := map[string]json.RawMessage{"portMappings": json.RawMessage(`[]`)}
	extra := map[string]json.RawMessage{"k": json.RawMessage(`1`)}
	if _, err := buildConfig(c, c.Plugins[0], testResult("10.0.0.1"), caps, extra); err != nil {
		t.Fatal(err)
	}
	if after := string(c.Plugins[0].Bytes); after != before {
		t.Errorf("plugin bytes changed: %s -> %s", before, after)
	}
}

func TestAddChainsPrevResults(t *testing.T) {
	for _, tc := range []struct{ chainVer, pluginVer string }{
		{"0.3.1", ""}, {"0.4.0", ""}, {"1.0.0", ""}, {"1.1.0", ""},
		// Plugins answering at another version than the chain's: the
		// chain's result is still at the chain's version.
		{"0.3.1", "1.0.0"}, {"0.4.0", "1.1.0"}, {"1.0.0", "0.4.0"}, {"1.0.0", "0.3.1"},
	} {
		t.Run(tc.chainVer+"/"+tc.pluginVer, func(t *testing.T) {
			f := delegatetest.New()
			f.SetResultVersion(tc.pluginVer)
			for i, p := range []string{"a", "b", "c"} {
				f.SetResult(p, "eth1", testResult(fmt.Sprintf("10.0.%d.2", i+1)))
			}
			c := chainOf(t, "eth1", "storage", tc.chainVer, `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
			var spans []Span
			r := &Runner{Path: []string{"/opt/cni/bin", "/usr/lib/cni"}, Exec: f, Observe: func(s Span) { spans = append(spans, s) }}
			res, ran, err := r.Add(context.Background(), c, testEnv("/run/netns/x"))
			if err != nil {
				t.Fatal(err)
			}
			if ran != c {
				t.Errorf("ran = %v, want the whole chain", pluginTypes(ran))
			}
			if res.Version() != tc.chainVer {
				t.Errorf("result version = %s, want the chain's %s", res.Version(), tc.chainVer)
			}
			got, err := types100.NewResultFromResult(res)
			if err != nil {
				t.Fatal(err)
			}
			if delegatetest.IPOf(got) != "10.0.3.2" {
				t.Errorf("chain result IP = %s, want the last plugin's 10.0.3.2", delegatetest.IPOf(got))
			}
			calls := f.Calls()
			if want := []string{"ADD a/eth1", "ADD b/eth1", "ADD c/eth1"}; !reflect.DeepEqual(delegatetest.Summary(calls), want) {
				t.Fatalf("calls = %v, want %v", delegatetest.Summary(calls), want)
			}
			for i, call := range calls {
				if call.ContainerID != "ctr-1" || call.NetNS != "/run/netns/x" || call.Args != "IgnoreUnknown=true;K=V" ||
					call.Path != "/opt/cni/bin"+string(os.PathListSeparator)+"/usr/lib/cni" {
					t.Errorf("call %d environment = %+v", i, call)
				}
				if call.Str("name") != "storage" || call.Str("cniVersion") != tc.chainVer {
					t.Errorf("call %d name/cniVersion = %s/%s", i, call.Str("name"), call.Str("cniVersion"))
				}
				if i == 0 {
					if call.HasPrevResult() {
						t.Errorf("first plugin got a prevResult: %s", call.Conf["prevResult"])
					}
					continue
				}
				if want := fmt.Sprintf("10.0.%d.2", i); delegatetest.IPOf(call.PrevResult(t)) != want {
					t.Errorf("plugin %d prevResult IP = %s, want the previous plugin's %s", i, delegatetest.IPOf(call.PrevResult(t)), want)
				}
			}
			if len(spans) != 3 || spans[1].Verb != "ADD" || spans[1].Plugin != "b" || spans[1].IfName != "eth1" ||
				spans[1].Err != nil || spans[1].Took < 0 {
				t.Errorf("observed %+v, want one span per plugin", spans)
			}
		})
	}
}

func TestAddFailure(t *testing.T) {
	three := []string{`{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`}
	t.Run("plugin fails", func(t *testing.T) {
		f := delegatetest.New()
		f.SetResult("a", "eth1", testResult("10.0.1.2"))
		f.FailOn("b", "ADD", "eth1", 11)
		c := chainOf(t, "eth1", "n", "1.0.0", three...)
		res, ran, err := (&Runner{Exec: f}).Add(context.Background(), c, testEnv("/x"))
		var pe *PluginError
		if !errors.As(err, &pe) || pe.Plugin != "b" || pe.Index != 1 {
			t.Fatalf("error = %v (%T), want a PluginError for b at 1", err, err)
		}
		var te *types.Error
		if !errors.As(err, &te) || te.Code != 11 || pe.CNICode() != 11 {
			t.Errorf("the plugin's CNI error not kept: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "plugin b: ") {
			t.Errorf("message = %q, want it to name the plugin", err)
		}
		if got := pluginTypes(ran); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("ran = %v, want [a b] (a ran, b ran and failed)", got)
		}
		if r100, _ := types100.NewResultFromResult(res); delegatetest.IPOf(r100) != "10.0.1.2" {
			t.Errorf("result = %v, want a's, for the rollback", res)
		}
		if want := []string{"ADD a/eth1", "ADD b/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
			t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
		}
		if len(c.Plugins) != 3 {
			t.Errorf("ran changed the chain: %v", pluginTypes(c))
		}
	})
	t.Run("first plugin fails", func(t *testing.T) {
		f := delegatetest.New()
		f.FailOn("a", "ADD", "*", 7)
		c := chainOf(t, "eth1", "n", "1.0.0", three[:2]...)
		res, ran, err := (&Runner{Exec: f}).Add(context.Background(), c, testEnv("/x"))
		if err == nil || res != nil {
			t.Fatalf("res, err = %v, %v; want no result and an error", res, err)
		}
		if got := pluginTypes(ran); !reflect.DeepEqual(got, []string{"a"}) {
			t.Errorf("ran = %v, want [a]", got)
		}
	})
	t.Run("binary not found", func(t *testing.T) {
		f := delegatetest.New()
		f.NotFound("b")
		c := chainOf(t, "eth1", "n", "1.0.0", three...)
		_, ran, err := (&Runner{Path: []string{"/opt/cni/bin"}, Exec: f}).Add(context.Background(), c, testEnv("/x"))
		var pe *PluginError
		if !errors.As(err, &pe) || pe.Plugin != "b" || pe.Index != 1 || pe.CNICode() != types.ErrInvalidNetworkConfig {
			t.Fatalf("error = %v, want a PluginError for b at 1 with code 7", err)
		}
		var nf *NotFoundError
		if !errors.As(err, &nf) || nf.Plugin != "b" {
			t.Errorf("error = %v, want a NotFoundError for b", err)
		}
		if got := pluginTypes(ran); !reflect.DeepEqual(got, []string{"a"}) {
			t.Errorf("ran = %v, want [a] (b never ran)", got)
		}
		if want := []string{"ADD a/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
			t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
		}
	})
	t.Run("first binary not found", func(t *testing.T) {
		f := delegatetest.New()
		f.NotFound("a")
		_, ran, err := (&Runner{Exec: f}).Add(context.Background(), chainOf(t, "eth1", "n", "1.0.0", three...), testEnv("/x"))
		if err == nil || ran != nil {
			t.Errorf("ran, err = %v, %v; want nil (nothing ran) and an error", pluginTypes(ran), err)
		}
	})
	t.Run("result not JSON", func(t *testing.T) {
		ex := answer(func(call int) ([]byte, error) {
			if call == 1 {
				return []byte("not json"), nil
			}
			return []byte(`{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.9/24"}]}`), nil
		})
		_, ran, err := (&Runner{Exec: ex}).Add(context.Background(), chainOf(t, "eth1", "n", "1.0.0", three...), testEnv("/x"))
		var pe *PluginError
		if !errors.As(err, &pe) || pe.Index != 1 || pe.CNICode() != types.ErrInternal || !strings.Contains(err.Error(), "decoding the plugin's result") {
			t.Errorf("error = %v, want b's undecodable result, code 999", err)
		}
		if got := pluginTypes(ran); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("ran = %v, want [a b]", got)
		}
	})
	t.Run("result without cniVersion", func(t *testing.T) {
		// Taken to be at the configuration's version, as libcni does.
		for _, out := range []string{`{"ips":[{"address":"10.0.0.9/24"}]}`, `{"cniVersion":"","ips":[{"address":"10.0.0.9/24"}]}`} {
			ex := answer(func(int) ([]byte, error) { return []byte(out), nil })
			res, _, err := (&Runner{Exec: ex}).Add(context.Background(), chainOf(t, "eth1", "n", "0.4.0", three[0]), testEnv("/x"))
			if err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if r100, _ := types100.NewResultFromResult(res); res.Version() != "0.4.0" || delegatetest.IPOf(r100) != "10.0.0.9" {
				t.Errorf("%s: result = %v, want 10.0.0.9 at 0.4.0", out, res)
			}
		}
		ex := answer(func(int) ([]byte, error) { return []byte("null"), nil })
		if res, _, err := (&Runner{Exec: ex}).Add(context.Background(), chainOf(t, "eth1", "n", "1.1.0", three[0]), testEnv("/x")); err != nil || res.Version() != "1.1.0" {
			t.Errorf("null: %v, %v; want an empty result at 1.1.0", res, err)
		}
	})
	t.Run("empty chain", func(t *testing.T) {
		_, _, err := (&Runner{Exec: delegatetest.New()}).Add(context.Background(), &conf.Chain{IfName: "eth1", CNIVersion: "1.0.0"}, testEnv("/x"))
		if err == nil {
			t.Fatal("an empty chain returned no error")
		}
	})
	t.Run("bad plugin configuration", func(t *testing.T) {
		c := chainOf(t, "eth1", "n", "1.0.0", three...)
		c.Plugins[1] = &conf.Plugin{Type: "b", Bytes: []byte(`"not an object"`)}
		f := delegatetest.New()
		_, ran, err := (&Runner{Exec: f}).Add(context.Background(), c, testEnv("/x"))
		var pe *PluginError
		if !errors.As(err, &pe) || pe.Index != 1 || pe.CNICode() != types.ErrInternal {
			t.Errorf("error = %v, want a PluginError for b, code 999", err)
		}
		if got := pluginTypes(ran); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("ran = %v, want [a b]", got)
		}
	})
}

// answerExec is an Exec whose answers come from a function of the call's
// number (0 first).
type answerExec struct {
	calls int
	f     func(call int) ([]byte, error)
}

func answer(f func(call int) ([]byte, error)) *answerExec { return &answerExec{f: f} }

func (a *answerExec) ExecPlugin(context.Context, string, []byte, []string) ([]byte, error) {
	a.calls++
	return a.f(a.calls - 1)
}

func (a *answerExec) FindInPath(plugin string, _ []string) (string, error) {
	return "/x/" + plugin, nil
}

func (a *answerExec) Decode([]byte) (version.PluginInfo, error) {
	return version.PluginSupports("1.0.0"), nil
}

func TestPluginError(t *testing.T) {
	inner := types.NewError(4, "bad config", "field x")
	nf := &NotFoundError{Plugin: "bridge", Err: os.ErrNotExist}
	for _, tc := range []struct {
		name string
		err  *PluginError
		msg  string
		code uint
	}{
		{"CNI error", &PluginError{Plugin: "bridge", Index: 1, Err: inner}, "plugin bridge: bad config; field x", 4},
		{"wrapped CNI error", &PluginError{Plugin: "bridge", Err: fmt.Errorf("ipam x: %w", inner)}, "plugin bridge: ipam x: bad config; field x", 4},
		{"not found", &PluginError{Plugin: "bridge", Err: nf}, "plugin bridge: " + os.ErrNotExist.Error(), 7},
		{"other", &PluginError{Plugin: "bridge", Err: errors.New("boom")}, "plugin bridge: boom", 999},
	} {
		if got := tc.err.Error(); got != tc.msg {
			t.Errorf("%s: Error() = %q, want %q", tc.name, got, tc.msg)
		}
		if got := tc.err.CNICode(); got != tc.code {
			t.Errorf("%s: CNICode() = %d, want %d", tc.name, got, tc.code)
		}
		if !errors.Is(tc.err, tc.err.Err) {
			t.Errorf("%s: does not unwrap to its cause", tc.name)
		}
	}
	if !errors.Is(nf, os.ErrNotExist) || nf.CNICode() != 7 {
		t.Errorf("NotFoundError %v does not unwrap, or its code is %d", nf, nf.CNICode())
	}
}

func TestDel(t *testing.T) {
	for _, ver := range conf.SupportedVersions() {
		t.Run(ver, func(t *testing.T) {
			// c is missing (Del goes on past it: it holds nothing that
			// could be released), b fails (Del stops there, as libcni
			// does: a holds what b needs for a retry).
			f := delegatetest.New()
			f.NotFound("c")
			f.FailOn("b", "DEL", "eth1", 11)
			f.FailOn("a", "DEL", "eth1", 5)
			c := chainOf(t, "eth1", "n", ver, `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
			prev, err := testResult("10.9.9.9").GetAsVersion(ver)
			if err != nil {
				t.Fatal(err)
			}
			err = (&Runner{Exec: f}).Del(context.Background(), c, testEnv("/x"), prev)
			calls := f.Calls()
			if want := []string{"DEL b/eth1"}; !reflect.DeepEqual(delegatetest.Summary(calls), want) {
				t.Fatalf("calls = %v, want %v (reverse, past the missing c, stopping at b)", delegatetest.Summary(calls), want)
			}
			var joined interface{ Unwrap() []error }
			if !errors.As(err, &joined) {
				t.Fatalf("error = %v, want every failure", err)
			}
			var failed []string
			for _, e := range joined.Unwrap() {
				var pe *PluginError
				if !errors.As(e, &pe) {
					t.Errorf("error %v is not a PluginError", e)
					continue
				}
				failed = append(failed, fmt.Sprintf("%s@%d:%d", pe.Plugin, pe.Index, pe.CNICode()))
			}
			if want := []string{"c@2:7", "b@1:11"}; !reflect.DeepEqual(failed, want) {
				t.Errorf("failures = %v, want %v", failed, want)
			}
			withPrev := conf.AtLeast(ver, "0.4.0")
			for _, call := range calls {
				if call.HasPrevResult() != withPrev {
					t.Errorf("%s: prevResult present = %v, want %v", call, call.HasPrevResult(), withPrev)
				}
				if withPrev && delegatetest.IPOf(call.PrevResult(t)) != "10.9.9.9" {
					t.Errorf("%s: prevResult = %s", call, call.Conf["prevResult"])
				}
				if call.Str("cniVersion") != ver {
					t.Errorf("%s: cniVersion = %s", call, call.Str("cniVersion"))
				}
			}
		})
	}
}

func TestDelNilPrevAndSuccess(t *testing.T) {
	f := delegatetest.New()
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`, `{"type":"b"}`)
	if err := (&Runner{Exec: f}).Del(context.Background(), c, testEnv(""), nil); err != nil {
		t.Fatal(err)
	}
	for _, call := range f.Calls() {
		if call.HasPrevResult() {
			t.Errorf("%s got a prevResult without one given", call)
		}
		if call.NetNS != "" {
			t.Errorf("%s: CNI_NETNS = %q, want empty", call, call.NetNS)
		}
	}
	if want := []string{"DEL b/eth1", "DEL a/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
		t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
	}
}

func TestDelNotFoundGoesOn(t *testing.T) {
	f := delegatetest.New()
	f.NotFound("b")
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
	err := (&Runner{Exec: f}).Del(context.Background(), c, testEnv("/x"), nil)
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Plugin != "b" {
		t.Errorf("error = %v, want a NotFoundError for b", err)
	}
	if want := []string{"DEL c/eth1", "DEL a/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
		t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
	}
}

func TestCheck(t *testing.T) {
	prev := testResult("10.4.4.4")
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)

	t.Run("success", func(t *testing.T) {
		f := delegatetest.New()
		if err := (&Runner{Exec: f}).Check(context.Background(), c, testEnv("/x"), prev); err != nil {
			t.Fatal(err)
		}
		if want := []string{"CHECK a/eth1", "CHECK b/eth1", "CHECK c/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
			t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
		}
		for _, call := range f.Calls() {
			if delegatetest.IPOf(call.PrevResult(t)) != "10.4.4.4" {
				t.Errorf("%s: prevResult = %s, want the given one", call, call.Conf["prevResult"])
			}
		}
	})
	t.Run("stops at first failure", func(t *testing.T) {
		f := delegatetest.New()
		f.FailOn("b", "CHECK", "eth1", 4)
		f.FailOn("c", "CHECK", "eth1", 5)
		err := (&Runner{Exec: f}).Check(context.Background(), c, testEnv("/x"), prev)
		var pe *PluginError
		if !errors.As(err, &pe) || pe.Plugin != "b" || pe.Index != 1 || pe.CNICode() != 4 {
			t.Fatalf("error = %v, want a PluginError for b with code 4", err)
		}
		if want := []string{"CHECK a/eth1", "CHECK b/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
			t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
		}
	})
}

func TestGC(t *testing.T) {
	c := chainOf(t, "eth1", "n", "1.1.0",
		`{"type":"a","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}}`, `{"type":"b"}`, `{"type":"c","ipam":{"type":"dhcp"}}`)
	valid := []types.GCAttachment{{ContainerID: "ctr-1", IfName: "eth1"}, {ContainerID: "ctr-2", IfName: "eth1"}}
	wantValid := `[{"containerID":"ctr-1","ifname":"eth1"},{"containerID":"ctr-2","ifname":"eth1"}]`

	t.Run("keys", func(t *testing.T) {
		f := delegatetest.New()
		if err := (&Runner{Exec: f}).GC(context.Background(), c, valid); err != nil {
			t.Fatal(err)
		}
		calls := f.Calls()
		// The IPAM plugins get theirs from GCIPAM.
		if want := []string{"GC a/", "GC b/", "GC c/"}; !reflect.DeepEqual(delegatetest.Summary(calls), want) {
			t.Fatalf("calls = %v, want %v (each plugin)", delegatetest.Summary(calls), want)
		}
		for _, call := range calls {
			for _, key := range []string{"cni.dev/valid-attachments", "cni.dev/attachments"} {
				if got := string(call.Conf[key]); got != wantValid {
					t.Errorf("%s: %s = %s, want %s", call, key, got, wantValid)
				}
			}
			if call.Str("name") != "n" || call.Str("cniVersion") != "1.1.0" || call.HasPrevResult() || call.ContainerID != "" {
				t.Errorf("%s: configuration %s", call, call.Stdin)
			}
		}
	})
	t.Run("no valid attachment", func(t *testing.T) {
		f := delegatetest.New()
		if err := (&Runner{Exec: f}).GC(context.Background(), c, nil); err != nil {
			t.Fatal(err)
		}
		if got := string(f.Calls()[0].Conf["cni.dev/valid-attachments"]); got != "[]" {
			t.Errorf("valid attachments = %s, want [] (none valid, not unknown)", got)
		}
	})
	t.Run("goes on past failures", func(t *testing.T) {
		f := delegatetest.New()
		f.FailOn("a", "GC", "*", 11)
		f.NotFound("c")
		err := (&Runner{Exec: f}).GC(context.Background(), c, valid)
		if want := []string{"GC a/", "GC b/"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
			t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
		}
		var joined interface{ Unwrap() []error }
		if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
			t.Fatalf("error = %v, want two failures", err)
		}
		var got []string
		for _, e := range joined.Unwrap() {
			var pe *PluginError
			if !errors.As(e, &pe) {
				t.Fatalf("%v is not a PluginError", e)
			}
			got = append(got, fmt.Sprintf("%s@%d:%d", pe.Plugin, pe.Index, pe.CNICode()))
		}
		if want := []string{"a@0:11", "c@2:7"}; !reflect.DeepEqual(got, want) {
			t.Errorf("failures = %v, want %v", got, want)
		}
	})
}

// TestIPAMs: every plugin's IPAM section with a type, canonical, so that
// the same section written two ways has one key.
func TestIPAMs(t *testing.T) {
	c := chainOf(t, "eth1", "n", "1.0.0",
		`{"type":"a","ipam":{"type":"host-local","subnet":"10.1.0.0/16","dataDir":"/d"}}`, `{"type":"b"}`,
		`{"type":"c","ipam":{}}`, `{"type":"d","ipam":{"dataDir":"/d","type":"host-local","subnet":"10.1.0.0/16"}}`)
	got := IPAMs(c)
	if len(got) != 2 {
		t.Fatalf("IPAMs = %+v, want a's and d's", got)
	}
	want := `{"dataDir":"/d","subnet":"10.1.0.0/16","type":"host-local"}`
	for i, plugin := range []string{"a", "d"} {
		a := got[i]
		if a.Type != "host-local" || a.Network != "n" || a.IfName != "eth1" || a.Plugin != plugin || string(a.Section) != want {
			t.Errorf("IPAMs[%d] = %+v %s, want %s's host-local section %s", i, a, a.Section, plugin, want)
		}
	}
	if got[0].Key() != got[1].Key() {
		t.Errorf("one section written two ways has two keys: %q, %q", got[0].Key(), got[1].Key())
	}
	other := chainOf(t, "eth2", "m", "1.0.0", `{"type":"a","ipam":{"type":"host-local","subnet":"10.1.0.0/16","dataDir":"/d"}}`)
	if IPAMs(other)[0].Key() == got[0].Key() {
		t.Error("one section in two networks has one key")
	}
}

// TestGCIPAM: an IPAM plugin gets GC at 1.1.0, with its section alone and
// the network's name, whatever the chain's version; one that does not
// speak 1.1.0 or refuses GC there is skipped (ErrNoGC); other failures
// name the plugin and its IPAM.
func TestGCIPAM(t *testing.T) {
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"a","master":"m0","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}}`)
	a := IPAMs(c)[0]
	valid := []types.GCAttachment{{ContainerID: "ctr-1", IfName: "eth1"}}

	f := delegatetest.New()
	if err := (&Runner{Exec: f}).GCIPAM(context.Background(), a, valid); err != nil {
		t.Fatal(err)
	}
	calls := f.Calls()
	if want := []string{"VERSION host-local/", "GC host-local/"}; !reflect.DeepEqual(delegatetest.Summary(calls), want) {
		t.Fatalf("calls = %v, want %v", delegatetest.Summary(calls), want)
	}
	want := `{"cni.dev/attachments":[{"containerID":"ctr-1","ifname":"eth1"}],` +
		`"cni.dev/valid-attachments":[{"containerID":"ctr-1","ifname":"eth1"}],` +
		`"cniVersion":"1.1.0","ipam":{"subnet":"10.1.0.0/16","type":"host-local"},"name":"n"}`
	if got := string(calls[1].Stdin); got != want {
		t.Errorf("GC's configuration = %s\nwant %s", got, want)
	}

	f = delegatetest.New()
	f.SetVersions("host-local", "0.3.1", "0.4.0", "1.0.0")
	err := (&Runner{Exec: f}).GCIPAM(context.Background(), a, valid)
	if !errors.Is(err, ErrNoGC) || len(f.CallsOf("GC")) != 0 {
		t.Errorf("a plugin without 1.1.0: error %v, %d GC calls; want ErrNoGC and none", err, len(f.CallsOf("GC")))
	}
	f = delegatetest.New()
	f.FailOn("host-local", "GC", "*", types.ErrIncompatibleCNIVersion)
	if err := (&Runner{Exec: f}).GCIPAM(context.Background(), a, valid); !errors.Is(err, ErrNoGC) {
		t.Errorf("a plugin refusing GC at 1.1.0: error %v, want ErrNoGC", err)
	}
	f = delegatetest.New()
	f.FailOn("host-local", "GC", "*", 11)
	err = (&Runner{Exec: f}).GCIPAM(context.Background(), a, valid)
	var pe *PluginError
	if !errors.As(err, &pe) || errors.Is(err, ErrNoGC) || pe.CNICode() != 11 || !strings.HasPrefix(err.Error(), "plugin a: ipam host-local: ") {
		t.Errorf("a failing GC: error %v, want plugin a's IPAM named, code 11", err)
	}
	f = delegatetest.New()
	f.NotFound("host-local")
	if err := (&Runner{Exec: f}).GCIPAM(context.Background(), a, valid); errors.Is(err, ErrNoGC) || !errors.As(err, &pe) || pe.CNICode() != 7 {
		t.Errorf("a missing IPAM binary: error %v, want code 7, not a skip", err)
	}
}

func TestStatus(t *testing.T) {
	c := chainOf(t, "eth1", "n", "1.1.0", `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
	f := delegatetest.New()
	if err := (&Runner{Exec: f}).Status(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if want := []string{"STATUS a/", "STATUS b/", "STATUS c/"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
		t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
	}
	f = delegatetest.New()
	f.FailOn("b", "STATUS", "*", 50)
	err := (&Runner{Exec: f}).Status(context.Background(), c)
	var pe *PluginError
	if !errors.As(err, &pe) || pe.Plugin != "b" || pe.Index != 1 || pe.CNICode() != 50 {
		t.Errorf("error = %v, want b's, code 50", err)
	}
	if want := []string{"STATUS a/", "STATUS b/"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
		t.Errorf("calls = %v, want %v (stops at the first not ready)", delegatetest.Summary(f.Calls()), want)
	}
}

func TestPrefix(t *testing.T) {
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
	for _, tc := range []struct {
		n    int
		want []string
	}{{-1, nil}, {0, nil}, {1, []string{"a"}}, {2, []string{"a", "b"}}, {3, []string{"a", "b", "c"}}, {4, []string{"a", "b", "c"}}} {
		p := prefix(c, tc.n)
		if got := pluginTypes(p); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("prefix(%d) = %v, want %v", tc.n, got, tc.want)
		}
		if p != nil && (p == c || p.IfName != c.IfName || p.Network != c.Network || p.CNIVersion != c.CNIVersion) {
			t.Errorf("prefix(%d) is not a copy of the chain: %+v", tc.n, p)
		}
	}
	if got := pluginTypes(c); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("prefix changed the original: %v", got)
	}
}

func TestFindInPath(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	for _, f := range []string{filepath.Join(d2, "bridge"), filepath.Join(d1, "macvlan"), filepath.Join(d2, "macvlan")} {
		if err := os.WriteFile(f, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(d1, "bridge"), 0o755); err != nil { // a folder is no plugin
		t.Fatal(err)
	}
	paths := []string{filepath.Join(d1, "missing"), d1, d2}
	for _, tc := range []struct{ plugin, want string }{
		{"bridge", filepath.Join(d2, "bridge")},
		{"macvlan", filepath.Join(d1, "macvlan")}, // the first folder wins
		{"ipvlan", ""}, {"", ""}, {".", ""}, {"..", ""}, {"../" + filepath.Base(d2) + "/bridge", ""},
	} {
		got, err := findInPath(tc.plugin, paths)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("findInPath(%q) = %q, %v; want %q", tc.plugin, got, err, tc.want)
		}
	}
}

func TestEnviron(t *testing.T) {
	r := &Runner{Path: []string{"/a", "/b"}}
	env := r.environ("CHECK", Env{ContainerID: "c", NetNS: "/n", IfName: "eth1", CNIArgs: "K=V"})
	set := map[string][]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		set[k] = append(set[k], v)
	}
	for k, v := range map[string]string{"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "c", "CNI_NETNS": "/n",
		"CNI_IFNAME": "eth1", "CNI_ARGS": "K=V", "CNI_PATH": "/a" + string(os.PathListSeparator) + "/b"} {
		if !reflect.DeepEqual(set[k], []string{v}) {
			t.Errorf("%s = %q, want once %q", k, set[k], v)
		}
	}
	if len(env) < len(os.Environ()) {
		t.Errorf("nicmux's own environment was not passed on: %d variables of %d", len(env), len(os.Environ()))
	}
}

// TestDelWithoutRefusedArgs: a plugin that refuses the recorded CNI_ARGS
// on DEL (as the reference plugins refuse an unknown key without
// IgnoreUnknown, or an empty pair with it) is run again without them, and
// the release goes on; the plugins that took them keep them; a failure
// that is not a refusal is not retried.
func TestDelWithoutRefusedArgs(t *testing.T) {
	for _, args := range []string{"JOB=web", "IgnoreUnknown=1;;JOB=web", "IgnoreUnknown=maybe", "A=1=2"} {
		t.Run(args, func(t *testing.T) {
			f := delegatetest.New()
			f.RefuseArgs("b")
			c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
			env := testEnv("/x")
			env.CNIArgs = args
			if err := (&Runner{Exec: f}).Del(context.Background(), c, env, nil); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			var got []string
			for _, call := range f.Calls() {
				got = append(got, call.String()+" "+call.Args)
			}
			want := []string{"DEL c/eth1 " + args, "DEL b/eth1 " + args, "DEL b/eth1 ", "DEL a/eth1 " + args}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("calls = %q, want %q", got, want)
			}
		})
	}
	t.Run("ADD is not retried", func(t *testing.T) {
		f := delegatetest.New()
		f.RefuseArgs("a")
		env := testEnv("/x")
		env.CNIArgs = "JOB=web"
		_, _, err := (&Runner{Exec: f}).Add(context.Background(), chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`), env)
		if err == nil || !strings.Contains(err.Error(), `plugin a: ARGS: unknown args ["JOB=web"]`) || len(f.Calls()) != 1 {
			t.Errorf("ADD: %v after %d calls, want the refusal after one", err, len(f.Calls()))
		}
	})
	t.Run("other failures are not retried", func(t *testing.T) {
		f := delegatetest.New()
		f.FailOn("a", "DEL", "eth1", 11)
		err := (&Runner{Exec: f}).Del(context.Background(), chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`), testEnv("/x"), nil)
		if err == nil || len(f.Calls()) != 1 {
			t.Errorf("DEL: %v after %d calls, want the failure after one", err, len(f.Calls()))
		}
	})
	t.Run("refused without arguments too", func(t *testing.T) {
		f := delegatetest.New()
		f.RefuseArgs("a")
		f.FailOn("a", "DEL", "eth1", 11)
		env := testEnv("/x")
		env.CNIArgs = "JOB=web"
		err := (&Runner{Exec: f}).Del(context.Background(), chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`), env, nil)
		var pe *PluginError
		if !errors.As(err, &pe) || pe.CNICode() != 11 || !strings.Contains(err.Error(), `without CNI_ARGS, which it refused (ARGS: unknown args ["JOB=web"]): fake a failed DEL`) {
			t.Errorf("DEL: %v, want the failure without the arguments, code 11, naming the refusal", err)
		}
	})
}

// TestLinkNotFoundNamesTheLink: netlink's bare "Link not found", as
// macvlan reports a master that is missing, gains the field of the
// plugin's configuration that names the link; a message that names it
// already, or a plugin without one, is left as it is.
func TestLinkNotFoundNamesTheLink(t *testing.T) {
	cases := []struct{ plugin, msg, want string }{
		{`{"type":"a","master":"ens5"}`, "Link not found", "plugin a: Link not found (master: ens5)"},
		{`{"type":"a","device":"ens6"}`, "Link not found", "plugin a: Link not found (device: ens6)"},
		{`{"type":"a","master":"ens5"}`, `failed to lookup master "ens5": Link not found`, `plugin a: failed to lookup master "ens5": Link not found`},
		{`{"type":"a"}`, "Link not found", "plugin a: Link not found"},
		{`{"type":"a","master":"ens5"}`, "no such thing", "plugin a: no such thing"},
	}
	for _, c := range cases {
		for _, verb := range []string{"ADD", "DEL"} {
			f := delegatetest.New()
			f.FailWith("a", verb, "eth1", 999, c.msg)
			chain := chainOf(t, "eth1", "n", "1.0.0", c.plugin)
			var err error
			if verb == "ADD" {
				_, _, err = (&Runner{Exec: f}).Add(context.Background(), chain, testEnv("/x"))
			} else {
				err = (&Runner{Exec: f}).Del(context.Background(), chain, testEnv("/x"), nil)
			}
			var pe *PluginError
			if !errors.As(err, &pe) || err.Error() != c.want || pe.CNICode() != 999 {
				t.Errorf("%s %s failing with %q: %v, want %q (code 999)", verb, c.plugin, c.msg, err, c.want)
			}
		}
	}
}
