package mux

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// A container whose record a newer nicmux wrote (this one was rolled back
// below it) is taken to be live by every verb: ADD and DEL refuse it with
// code 5 naming the record, CHECK passes, GC releases none of it and
// forwards nothing to the delegates, whose GC would free what they are not
// told of. No delegate runs, and the record stays as it was.
func TestNewerRecordIsLeftAlone(t *testing.T) {
	h := newHarnessMode(t, true)
	h.write("multi.yaml", gcYAML)
	h.addAs(testID)
	h.addAs("stale")
	plan := filepath.Join(h.containerDir(), "container.json")
	b, err := os.ReadFile(plan)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"kind":"nicmuxContainerV2"`), []byte(`"kind":"nicmuxContainerV3"`), 1)
	if err := os.WriteFile(plan, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h.fake.Reset()
	refused := func(verb string, err error) {
		t.Helper()
		var e *types.Error
		if !errors.As(toCNIError(err), &e) || e.Code != types.ErrIOFailure || !strings.Contains(e.Msg, plan) || !strings.Contains(e.Msg, "newer nicmux") {
			t.Errorf("%s = %v, want code 5 naming %s and the newer nicmux", verb, err, plan)
		}
	}
	refused("ADD", h.add(h.args("")))
	refused("DEL", h.del(h.args("")))
	if err := h.p.Check(context.Background(), h.args("")); err != nil {
		t.Errorf("CHECK = %v, want it taken for live", err)
	}
	if calls := h.fake.Calls(); len(calls) != 0 {
		t.Errorf("delegates ran for the newer record: %v", calls)
	}
	err = h.gc() // neither container listed: "stale" is released, the newer one kept
	if err == nil || !strings.Contains(err.Error(), "newer nicmux") || !strings.Contains(err.Error(), "not forwarded") {
		t.Errorf("GC = %v, want it to say it forwarded nothing because of the newer record", err)
	}
	for _, c := range h.fake.Calls() {
		if c.Command == "GC" || c.ContainerID == testID {
			t.Errorf("GC called %s", c)
		}
	}
	if after, err := os.ReadFile(plan); err != nil || !bytes.Equal(after, b) {
		t.Errorf("the newer record changed: %v", err)
	}
	if exists(filepath.Join(h.stateDir, "containers", "stale")) {
		t.Error("GC kept the stale container beside the newer one")
	}
}
