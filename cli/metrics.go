package cli

import (
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/nicmux/nicmux/metrics"
)

const metricsHelp = `Prints the figures nicmux keeps for its metricsFile (the conflist key that
has node_exporter's textfile collector export them), read from the
counters in the state folder: the same numbers the file holds, each
histogram with its cumulative buckets as the file's "le" series, and the
problems met and not ended (a file that cannot be written, a renderer
that cannot start). It only reads. -counters reads another counters folder, such as nicmux-ipam's
(<dataDir>/metrics). docs/operations.md lists the series.`

// metricsReport is what nicmux metrics prints.
type metricsReport struct {
	Counters   string `json:"counters"`
	Generation uint64 `json:"generation"`
	// Problems are those logged once and not ended, by what met them.
	Problems map[string]string `json:"problems"`
	Families []familyReport    `json:"families"`
}

type familyReport struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Help string `json:"help"`
	// Labels are the label names, in the file's order.
	Labels []string       `json:"labels"`
	Series []seriesReport `json:"series"`
}

type seriesReport struct {
	Labels map[string]string `json:"labels"`
	// Value is a counter's or gauge's.
	Value *float64 `json:"value,omitempty"`
	// A histogram's: Count, Sum and the cumulative Buckets.
	Count   *uint64        `json:"count,omitempty"`
	Sum     *float64       `json:"sum,omitempty"`
	Buckets []bucketReport `json:"buckets,omitempty"`
}

type bucketReport struct {
	LE    string `json:"le"`
	Count uint64 `json:"count"`
}

func runMetrics(e *env, args []string) int {
	f := newFlags("metrics", metricsHelp)
	stateDir := f.String("state-dir", "", "the state folder `DIR` whose counters to read")
	conflist := f.String("conflist", "", "the runtime's conflist `FILE`: read its nicmux entry's stateDir")
	counters := f.String("counters", "", "the counters `DIR` to read")
	asJSON := f.Bool("json", false, "print one JSON object")
	if _, code, ok := f.parseN(e, args, 0, 0, ""); !ok {
		return code
	}
	dir := *counters
	if (*stateDir != "") && (*conflist != "") || dir != "" && (*stateDir != "" || *conflist != "") {
		return f.fail(e, "give one of -state-dir, -conflist and -counters")
	}
	if dir == "" {
		sd, ok := stateDirOf(e, "metrics", *stateDir, *conflist)
		if !ok {
			return exitFail
		}
		dir = filepath.Join(sd, "metrics")
	}
	snap, err := metrics.Read(dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "nicmux metrics: %v\n", err)
		return exitFail
	}
	r := reportOf(dir, snap)
	if r.Problems, err = metrics.Problems(dir); err != nil {
		fmt.Fprintf(e.stderr, "nicmux metrics: %v\n", err)
		return exitFail
	}
	if *asJSON {
		printJSON(e.stdout, r)
	} else {
		r.print(e.stdout)
	}
	return exitOK
}

func reportOf(dir string, snap *metrics.Snapshot) *metricsReport {
	r := &metricsReport{Counters: dir, Generation: snap.Generation, Families: []familyReport{}}
	for _, g := range snap.Groups() {
		fr := familyReport{Name: g.Family.Name, Type: [...]string{"counter", "gauge", "histogram"}[g.Family.Kind],
			Help: g.Family.Help, Labels: append([]string{}, g.Family.Labels...)}
		for _, sr := range g.Series {
			s := seriesReport{Labels: map[string]string{}}
			for i, name := range g.Family.Labels {
				s.Labels[name] = sr.Labels[i]
			}
			if g.Family.Kind != metrics.Histogram {
				v := sr.Value
				s.Value = &v
			} else {
				n, sum := sr.Count(), sr.Sum
				s.Count, s.Sum = &n, &sum
				for i, c := range sr.Cumulative() {
					le := "+Inf"
					if i < len(g.Family.Buckets) {
						le = strconv.FormatFloat(g.Family.Buckets[i], 'g', -1, 64)
					}
					s.Buckets = append(s.Buckets, bucketReport{LE: le, Count: c})
				}
			}
			fr.Series = append(fr.Series, s)
		}
		r.Families = append(r.Families, fr)
	}
	return r
}

// print writes the report for a person: each family, then a line per
// series, its labels and its value, or a histogram's count, sum and
// buckets.
func (r *metricsReport) print(w io.Writer) {
	fmt.Fprintf(w, "counters: %s (%d folds)\n", r.Counters, r.Generation)
	for _, k := range slices.Sorted(maps.Keys(r.Problems)) {
		fmt.Fprintf(w, "problem (%s): %s\n", k, r.Problems[k])
	}
	if len(r.Families) == 0 {
		fmt.Fprintln(w, "no figures yet: set metricsFile in nicmux's entry, and run a verb")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range r.Families {
		fmt.Fprintf(tw, "\n%s (%s)\t\n", f.Name, f.Type)
		for _, s := range f.Series {
			var labels []string
			for _, name := range f.Labels {
				labels = append(labels, name+"="+s.Labels[name])
			}
			if s.Value != nil {
				fmt.Fprintf(tw, "  %s\t%s\n", strings.Join(labels, " "), strconv.FormatFloat(*s.Value, 'f', -1, 64))
				continue
			}
			var buckets []string
			for _, b := range s.Buckets {
				buckets = append(buckets, b.LE+":"+strconv.FormatUint(b.Count, 10))
			}
			fmt.Fprintf(tw, "  %s\tcount %d  sum %.6g  le %s\n", strings.Join(labels, " "), *s.Count, *s.Sum, strings.Join(buckets, " "))
		}
	}
	_ = tw.Flush()
}
