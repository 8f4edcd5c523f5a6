package main

import "time"

// cost is nicmux's own share of one verb over a variant's samples, from its
// log lines.
type cost struct {
	own       []time.Duration // in-process wall time not spent waiting for delegates
	cpu       []time.Duration // nicmux's own CPU time, without its children
	outside   []time.Duration // driver-measured wall time minus delegates: adds process start and exit
	peakRSSKB int64
}

// costs joins the variant's samples with nicmux's log lines; a measured
// verb without its line ends the run.
func (v *variant) costs() [nVerbs]cost {
	lines, err := readLog(v.logFile)
	must(err, "%s: reading nicmux's log", v.label)
	var out [nVerbs]cost
	for _, s := range v.samples {
		for verb := range nVerbs {
			l, ok := lines[verbNames[verb]+" "+s.id]
			if !ok {
				fatalf("%s: no log line for %s of %s in %s", v.label, verbNames[verb], s.id, v.logFile)
			}
			if l.duration > s.d[verb] {
				fatalf("%s: %s of %s: nicmux logged %v, longer than the %v measured around it",
					v.label, verbNames[verb], s.id, l.duration, s.d[verb])
			}
			c := &out[verb]
			c.own = append(c.own, l.own)
			c.cpu = append(c.cpu, l.cpu)
			c.outside = append(c.outside, s.d[verb]-l.delegates)
			c.peakRSSKB = max(c.peakRSSKB, l.peakRSSKB)
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
