package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A verb's phases on the driver's time line: 0 is when the driver called
// go-cni/libcni, pointMain when nicmux's main began (the "mono" of its log
// line, on the CLOCK_MONOTONIC the driver reads too), then each point
// nicmux logged in its "phases", and pointReturn when the driver's call
// returned.
const (
	pointMain   = "main"
	pointReturn = "return"
)

// pointWords says what happens up to each point, from the point before it;
// "VERB point" overrides "point".
var pointWords = map[string]string{
	pointMain:      "libcni's fork and exec of nicmux and the Go runtime's start, up to nicmux's main",
	"parsed":       "the network configuration read from stdin and parsed, the log file opened",
	"ADD loaded":   "the attachment file read and parsed",
	"loaded":       "the container's records read",
	"netns":        "the container's namespace opened and identified",
	"locked":       "the state folder opened and the container's lock taken",
	"stale":        "a stale record of the container ID looked for",
	"barrier":      "GC's barrier taken",
	"planned":      "the plan (container record, each chain's configuration and arguments, the netns identity) written and fsynced",
	"fed":          "the first delegate got its input (its process was started ahead, or is started now)",
	"done":         "the delegates ran; the last one ended",
	"chains":       "the results recorded and every chain joined",
	"completed":    "the results merged and the completion record renamed into place",
	"printed":      "the merged result written to stdout",
	"checked":      "every chain checked (its delegates' CHECK and nicmux's own netlink check)",
	"released":     "every chain released (its delegates' DEL)",
	"removed":      "the container's records removed and its folder synced",
	pointReturn:    "nicmux writing its log line and exiting, the driver reaping it and libcni parsing its output",
	"CHECK locked": "the state folder opened read-only and the container's lock taken shared",
}

func pointWord(verb int, point string) string {
	if w, ok := pointWords[verbNames[verb]+" "+point]; ok {
		return w
	}
	return pointWords[point]
}

// timeline is one measured verb's points: each one's time since the
// driver's call.
type timeline map[string]time.Duration

// timelines places the samples' verb on the driver's time line; a point
// before the call or after its return ends the run: the clocks disagree.
func (v *variant) timelines(samples []sample, verb int) []timeline {
	out := make([]timeline, len(samples))
	for i, lines := range v.logged(samples) {
		s, l := samples[i], lines[verb]
		if l.mono == 0 {
			fatalf("%s: nicmux logged no mono= and phases=", v.label)
		}
		main := time.Duration(l.mono - s.at[verb])
		t := timeline{pointMain: main, pointReturn: s.d[verb]}
		for _, p := range l.phases {
			t[p.name] = main + p.at
		}
		for name, at := range t {
			if at < 0 || at > s.d[verb] {
				fatalf("%s: %s of %s: point %s at %v of a %v call (nicmux's mono=%d, the call's start %d)",
					v.label, verbNames[verb], s.id, name, at, s.d[verb], l.mono, s.at[verb])
			}
		}
		out[i] = t
	}
	return out
}

// pointOrder is the points of timelines in the order of their median time,
// main first and return last.
func pointOrder(tls []timeline) []string {
	at := map[string][]time.Duration{}
	for _, t := range tls {
		for name, d := range t {
			at[name] = append(at[name], d)
		}
	}
	var names []string
	for name := range at {
		if name != pointMain && name != pointReturn {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(median(at[a]), median(at[b])) })
	return append(append([]string{pointMain}, names...), pointReturn)
}

// step is, over the timelines that have both points, the time from prev to
// point ("" is the call's start); and when point was reached.
func step(tls []timeline, prev, point string) (since, at []time.Duration) {
	for _, t := range tls {
		p, okP := t[prev]
		d, ok := t[point]
		if ok && (okP || prev == "") {
			since, at = append(since, d-p), append(at, d)
		}
	}
	return since, at
}

// phaseScens are the scenarios whose verbs' phases are reported.
var phaseScens = []string{"seed", "N=1"}

// phaseColumn is a column of the phase tables: one scenario through nicmux
// in one mode.
type phaseColumn struct {
	s scenario
	m mode
}

// writePhases writes, per verb, where the time of one call goes, from the
// driver's call to its return, for nicmux serial and parallel (seed job and
// N=1), then the overhead at N=1.
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
	fmt.Fprintf(b, "One call on the driver's time line, CLOCK_MONOTONIC: the driver reads it just before the go-cni/libcni "+
		"call and just after it returns; nicmux logs when its main began on the same clock (`mono`) and the points it "+
		"passed since (`phases`). Each row: the median ms from the row above to this point (the median ms from the "+
		"call to this point), over every repetition of every run. The points are in the order of their median time; "+
		"a delegate started ahead runs its start-up during the rows before `fed`. Below each table, the call's "+
		"median for nicmux and for the same chains attached directly by go-cni, in the same mode, and their "+
		"difference.\n\n")
	for verb := range nVerbs {
		r.writePhaseTable(b, verb, cols)
	}
	r.writeOverhead(b)
}

// writePhaseTable writes one verb's phase table and what its points are.
func (r *results) writePhaseTable(b *strings.Builder, verb int, cols []phaseColumn) {
	tls := make([][]timeline, len(cols))
	var all []timeline
	for i, c := range cols {
		v := r.variant(c.s, c.m.nicmux)
		tls[i] = v.timelines(v.samples, verb)
		all = append(all, tls[i]...)
	}
	order := pointOrder(all)
	fmt.Fprintf(b, "### %s\n\n| point |", verbNames[verb])
	for _, c := range cols {
		fmt.Fprintf(b, " %s %s |", c.s.Name, c.m.nicmux)
	}
	fmt.Fprintf(b, "\n|---|%s\n", strings.Repeat("---:|", len(cols)))
	prev := ""
	for _, point := range order {
		fmt.Fprintf(b, "| %s |", point)
		for i := range cols {
			since, at := step(tls[i], prev, point)
			if len(since) == 0 {
				b.WriteString(" — |")
				continue
			}
			fmt.Fprintf(b, " %s (%s) |", ms(median(since)), ms(median(at)))
		}
		b.WriteString("\n")
		prev = point
	}
	var calls [3]string // nicmux, direct, nicmux − direct
	for _, c := range cols {
		n := median(durations(r.variant(c.s, c.m.nicmux).samples, verb))
		d := median(durations(r.variant(c.s, c.m.direct).samples, verb))
		for i, v := range []time.Duration{n, d, n - d} {
			calls[i] += " " + ms(v) + " |"
		}
	}
	fmt.Fprintf(b, "| call, nicmux |%s\n| call, direct |%s\n| nicmux − direct |%s\n", calls[0], calls[1], calls[2])
	var words []string
	for _, point := range order {
		words = append(words, fmt.Sprintf("`%s`: %s", point, pointWord(verb, point)))
	}
	fmt.Fprintf(b, "\n%s.\n\n", strings.Join(words, "; "))
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
