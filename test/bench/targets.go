package main

import (
	"fmt"
	"strings"
	"time"
)

// Issue 13's limits; the last four are issue 5's, which it keeps.
const (
	limitParallel = 1.15 // nicmux-parallel / direct-parallel, seed and N=8
	limitSerial   = 1.10 // nicmux-serial / direct-serial, seed and N=1..16
	limitOverhead = time.Millisecond
	limitRSSMB    = 25.0
	limitBareMS   = 3.0
	limitFill     = 1.05 // ADD with fillCount containers / with none
)

// writeTargets writes the targets with this run's figures: a row per
// target and scope, a figure per verb.
func (r *results) writeTargets(b *strings.Builder) {
	fmt.Fprintf(b, "## Targets (issue 13)\n\n")
	fmt.Fprintf(b, "Figures from this run; %s. A target is met when its figure is within the limit; "+
		"\"not in every run\" names the figures whose range crosses it.\n\n", r.figWords())
	fmt.Fprintf(b, "| target | scope | ADD | CHECK | DEL | met |\n|---|---|---:|---:|---:|---|\n")
	row := func(target, scope string, cells [nVerbs]string, met string) {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", target, scope, cells[0], cells[1], cells[2], met)
	}
	ratios := func(target string, names []string, base, x kind, limit float64) {
		for _, name := range names {
			s, ok := r.scenario(name)
			if !ok {
				continue
			}
			var figs [nVerbs]figure
			for verb := range nVerbs {
				figs[verb] = r.ratioFig(s, base, x, verb)
			}
			row(target, name, cells(figs, figure.ratio), verdict(limit, figs[:], verbNames[:]))
		}
	}
	ratios(fmt.Sprintf("nicmux default (parallel) / direct-parallel ≤ %.2f", limitParallel),
		[]string{"seed", "N=8"}, directParallel, nicmuxParallel, limitParallel)
	ratios(fmt.Sprintf("`\"parallel\": false` / direct-serial ≤ %.2f", limitSerial),
		[]string{"seed", "N=1", "N=2", "N=4", "N=8", "N=16"}, directSerial, nicmuxSerial, limitSerial)
	if n1, ok := r.scenario("N=1"); ok {
		limit := r.bareFig(bareHello, limitOverhead)
		for _, m := range modes {
			var figs [nVerbs]figure
			for verb := range nVerbs {
				figs[verb] = r.overheadFig(n1, m.direct, m.nicmux, verb)
			}
			row(fmt.Sprintf("overhead (nicmux − direct, ms) ≤ bare Go start + 1 ms = %s", limit.ms()),
				"N=1, "+m.name, cells(figs, figure.ms), verdict(limit.mid, figs[:], verbNames[:]))
		}
	}
	var rss [nVerbs]figure
	for verb := range nVerbs {
		rss[verb] = r.over(func(run int) float64 { return r.peakRSSMB(verb, run) })
	}
	row(fmt.Sprintf("peak RSS ≤ %.0f MB", limitRSSMB), "largest of every nicmux variant, sampled VmHWM (see nicmux's own cost)",
		cells(rss, func(f figure) string { return f.format(func(v float64) string { return fmt.Sprintf("%.1f", v) }) }),
		verdict(limitRSSMB, rss[:], verbNames[:]))
	bare := r.bareFig(bareNicmux, 0)
	row(fmt.Sprintf("bare start (fingerprint) ≤ %.0f ms", limitBareMS), "bin/nicmux, empty environment (one figure)",
		[nVerbs]string{bare.ms(), "", ""}, verdict(limitBareMS, []figure{bare}, []string{"bare start"}))
	var conc [nVerbs]figure
	for verb := range nVerbs {
		conc[verb] = r.over(func(run int) float64 { return toMS(r.scale[run][verb]) })
	}
	row(fmt.Sprintf("%d containers at once: all succeed, nothing leaks", scaleContainers),
		"seed, nicmux-parallel, wall ms until the last returned", cells(conc, figure.ms), "yes (checked)")
	var fill [nVerbs]figure
	for verb := range nVerbs {
		fill[verb] = r.fillFig(verb)
	}
	row(fmt.Sprintf("ADD with %d containers in stateDir ≤ %.2f × an empty one", fillCount, limitFill),
		"seed, nicmux-parallel (the target is ADD's)", cells(fill, figure.ratio),
		verdict(limitFill, fill[:1], verbNames[:1]))
	b.WriteString("\n")
}

func cells(figs [nVerbs]figure, format func(figure) string) [nVerbs]string {
	var out [nVerbs]string
	for i, f := range figs {
		out[i] = format(f)
	}
	return out
}

// verdict says whether every figure is at most limit: "yes"; "yes, not in
// every run (DEL)" when some run's figure was above; "no (ADD, DEL)".
func verdict(limit float64, figs []figure, names []string) string {
	var over, some []string
	for i, f := range figs {
		switch {
		case f.mid > limit:
			over = append(over, names[i])
		case f.hi > limit:
			some = append(some, names[i])
		}
	}
	switch {
	case len(over) > 0:
		return "no (" + strings.Join(over, ", ") + ")"
	case len(some) > 0:
		return "yes, not in every run (" + strings.Join(some, ", ") + ")"
	}
	return "yes"
}

// figWords says what a figure of several runs is.
func (r *results) figWords() string {
	if r.opts.runs == 1 {
		return "one run: a ratio or difference is of medians; a single run shows no spread (see -runs)"
	}
	return fmt.Sprintf("each is the median over %d runs of the run's figure (a ratio or difference of medians), "+
		"with the range of the runs' figures", r.opts.runs)
}

// peakRSSMB is the largest peak RSS of any of this nicmux's variants in a
// run's peak RSS pass, in MB.
func (r *results) peakRSSMB(verb, run int) float64 {
	var kb int64
	for label, peaks := range r.rss[run] {
		if v := r.variants[label]; !v.kind.base() {
			kb = max(kb, peaks[verb])
		}
	}
	return float64(kb) / 1024
}

// fillFig is a verb's median with a full stateDir over its median with an
// empty one, run by run.
func (r *results) fillFig(verb int) figure {
	return r.over(func(run int) float64 {
		e, f := durations(r.state.empty.inRun(run), verb), durations(r.state.full.inRun(run), verb)
		return float64(median(f)) / float64(median(e))
	})
}
