package mux

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/nicmux/nicmux/state"
)

func TestLockTimeout(t *testing.T) {
	h := newHarness(t)
	h.p.LockTimeout = 100 * time.Millisecond
	s, err := state.Open(h.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lock, err := s.Acquire(context.Background(), testID, state.Exclusive)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	for name, verb := range map[string]func(context.Context, *skel.CmdArgs) error{
		"ADD": h.p.Add, "DEL": h.p.Del, "CHECK": h.p.Check,
	} {
		start := time.Now()
		err := verb(context.Background(), h.args(""))
		if err == nil {
			t.Errorf("%s succeeded while the lock is held", name)
			continue
		}
		if !errors.Is(err, state.ErrLockTimeout) || codeOf(err) != types.ErrTryAgainLater {
			t.Errorf("%s: error = %v (code %d), want a lock timeout with code 11", name, err, codeOf(err))
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s waited %v", name, d)
		}
		var te *types.Error
		if cni := toCNIError(err); !errors.As(cni, &te) || te.Code != 11 {
			t.Errorf("%s: toCNIError = %v", name, cni)
		}
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls while the lock is held", n)
	}
	if exists(h.containerDir()) {
		t.Error("state written while the lock is held")
	}
}

func TestFuncsConvertErrors(t *testing.T) {
	h := newHarness(t)
	h.fake.FailOn("beta", "ADD", "eth1", 11)
	err := h.p.Funcs().Add(h.args(""))
	var te *types.Error
	if !errors.As(err, &te) || te.Code != 11 || !strings.HasPrefix(te.Msg, "eth1: plugin beta: ") {
		t.Errorf("Funcs().Add error = %#v", err)
	}
	if err := h.p.Funcs().Check(h.args("")); !errors.As(err, &te) || te.Code != types.ErrUnknownContainer {
		t.Errorf("Funcs().Check error = %#v", err)
	}
}

// The merged result of an ADD is also a valid 1.0.0 types100 result.
