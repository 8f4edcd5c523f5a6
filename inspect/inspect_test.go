package inspect

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/ns"
)

func TestStaleReason(t *testing.T) {
	a := ns.NetNSID{Dev: 4, Ino: 10, Cookie: 7}
	for _, tc := range []struct {
		recorded, cur ns.NetNSID
		want          string
	}{
		{a, a, ""},
		{a, ns.NetNSID{}, "is gone"},
		{a, ns.NetNSID{Dev: 4, Ino: 10, Cookie: 8}, "another namespace"},
		{ns.NetNSID{}, a, ""}, // nothing recorded: nothing tells otherwise
	} {
		got := StaleReason("/run/netns/x", tc.recorded, tc.cur)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("StaleReason(%v, %v) = %q, want %q", tc.recorded, tc.cur, got, tc.want)
		}
	}
}

func TestChainOf(t *testing.T) {
	cfg := json.RawMessage(`{"name":"n","plugins":[{"type":"macvlan","ipam":{"type":"host-local"}},{"type":"tuning"}]}`)
	want := []ChainPlugin{{Type: "macvlan", IPAM: "host-local"}, {Type: "tuning"}}
	if got := chainOf(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("chainOf = %v, want %v", got, want)
	}
	if got := chainOf(json.RawMessage(`{`)); got == nil || len(got) != 0 {
		t.Errorf("chainOf(bad) = %#v, want empty, not nil (it prints as [])", got)
	}
}
