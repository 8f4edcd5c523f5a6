package mux

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestCheckNoState(t *testing.T) {
	h := newHarness(t)
	err := h.p.Check(context.Background(), h.args(""))
	if err == nil || codeOf(err) != types.ErrUnknownContainer {
		t.Errorf("CHECK without state: %v (code %d), want code 3", err, codeOf(err))
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls", n)
	}
}

func TestCheckIncompleteAdd(t *testing.T) {
	h := newHarness(t)
	failedRollback(t, h)
	err := h.p.Check(context.Background(), h.args(""))
	if err == nil || codeOf(err) != types.ErrUnknownContainer || !strings.Contains(err.Error(), "did not complete") {
		t.Errorf("CHECK after an incomplete ADD: %v (code %d), want code 3", err, codeOf(err))
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls", n)
	}
}

func TestCheckNetNSMismatch(t *testing.T) {
	h := newHarness(t)
	h.mustAdd(h.args(""))
	h.fake.Reset()
	for _, netns := range []string{h.newNetNS("netns-b"), filepath.Join(h.dir, "gone")} {
		a := h.args("")
		a.Netns = netns
		err := h.p.Check(context.Background(), a)
		if err == nil || !strings.Contains(err.Error(), "not the namespace ADD attached") {
			t.Errorf("CHECK in %s: %v, want a namespace mismatch", netns, err)
			continue
		}
		for _, ifname := range chainIfs {
			if !strings.Contains(err.Error(), ifname) {
				t.Errorf("error %q does not name %s", err, ifname)
			}
		}
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls", n)
	}
	// CHECK leaves the state alone.
	if c, err := h.record(); err != nil || !c.Complete {
		t.Errorf("state after CHECK: %+v, %v", c, err)
	}
}
