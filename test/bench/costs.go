package main

import "time"

// cost is where one verb's time went, over some of a variant's samples,
// from nicmux's log lines and the driver's measure.
type cost struct {
	// own is nicmux's time in the verb outside its chains: its log line's
	// duration less the chains' (the longest interface when the chains
	// run at the same time, their sum when they run one after the other).
	own []time.Duration
	// chains is that chains' time.
	chains []time.Duration
	// outside is the driver-measured call less the verb's logged duration:
	// the fork and exec of nicmux, the Go runtime's start, parsing nicmux's
	// entry, its exit, and libcni reading its output.
	outside []time.Duration
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
			chains := v.chainsTime(l.interfaces)
			c.own = append(c.own, l.duration-chains)
			c.chains = append(c.chains, chains)
			c.outside = append(c.outside, samples[i].d[verb]-l.duration)
		}
	}
	return out
}

// chainsTime is how long the chains ran, from each interface's time: the
// longest when they run at the same time (every scenario's chains plug
// into different bridges), their sum when they run one after the other.
func (v *variant) chainsTime(interfaces []time.Duration) time.Duration {
	var sum, longest time.Duration
	for _, d := range interfaces {
		sum += d
		longest = max(longest, d)
	}
	if v.kind.serial() {
		return sum
	}
	return longest
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
