package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// median and p90 interpolate linearly between the closest ranks (the
// median of an even count is the mean of the middle two).
func median(ds []time.Duration) time.Duration { return quantile(ds, 0.5) }
func p90(ds []time.Duration) time.Duration    { return quantile(ds, 0.9) }

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		fatalf("quantile of no samples")
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + time.Duration((pos-float64(lo))*float64(s[hi]-s[lo]))
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return msf(toMS(d)) }

func toMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// msf formats milliseconds: two decimals under 10, one above.
func msf(v float64) string {
	if math.Abs(v) < 9.995 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func ratio(a, b time.Duration) string { return ratiof(float64(a) / float64(b)) }
func ratiof(v float64) string         { return fmt.Sprintf("%.2f", v) }

// medP90 formats "median (p90)" in milliseconds.
func medP90(ds []time.Duration) string {
	return fmt.Sprintf("%s (%s)", ms(median(ds)), ms(p90(ds)))
}

// figure is one reported figure over the runs (-runs): the median of the
// runs' values and their range. Each run's value is itself a median (or a
// ratio or difference of medians) over that run's repetitions.
type figure struct {
	mid, lo, hi float64
	runs        int
}

// overRuns computes f for every run and sums the values up as a figure.
func overRuns(runs int, f func(run int) float64) figure {
	vals := make([]float64, runs)
	for run := range runs {
		vals[run] = f(run)
	}
	slices.Sort(vals)
	mid := vals[runs/2]
	if runs%2 == 0 {
		mid = (vals[runs/2-1] + vals[runs/2]) / 2
	}
	return figure{mid: mid, lo: vals[0], hi: vals[runs-1], runs: runs}
}

// format words the figure with format: "1.08 (1.02-1.13)", or just the
// value from a single run. A range from below zero reads "(-0.52 to 0.31)".
func (f figure) format(format func(float64) string) string {
	if f.runs < 2 {
		return format(f.mid)
	}
	sep := "-"
	if f.lo < 0 {
		sep = " to "
	}
	return fmt.Sprintf("%s (%s%s%s)", format(f.mid), format(f.lo), sep, format(f.hi))
}

func (f figure) ms() string    { return f.format(msf) }
func (f figure) ratio() string { return f.format(ratiof) }
