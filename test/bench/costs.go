package main

import "time"

// cost is nicmux's own share of one verb over some of a variant's samples,
// from its log lines.
type cost struct {
	own       []time.Duration // in-process wall time not spent waiting for delegates
	cpu       []time.Duration // nicmux's own CPU time, without its children
	outside   []time.Duration // driver-measured wall time minus delegates: adds process start and exit
	peakRSSKB int64
}

// costs is costsOf all the variant's samples: it checks that every measured
// verb logged "ok" and nothing logged a warning.
func (v *variant) costs() [nVerbs]cost { return v.costsOf(v.samples) }

// costsOf sums up nicmux's log lines of samples.
func (v *variant) costsOf(samples []sample) [nVerbs]cost {
	var out [nVerbs]cost
	for i, lines := range v.logged(samples) {
		for verb, l := range lines {
			c := &out[verb]
			c.own = append(c.own, l.own)
			c.cpu = append(c.cpu, l.cpu)
			c.outside = append(c.outside, samples[i].d[verb]-l.delegates)
			c.peakRSSKB = max(c.peakRSSKB, l.peakRSSKB)
		}
	}
	return out
}

// logged pairs each of samples with nicmux's log lines of its verbs; a
// measured verb without its line, or one that logged more time than the
// driver measured around it, ends the run.
func (v *variant) logged(samples []sample) [][nVerbs]logLine {
	lines, err := readLog(v.logFile)
	must(err, "%s: reading nicmux's log", v.label)
	out := make([][nVerbs]logLine, len(samples))
	for i, s := range samples {
		for verb := range nVerbs {
			l, ok := lines[verbNames[verb]+" "+s.id]
			if !ok {
				fatalf("%s: no log line for %s of %s in %s", v.label, verbNames[verb], s.id, v.logFile)
			}
			if l.duration > s.d[verb] {
				fatalf("%s: %s of %s: nicmux logged %v, longer than the %v measured around it",
					v.label, verbNames[verb], s.id, l.duration, s.d[verb])
			}
			out[i][verb] = l
		}
	}
	return out
}

// durations picks one verb's wall times from samples.
func durations(samples []sample, verb int) []time.Duration {
	out := make([]time.Duration, len(samples))
	for i, s := range samples {
		out[i] = s.d[verb]
	}
	return out
}
