package mux

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/state"
)

// fenceWait bounds the wait for the plugins of a killed nicmux to die.
const fenceWait = 5 * time.Second

// held is the container lock a verb holds exclusively, in whose file it
// notes the plugin processes it starts: should nicmux be killed, the next
// verb on the container kills them (fence) before it acts.
type held struct {
	mu   sync.Mutex
	lock *state.Lock // nil while no lock is held exclusively
}

// hold makes lock the one plugin processes are noted in; nil: none.
func (h *held) hold(lock *state.Lock) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lock = lock
}

// note is the delegate runner's Started: it notes a plugin process in the
// lock held, if any (GC's forwarding and STATUS hold none: they act on no
// container).
func (h *held) note(p delegate.Proc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lock != nil {
		_ = h.lock.Note(p.Note())
	}
}

// fence kills the plugins a killed predecessor left running, noted in the
// lock file, before anything else acts on the container. It returns how
// many process groups it killed.
func fence(log *slog.Logger, lock *state.Lock, id string) int {
	notes, err := lock.Notes()
	if err != nil || strings.TrimSpace(notes) == "" {
		return 0
	}
	killed, err := delegate.Fence(notes, fenceWait)
	if len(killed) > 0 || err != nil {
		log.Warn("a nicmux killed mid-verb left plugins running: killed their process groups", "containerID", id,
			"groups", len(killed), "error", err)
	}
	_ = lock.ClearNotes()
	return len(killed)
}
