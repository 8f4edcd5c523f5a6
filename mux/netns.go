package mux

import (
	"fmt"
	"os"
	"syscall"

	"github.com/nicmux/nicmux/ns"
)

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
func (v *invocation) holdNetNS(path string) (*heldNetNS, error) {
	id, err := v.p.Identify(path)
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
