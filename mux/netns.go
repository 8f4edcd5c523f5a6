package mux

import (
	"fmt"
	"os"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// identifier identifies the network namespace at a path (Plugin.Identify).
type identifier func(path string) (ns.NetNSID, error)

// heldNetNS is a network namespace a verb holds open: it can act in it
// through path() once the path it was found at holds another namespace, or
// none (the namespace lives as long as the descriptor).
type heldNetNS struct {
	id ns.NetNSID
	f  *os.File
}

// holdNetNS identifies the namespace at path and holds it open. It checks
// what it opened is what it identified (the path may be replaced between
// the two); what is not a namespace is never opened (see ns.Identify).
func holdNetNS(identify identifier, path string) (*heldNetNS, error) {
	id, err := identify(path)
	if err != nil || id.IsZero() {
		return &heldNetNS{id: id}, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Dev != id.Dev || st.Ino != id.Ino {
		f.Close()
		return nil, fmt.Errorf("netns %s: replaced while it was opened", path)
	}
	return &heldNetNS{id: id, f: f}, nil
}

// path names the namespace held, for delegates' CNI_NETNS; "" when none is.
func (h *heldNetNS) path() string {
	if h == nil || h.f == nil {
		return ""
	}
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), h.f.Fd())
}

// close lets the namespace go.
func (h *heldNetNS) close() {
	if h != nil && h.f != nil {
		_ = h.f.Close()
	}
}

// recordedNetNS holds the namespace rec names when its path still holds
// it; nil otherwise (gone, or another namespace made at its path).
func recordedNetNS(identify identifier, rec *state.Record) *heldNetNS {
	path, recorded := rec.NetNS()
	if recorded.IsZero() || path == "" {
		return nil
	}
	h, err := holdNetNS(identify, path)
	if err != nil || !h.id.Same(recorded) {
		h.close()
		return nil
	}
	return h
}

// targetNetNS checks ADD's CNI_NETNS before anything acts on it: a
// network namespace must be there, and must not be nicmux's own (the
// host's).
func targetNetNS(identify identifier, path string) (*heldNetNS, error) {
	bad := func(err error) (*heldNetNS, error) {
		return nil, withCode(types.ErrInvalidEnvironmentVariables, fmt.Errorf("CNI_NETNS: %w", err))
	}
	h, err := holdNetNS(identify, path)
	switch {
	case err != nil:
		return bad(err)
	case h.id.IsZero():
		return bad(fmt.Errorf("no network namespace at %q", path))
	case ns.IsOwn(h.id):
		h.close()
		return bad(fmt.Errorf("%q is nicmux's own network namespace (the host's), not a container's", path))
	}
	return h, nil
}
