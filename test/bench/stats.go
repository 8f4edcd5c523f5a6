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
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func ratio(a, b time.Duration) string { return fmt.Sprintf("%.2f", float64(a)/float64(b)) }

// medP90 formats "median (p90)" in milliseconds.
func medP90(ds []time.Duration) string {
	return fmt.Sprintf("%s (%s)", ms(median(ds)), ms(p90(ds)))
}
