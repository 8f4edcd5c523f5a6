package delegate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nicmux/nicmux/delegate/delegatetest"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/nicmux/nicmux/conf"
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
	sort.Strings(out)
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
		b, err := BuildConfig(c, c.Plugins[0], nil, caps)
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
		// runtimeConfig: only the declared-true capability.
		rc := decodeObj(t, out["runtimeConfig"])
		if !reflect.DeepEqual(keys(rc), []string{"portMappings"}) {
			t.Errorf("runtimeConfig keys = %v, want only portMappings (bandwidth undeclared, ips declared false)", keys(rc))
		}
		if got, want := string(rc["portMappings"]), compact(t, string(caps["portMappings"])); got != want {
			t.Errorf("runtimeConfig.portMappings = %s, want %s", got, want)
		}
		// Every other key exactly as written.
		for k, v := range in {
			switch k {
			case "name", "cniVersion", "prevResult":
				continue
			}
			if got, want := string(out[k]), compact(t, string(v)); got != want {
				t.Errorf("%s = %s, want %s", k, got, want)
			}
		}
		if string(out["mtu"]) != "1500" || string(out["big"]) != "12345678901234567890" {
			t.Errorf("numbers changed: mtu=%s big=%s", out["mtu"], out["big"])
		}
		wantKeys := []string{"big", "capabilities", "cniVersion", "flag", "mtu", "name", "nested", "none", "ratio", "runtimeConfig", "type"}
		if !reflect.DeepEqual(keys(out), wantKeys) {
			t.Errorf("keys = %v, want %v", keys(out), wantKeys)
		}
	})

	t.Run("with prevResult", func(t *testing.T) {
		prev := testResult("10.1.2.3")
		b, err := BuildConfig(c, c.Plugins[0], prev, caps)
		if err != nil {
			t.Fatal(err)
		}
		out := decodeObj(t, b)
		got := delegatetest.DecodeResult(t, out["prevResult"])
		if delegatetest.IPOf(got) != "10.1.2.3" || len(got.Interfaces) != 1 || got.Interfaces[0].Name != "eth1" {
			t.Errorf("prevResult = %s, want the given result", out["prevResult"])
		}
		if got.CNIVersion != "1.1.0" { // delegatetest.DecodeResult converts; check the raw version
			t.Fatalf("delegatetest.DecodeResult did not convert: %s", got.CNIVersion)
		}
		if v := decodeObj(t, out["prevResult"])["cniVersion"]; string(v) != `"1.0.0"` {
			t.Errorf("prevResult cniVersion = %s, want 1.0.0", v)
		}
	})

	t.Run("no declared capability", func(t *testing.T) {
		c := chainOf(t, "eth1", "storage", "0.4.0", `{"type":"macvlan","master":"eth0"}`)
		b, err := BuildConfig(c, c.Plugins[0], nil, caps)
		if err != nil {
			t.Fatal(err)
		}
		out := decodeObj(t, b)
		if _, ok := out["runtimeConfig"]; ok {
			t.Errorf("runtimeConfig injected without a declared capability: %s", out["runtimeConfig"])
		}
		if want := []string{"cniVersion", "master", "name", "type"}; !reflect.DeepEqual(keys(out), want) {
			t.Errorf("keys = %v, want %v", keys(out), want)
		}
	})

	t.Run("declared capability without runtime argument", func(t *testing.T) {
		c := chainOf(t, "eth1", "storage", "1.0.0", `{"type":"portmap","capabilities":{"portMappings":true}}`)
		b, err := BuildConfig(c, c.Plugins[0], nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := decodeObj(t, b)["runtimeConfig"]; ok {
			t.Errorf("runtimeConfig injected with no capability arguments: %s", b)
		}
	})
}

func TestBuildConfigDoesNotChangePlugin(t *testing.T) {
	c := chainOf(t, "eth1", "storage", "1.0.0", `{"type":"portmap","prevResult":{"x":1},"capabilities":{"portMappings":true}}`)
	before := string(c.Plugins[0].Bytes)
	if _, err := BuildConfig(c, c.Plugins[0], testResult("10.0.0.1"), map[string]json.RawMessage{"portMappings": json.RawMessage(`[]`)}); err != nil {
		t.Fatal(err)
	}
	if after := string(c.Plugins[0].Bytes); after != before {
		t.Errorf("plugin bytes changed: %s -> %s", before, after)
	}
}

func env(netns string) Env {
	return Env{ContainerID: "ctr-1", NetNS: netns, IfName: "eth1", CNIArgs: "IgnoreUnknown=true;K=V"}
}

func TestAddChainsPrevResults(t *testing.T) {
	for _, tc := range []struct{ chainVer, pluginVer string }{
		{"0.3.1", ""}, {"0.4.0", ""}, {"1.0.0", ""},
		// Plugins answering at another version than the chain's: the
		// chain's result is still at the chain's version.
		{"0.3.1", "1.0.0"}, {"0.4.0", "1.1.0"}, {"1.0.0", "0.4.0"}, {"1.0.0", "0.3.1"},
	} {
		t.Run(tc.chainVer+"/"+tc.pluginVer, func(t *testing.T) {
			f := delegatetest.New()
			f.SetResultVersion(tc.pluginVer)
			for i, p := range []string{"a", "b", "c"} {
				r := testResult(fmt.Sprintf("10.0.%d.2", i+1))
				f.SetResult(p, "eth1", r)
			}
			c := chainOf(t, "eth1", "storage", tc.chainVer, `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
			r := &Runner{Path: []string{"/opt/cni/bin", "/usr/lib/cni"}, Exec: f}
			res, err := r.Add(context.Background(), c, env("/run/netns/x"))
			if err != nil {
				t.Fatal(err)
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
				prev := call.PrevResult(t)
				if want := fmt.Sprintf("10.0.%d.2", i); delegatetest.IPOf(prev) != want {
					t.Errorf("plugin %d prevResult IP = %s, want the previous plugin's %s", i, delegatetest.IPOf(prev), want)
				}
			}
		})
	}
}

func TestAddFailure(t *testing.T) {
	t.Run("plugin fails", func(t *testing.T) {
		f := delegatetest.New()
		f.SetResult("a", "eth1", testResult("10.0.1.2"))
		f.FailOn("b", "ADD", "eth1", 11)
		c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
		res, err := (&Runner{Exec: f}).Add(context.Background(), c, env("/x"))
		var pe *PluginError
		if !errors.As(err, &pe) || pe.Plugin != "b" || pe.Index != 1 {
			t.Fatalf("error = %v (%T), want a PluginError for b at 1", err, err)
		}
		var te *types.Error
		if !errors.As(err, &te) || te.Code != 11 {
			t.Errorf("delegate's CNI error not kept: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "plugin b: ") {
			t.Errorf("message = %q, want it to name the plugin", err)
		}
		if got := Attempted(err); got != 2 {
			t.Errorf("Attempted = %d, want 2 (a ran, b ran and failed)", got)
		}
		if res == nil {
			t.Fatal("no partial result returned")
		}
		if r100, _ := types100.NewResultFromResult(res); delegatetest.IPOf(r100) != "10.0.1.2" {
			t.Errorf("partial result = %v, want a's", res)
		}
		if want := []string{"ADD a/eth1", "ADD b/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
			t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
		}
	})
	t.Run("first plugin fails", func(t *testing.T) {
		f := delegatetest.New()
		f.FailOn("a", "ADD", "*", 7)
		c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`, `{"type":"b"}`)
		res, err := (&Runner{Exec: f}).Add(context.Background(), c, env("/x"))
		if err == nil || res != nil {
			t.Fatalf("res, err = %v, %v; want nil result and an error", res, err)
		}
		if got := Attempted(err); got != 1 {
			t.Errorf("Attempted = %d, want 1", got)
		}
	})
	t.Run("binary not found", func(t *testing.T) {
		f := delegatetest.New()
		f.NotFound("b")
		c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
		_, err := (&Runner{Path: []string{"/opt/cni/bin"}, Exec: f}).Add(context.Background(), c, env("/x"))
		var pe *PluginError
		if !errors.As(err, &pe) || pe.Plugin != "b" || pe.Index != 1 {
			t.Fatalf("error = %v, want a PluginError for b at 1", err)
		}
		var nf *NotFoundError
		if !errors.As(err, &nf) || nf.Plugin != "b" {
			t.Errorf("error = %v, want a NotFoundError for b", err)
		}
		if got := Attempted(err); got != 1 {
			t.Errorf("Attempted = %d, want 1 (b never ran)", got)
		}
		if want := []string{"ADD a/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
			t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
		}
	})
	t.Run("empty chain", func(t *testing.T) {
		f := delegatetest.New()
		_, err := (&Runner{Exec: f}).Add(context.Background(), &conf.Chain{IfName: "eth1", CNIVersion: "1.0.0"}, env("/x"))
		if err == nil {
			t.Fatal("an empty chain returned no error")
		}
		if got := Attempted(err); got != -1 {
			t.Errorf("Attempted = %d, want -1", got)
		}
	})
}

func TestAttempted(t *testing.T) {
	nf := &NotFoundError{Plugin: "x", Err: errors.New("missing")}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"ran and failed at 0", &PluginError{Plugin: "x", Index: 0, Err: errors.New("boom")}, 1},
		{"ran and failed at 3", &PluginError{Plugin: "x", Index: 3, Err: types.NewError(11, "busy", "")}, 4},
		{"wrapped", fmt.Errorf("eth1: %w", &PluginError{Plugin: "x", Index: 2, Err: errors.New("boom")}), 3},
		{"not found at 0", &PluginError{Plugin: "x", Index: 0, Err: nf}, 0},
		{"not found at 2", &PluginError{Plugin: "x", Index: 2, Err: fmt.Errorf("looking up: %w", nf)}, 2},
		{"plain error", errors.New("boom"), -1},
		{"bare NotFoundError", nf, -1},
		{"nil", nil, -1},
	} {
		if got := Attempted(tc.err); got != tc.want {
			t.Errorf("%s: Attempted = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPluginErrorMessage(t *testing.T) {
	inner := types.NewError(7, "bad config", "field x")
	err := &PluginError{Plugin: "bridge", Index: 1, Err: inner}
	if got, want := err.Error(), "plugin bridge: bad config; field x"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, inner) {
		t.Error("PluginError does not unwrap to its cause")
	}
	nf := &NotFoundError{Plugin: "bridge", Err: os.ErrNotExist}
	if !errors.Is(nf, os.ErrNotExist) || nf.Error() != os.ErrNotExist.Error() {
		t.Errorf("NotFoundError = %q, does not unwrap", nf)
	}
}

func TestDel(t *testing.T) {
	for _, ver := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(ver, func(t *testing.T) {
			f := delegatetest.New()
			f.FailOn("b", "DEL", "eth1", 11)
			f.FailOn("a", "DEL", "eth1", 5)
			c := chainOf(t, "eth1", "n", ver, `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
			prev, err := testResult("10.9.9.9").GetAsVersion(ver)
			if err != nil {
				t.Fatal(err)
			}
			err = (&Runner{Exec: f}).Del(context.Background(), c, env("/x"), prev)
			calls := f.Calls()
			if want := []string{"DEL c/eth1", "DEL b/eth1", "DEL a/eth1"}; !reflect.DeepEqual(delegatetest.Summary(calls), want) {
				t.Fatalf("calls = %v, want %v (reverse, past failures)", delegatetest.Summary(calls), want)
			}
			if err == nil {
				t.Fatal("failures were not reported")
			}
			var failed []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var pe *PluginError
				if !errors.As(e, &pe) {
					t.Errorf("error %v is not a PluginError", e)
					continue
				}
				failed = append(failed, fmt.Sprintf("%s@%d", pe.Plugin, pe.Index))
			}
			if want := []string{"b@1", "a@0"}; !reflect.DeepEqual(failed, want) {
				t.Errorf("failures = %v, want %v", failed, want)
			}
			var te *types.Error
			if !errors.As(err, &te) || te.Code != 11 {
				t.Errorf("first failure's CNI error not kept: %v", err)
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
	if err := (&Runner{Exec: f}).Del(context.Background(), c, env(""), nil); err != nil {
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
	err := (&Runner{Exec: f}).Del(context.Background(), c, env("/x"), nil)
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Errorf("error = %v, want a NotFoundError", err)
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
		if err := (&Runner{Exec: f}).Check(context.Background(), c, env("/x"), prev); err != nil {
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
		err := (&Runner{Exec: f}).Check(context.Background(), c, env("/x"), prev)
		var pe *PluginError
		if !errors.As(err, &pe) || pe.Plugin != "b" || pe.Index != 1 {
			t.Fatalf("error = %v, want a PluginError for b", err)
		}
		var te *types.Error
		if !errors.As(err, &te) || te.Code != 4 {
			t.Errorf("code not kept: %v", err)
		}
		if want := []string{"CHECK a/eth1", "CHECK b/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
			t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
		}
	})
}

func TestPrefix(t *testing.T) {
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`)
	pluginTypes := func(c *conf.Chain) []string {
		var out []string
		for _, p := range c.Plugins {
			out = append(out, p.Type)
		}
		return out
	}
	for _, tc := range []struct {
		n    int
		want []string
	}{
		{-1, []string{"a", "b", "c"}},
		{0, nil},
		{1, []string{"a"}},
		{2, []string{"a", "b"}},
		{3, []string{"a", "b", "c"}},
		{4, []string{"a", "b", "c"}},
	} {
		p := Prefix(c, tc.n)
		if got := pluginTypes(p); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Prefix(%d) = %v, want %v", tc.n, got, tc.want)
		}
		if p == c || p.IfName != c.IfName || p.Network != c.Network || p.CNIVersion != c.CNIVersion {
			t.Errorf("Prefix(%d) is not a copy of the chain: %+v", tc.n, p)
		}
	}
	if got := pluginTypes(c); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("Prefix changed the original: %v", got)
	}
}
