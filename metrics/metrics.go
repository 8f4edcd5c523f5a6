// Package metrics keeps a node's figures for Prometheus's node_exporter,
// whose textfile collector reads every *.prom file of one folder. A
// one-shot plugin cannot be scraped, so each run folds what it did (a
// Tally) into counters kept on disk under a lock of their own (Fold), and
// asks the renderer, a separate small binary, to rewrite the textfile
// (Publish). The renderer links the Prometheus library, whose package
// initialisation would add about a millisecond to every start of nicmux
// (test/bench/RESULTS.md): this package imports none of it.
//
// The counters file is a cache that may be lost: it is written atomically
// but never fsynced, and one that a crash tore is detected by its checksum
// and started again from zero, which Prometheus reads as a counter reset.
// No failure here ever fails a verb: Fold and Publish return their errors
// for the caller to log, and a Reporter logs each distinct problem once.
package metrics

import (
	"slices"
	"strings"
	"sync"
)

// Kind is what a family's samples are.
type Kind uint8

const (
	// Counter only grows (until its store is reset).
	Counter Kind = iota
	// Gauge is set, or moved up and down.
	Gauge
	// Histogram counts observations in buckets, with their sum.
	Histogram
)

// Family is one metric: its name, help, kind, label names and, for a
// histogram, its buckets' upper bounds (ascending; +Inf is implied).
type Family struct {
	Name    string
	Help    string
	Kind    Kind
	Labels  []string
	Buckets []float64
}

// Series is one labelled series of a family as stored: Value for a counter
// or gauge; for a histogram, Counts per bucket (not cumulative; the last
// is the +Inf bucket's own) and Sum.
type Series struct {
	Family *Family
	Labels []string // values, in the order of Family.Labels
	Value  float64
	Counts []uint64
	Sum    float64
}

// Count is a histogram's number of observations.
func (s *Series) Count() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// Cumulative is a histogram's count at or below each bucket's bound, +Inf
// last: what the text format's "le" series hold.
func (s *Series) Cumulative() []uint64 {
	out := make([]uint64, len(s.Counts))
	var n uint64
	for i, c := range s.Counts {
		n += c
		out[i] = n
	}
	return out
}

// op is one change a Tally holds.
type op struct {
	f      *Family
	labels []string
	v      float64
	set    bool
}

// Tally is what one run adds to the node's figures. It is safe for use
// by several goroutines (a verb's chains end at the same time).
type Tally struct {
	mu  sync.Mutex
	ops []op
}

// Add adds v to a counter or gauge.
func (t *Tally) Add(f *Family, v float64, labels ...string) { t.put(op{f: f, labels: labels, v: v}) }

// Set sets a gauge.
func (t *Tally) Set(f *Family, v float64, labels ...string) {
	t.put(op{f: f, labels: labels, v: v, set: true})
}

// Observe adds one observation of v to a histogram.
func (t *Tally) Observe(f *Family, v float64, labels ...string) {
	t.put(op{f: f, labels: labels, v: v})
}

func (t *Tally) put(o op) {
	if len(o.labels) != len(o.f.Labels) {
		panic("metrics: " + o.f.Name + " takes labels " + strings.Join(o.f.Labels, ", "))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ops = append(t.ops, o)
}

// Empty reports whether the tally holds nothing.
func (t *Tally) Empty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ops) == 0
}

// Snapshot is a node's figures: every series, each family's in the order
// they first appeared.
type Snapshot struct {
	// Generation counts the folds since the store was made: the renderer
	// redraws when it changes.
	Generation uint64
	Series     []*Series
	index      map[string]*Series
}

// seriesKey keys a series by family and label values.
func seriesKey(name string, labels []string) string {
	return name + "\x00" + strings.Join(labels, "\x00")
}

// series returns the snapshot's series of f with labels, made if need be.
func (s *Snapshot) series(f *Family, labels []string) *Series {
	if s.index == nil {
		s.index = map[string]*Series{}
	}
	k := seriesKey(f.Name, labels)
	if sr, ok := s.index[k]; ok {
		return sr
	}
	sr := &Series{Family: f, Labels: slices.Clip(slices.Clone(labels))}
	if f.Kind == Histogram {
		sr.Counts = make([]uint64, len(f.Buckets)+1)
	}
	s.index[k] = sr
	s.Series = append(s.Series, sr)
	return sr
}

// Get returns the series of the family named name with labels, or nil.
func (s *Snapshot) Get(name string, labels ...string) *Series {
	if s.index == nil {
		return nil
	}
	return s.index[seriesKey(name, labels)]
}

// apply folds a tally into the snapshot.
func (s *Snapshot) apply(t *Tally) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range t.ops {
		labels := make([]string, len(o.labels))
		for i, l := range o.labels {
			labels[i] = cleanLabel(l)
		}
		sr := s.series(o.f, labels)
		switch {
		case o.f.Kind == Histogram:
			sr.Counts[bucketOf(o.f.Buckets, o.v)]++
			sr.Sum += o.v
		case o.set:
			sr.Value = o.v
		case o.f.Kind == Gauge:
			// Every gauge here counts something: one moved below zero
			// by a transition a crash lost stays at zero until it is
			// set again.
			sr.Value = max(sr.Value+o.v, 0)
		default:
			sr.Value += o.v
		}
	}
}

// bucketOf is the index of the first bucket whose bound holds v; the
// +Inf bucket's for v above them all.
func bucketOf(bounds []float64, v float64) int {
	i, _ := slices.BinarySearch(bounds, v)
	return i
}

// maxLabel bounds a label value as stored.
const maxLabel = 128

// cleanLabel makes a label value storable: control characters and invalid
// UTF-8 become "_", and it is cut at maxLabel bytes. Label values are
// plugin types, verbs, codes and pool names: bounded sets, which the
// cleaning leaves bounded.
func cleanLabel(s string) string {
	clean := len(s) <= maxLabel
	for i := 0; clean && i < len(s); i++ {
		clean = s[i] >= 0x20 && s[i] < 0x7f
	}
	if clean {
		return s
	}
	s = strings.ToValidUTF8(s, "_")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, s)
	if len(s) > maxLabel {
		s = strings.ToValidUTF8(s[:maxLabel], "")
	}
	return s
}

// Seconds are the bounds of the duration histograms: a verb or a plugin
// call takes from a few milliseconds (STATUS, CHECK of a macvlan) to the
// delegate timeout (60 s by default).
var Seconds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Group is a family with its series.
type Group struct {
	Family *Family
	Series []*Series
}

// Groups returns the snapshot's families sorted by name, each with its
// series sorted by label values.
func (s *Snapshot) Groups() []Group {
	by := map[*Family][]*Series{}
	var fams []*Family
	for _, sr := range s.Series {
		if by[sr.Family] == nil {
			fams = append(fams, sr.Family)
		}
		by[sr.Family] = append(by[sr.Family], sr)
	}
	slices.SortFunc(fams, func(a, b *Family) int { return strings.Compare(a.Name, b.Name) })
	out := make([]Group, len(fams))
	for i, f := range fams {
		series := by[f]
		slices.SortFunc(series, func(a, b *Series) int { return slices.Compare(a.Labels, b.Labels) })
		out[i] = Group{Family: f, Series: series}
	}
	return out
}
