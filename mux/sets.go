package mux

import (
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/nicmux/nicmux/conf"
)

// sets reads the attachment files as they are now: the one nicmux's entry
// names and the sets beside it, each as ADD reads it (conf.LoadSet).
type sets struct {
	base string // the entry's attachment file
	d    conf.Defaults
	log  *slog.Logger

	// mu guards chainsOf, what chains read of each set, once per verb.
	mu       sync.Mutex
	chainsOf map[string][]*conf.Chain
}

// load reads the attachment file of set ("": the entry's own) and logs
// what it warns of.
func (s *sets) load(set string) (*conf.AttachmentFile, error) {
	file, err := conf.LoadSet(s.base, set, s.d)
	if err != nil {
		return nil, err
	}
	for _, w := range file.Warnings {
		s.log.Warn(w)
	}
	return file, nil
}

// chains returns set's chains as they are now, for releases that cannot
// use what was recorded; nil when the file does not load (the reason is
// logged). Each set is read once per verb.
func (s *sets) chains(set string) []*conf.Chain {
	s.mu.Lock()
	defer s.mu.Unlock()
	if chains, ok := s.chainsOf[set]; ok {
		return chains
	}
	var chains []*conf.Chain
	if file, err := s.load(set); err != nil {
		s.log.Warn("the attachment file does not load: no fallback for interfaces whose recorded chain cannot be released", "set", set, "error", err)
	} else {
		chains = file.Interfaces
	}
	if s.chainsOf == nil {
		s.chainsOf = map[string][]*conf.Chain{}
	}
	s.chainsOf[set] = chains
	return chains
}

// every returns the chains of the entry's attachment file and of every set
// in its folder, in order, and the failures of the files that do not load.
// Each set is loaded as ADD loads it: one that leads out of the folder is a
// failure, never a chain to call. The first interface of each defaults to
// eth0: no runtime ifname comes with GC or STATUS.
func (s *sets) every() ([]*conf.Chain, []error) {
	names := []string{""} // the attachment file itself
	dir := filepath.Dir(s.base)
	for _, name := range conf.AvailableSets(dir) {
		if filepath.Join(dir, name+".yaml") != s.base {
			names = append(names, name)
		}
	}
	d := s.d
	d.IfName = "eth0"
	var chains []*conf.Chain
	var errs []error
	for _, name := range names {
		file, err := conf.LoadSet(s.base, name, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		chains = append(chains, file.Interfaces...)
	}
	return chains, errs
}

// onePerNetwork returns, among the chains keep accepts, the first of each
// delegate network: GC and STATUS go to a network once.
func onePerNetwork(chains []*conf.Chain, keep func(*conf.Chain) bool) []*conf.Chain {
	var out []*conf.Chain
	seen := map[string]bool{}
	for _, c := range chains {
		if !seen[c.Network] && keep(c) {
			seen[c.Network] = true
			out = append(out, c)
		}
	}
	return out
}
