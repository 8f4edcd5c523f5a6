package delegate

import (
	"github.com/nicmux/nicmux/conf"
)

// Starting plugins ahead. Measured in the same run (test/bench, seed job
// and N = 1..16 macvlans, 2026-11-27): with "parallel": false, ADD 10-20 %
// faster with it, CHECK 10-23 %; with chains in parallel, 0.90-1.10, the
// run's noise (both cores already busy). It is kept for the serial case
// and for hiding the first plugin's start behind nicmux's own work; it
// costs mux nothing but the Warm hints and a Close.

// warmKey names a process started ahead: a plugin binary and what sets
// the environment of one call apart (nicmux's own environment and the
// Runner's Path are the same for every call). Any process of the same
// binary and environment serves the call, whichever chain value named it.
type warmKey struct {
	plugin, verb                        string
	containerID, netns, ifname, cniArgs string
}

func newWarmKey(verb string, c *conf.Chain, env Env, i int) warmKey {
	return warmKey{plugin: c.Plugins[i].Type, verb: verb,
		containerID: env.ContainerID, netns: env.NetNS, ifname: env.IfName, cniArgs: env.CNIArgs}
}

// starting is a plugin process being started ahead, in a goroutine of its
// own: a fork waits for the child's exec, which on a busy machine takes
// milliseconds the caller can use.
type starting struct {
	r    *Runner
	done chan struct{}
	p    *proc // nil if it could not be started
}

// get waits for the process and returns it, or nil. It is nil-safe.
func (s *starting) get() *proc {
	if s == nil {
		return nil
	}
	<-s.done
	return s.p
}

// abort kills the process, which has read nothing. It is nil-safe.
func (s *starting) abort() {
	if p := s.get(); p != nil {
		p.abort()
		s.r.ended()
	}
}

// Warm hints that verb will soon run on chain c with env: the first plugin
// of the chain (the last for DEL) is started now, to wait for its input.
// It does nothing unless the Runner starts its own processes ahead.
func (r *Runner) Warm(verb string, c *conf.Chain, env Env) {
	steps := order(verb, c)
	if len(steps) == 0 {
		return
	}
	key := newWarmKey(verb, c, env, steps[0])
	r.mu.Lock()
	old := r.warm[key]
	r.mu.Unlock()
	if old != nil {
		return // already warm
	}
	s := r.ahead(verb, c, env, steps[0], false)
	if s == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.warm == nil {
		r.warm = map[warmKey]*starting{}
	}
	if old := r.warm[key]; old != nil {
		defer s.abort() // warmed meanwhile
		return
	}
	r.warm[key] = s
}

// takeWarm returns the process Warm started for the chain's first step
// with the environment the call needs, if there is one.
func (r *Runner) takeWarm(verb string, c *conf.Chain, env Env, steps []int) *starting {
	if len(steps) == 0 {
		return nil
	}
	key := newWarmKey(verb, c, env, steps[0])
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.warm[key]
	delete(r.warm, key)
	return s
}

// ahead starts plugin i of chain c for verb, unless the Runner does not
// start ahead or as many of its processes as the AheadLimit are alive,
// counting one more if due (a process about to start for the plugin due).
func (r *Runner) ahead(verb string, c *conf.Chain, env Env, i int, due bool) *starting {
	if r.Exec != nil || !r.Prestart {
		return nil
	}
	r.mu.Lock()
	alive := r.live
	if due {
		alive++
	}
	if alive >= r.aheadLimit() {
		r.mu.Unlock()
		return nil
	}
	r.live++ // counted from now, so that the limit holds while it starts
	r.mu.Unlock()
	s := &starting{r: r, done: make(chan struct{})}
	environ := r.environ(verb, env)
	go func() {
		defer close(s.done)
		path, err := FindInPath(c.Plugins[i].Type, r.Path)
		if err != nil {
			r.ended() // the call reports it, when due
			return
		}
		s.p, _ = r.start(path, environ, true) // on failure start counts it gone
	}()
	return s
}

// Close kills the processes started ahead and never used, and waits for
// them. Call it once the verb is done.
func (r *Runner) Close() {
	r.mu.Lock()
	warm := r.warm
	r.warm = nil
	r.mu.Unlock()
	for _, s := range warm {
		s.abort()
	}
}
