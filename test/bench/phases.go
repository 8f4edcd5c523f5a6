package main

import (
	"fmt"
	"strings"
	"time"
)

// phaseScens are the scenarios whose verbs' time is broken down.
var phaseScens = []string{"seed", "N=1"}

// phaseColumn is a column of the breakdown tables: one scenario through
// nicmux in one mode.
type phaseColumn struct {
	s scenario
	m mode
}

// writePhases writes, per verb, where the time of one call goes, for
// nicmux serial and parallel (seed job and N=1), then the overhead at N=1.
// The split comes from nicmux's one log line per verb (its duration, and
// each interface's) and the driver's measure of the call.
func (r *results) writePhases(b *strings.Builder) {
	var cols []phaseColumn
	for _, name := range phaseScens {
		if s, ok := r.scenario(name); ok {
			for _, m := range modes {
				cols = append(cols, phaseColumn{s, m})
			}
		}
	}
	if len(cols) == 0 {
		return
	}
	fmt.Fprintf(b, "## Where a verb's time goes\n\n")
	fmt.Fprintf(b, "One call, split by nicmux's log line for it: `outside`, the call measured by the driver less the "+
		"verb's logged `duration` (libcni's fork and exec of nicmux, the Go runtime's start, nicmux's exit, libcni "+
		"reading its output); `chains`, the interfaces' logged times (the longest when the chains run at the same "+
		"time, their sum when one after the other); `nicmux`, the rest of the verb (its entry, attachment file and "+
		"records, the lock, the plan made durable, the merge). Medians over every repetition of every run, so the "+
		"rows need not add up to the call's median exactly. Below them, the call's median for nicmux and for the "+
		"same chains attached directly by go-cni, in the same mode, and their difference.\n\n")
	for verb := range nVerbs {
		r.writePhaseTable(b, verb, cols)
	}
	r.writeOverhead(b)
}

// writePhaseTable writes one verb's breakdown.
func (r *results) writePhaseTable(b *strings.Builder, verb int, cols []phaseColumn) {
	fmt.Fprintf(b, "### %s\n\n| part |", verbNames[verb])
	for _, c := range cols {
		fmt.Fprintf(b, " %s %s |", c.s.Name, c.m.nicmux)
	}
	fmt.Fprintf(b, "\n|---|%s\n", strings.Repeat("---:|", len(cols)))
	parts := []struct {
		name string
		pick func(cost) []time.Duration
	}{
		{"outside", func(c cost) []time.Duration { return c.outside }},
		{"nicmux", func(c cost) []time.Duration { return c.own }},
		{"chains", func(c cost) []time.Duration { return c.chains }},
	}
	for _, part := range parts {
		fmt.Fprintf(b, "| %s |", part.name)
		for _, c := range cols {
			fmt.Fprintf(b, " %s |", ms(median(part.pick(r.variant(c.s, c.m.nicmux).costs()[verb]))))
		}
		b.WriteString("\n")
	}
	var calls [3]string // nicmux, direct, nicmux − direct
	for _, c := range cols {
		n := median(durations(r.variant(c.s, c.m.nicmux).samples, verb))
		d := median(durations(r.variant(c.s, c.m.direct).samples, verb))
		for i, v := range []time.Duration{n, d, n - d} {
			calls[i] += " " + ms(v) + " |"
		}
	}
	fmt.Fprintf(b, "| call, nicmux |%s\n| call, direct |%s\n| nicmux − direct |%s\n\n", calls[0], calls[1], calls[2])
}

// writeOverhead writes nicmux's overhead at N=1, next to the bare start of
// a static Go binary plus 1 ms (issue 13's limit).
func (r *results) writeOverhead(b *strings.Builder) {
	n1, ok := r.scenario("N=1")
	if !ok {
		return
	}
	base := r.opts.baseline != ""
	fmt.Fprintf(b, "### Overhead at N=1: nicmux − direct, %s\n\n", r.timeWords())
	fmt.Fprintf(b, "What one interface costs through nicmux beyond its chain, next to the start of a static Go "+
		"hello-world measured in the same run (see Bare start) plus 1 ms: bare Go start + 1 ms = %s.\n\n",
		r.bareFig(bareHello, limitOverhead).ms())
	if base {
		fmt.Fprintf(b, "| verb | mode | direct | nicmux | overhead | baseline | baseline overhead |\n")
		fmt.Fprintf(b, "|---|---|---:|---:|---:|---:|---:|\n")
	} else {
		fmt.Fprintf(b, "| verb | mode | direct | nicmux | overhead |\n|---|---|---:|---:|---:|\n")
	}
	for verb := range nVerbs {
		for _, m := range modes {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |", verbNames[verb], m.name,
				r.timeCell(r.variant(n1, m.direct).samples, verb), r.timeCell(r.variant(n1, m.nicmux).samples, verb),
				r.overheadFig(n1, m.direct, m.nicmux, verb).ms())
			if base {
				fmt.Fprintf(b, " %s | %s |", r.timeCell(r.variant(n1, m.base).samples, verb),
					r.overheadFig(n1, m.direct, m.base, verb).ms())
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
}
