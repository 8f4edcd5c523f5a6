// Package textfile draws a node's figures as a Prometheus text file,
// through the Prometheus library's own encoder, for node_exporter's
// textfile collector. Only the renderer (cmd/nicmux-metrics) links it:
// the library's package initialisation costs every start of a binary that
// does about a millisecond.
package textfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/nicmux/nicmux/metrics"
)

// Families converts a snapshot to the library's metric families, sorted
// by name, each metric's labels in the family's order.
func Families(snap *metrics.Snapshot) []*dto.MetricFamily {
	var out []*dto.MetricFamily
	for _, g := range snap.Groups() {
		f := g.Family
		mf := &dto.MetricFamily{Name: proto.String(f.Name), Help: proto.String(f.Help), Type: kind(f.Kind).Enum()}
		for _, sr := range g.Series {
			m := &dto.Metric{}
			for i, name := range f.Labels {
				m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(name), Value: proto.String(sr.Labels[i])})
			}
			switch f.Kind {
			case metrics.Counter:
				m.Counter = &dto.Counter{Value: proto.Float64(sr.Value)}
			case metrics.Gauge:
				m.Gauge = &dto.Gauge{Value: proto.Float64(sr.Value)}
			case metrics.Histogram:
				m.Histogram = histogram(f, sr)
			}
			mf.Metric = append(mf.Metric, m)
		}
		out = append(out, mf)
	}
	return out
}

func kind(k metrics.Kind) dto.MetricType {
	switch k {
	case metrics.Gauge:
		return dto.MetricType_GAUGE
	case metrics.Histogram:
		return dto.MetricType_HISTOGRAM
	}
	return dto.MetricType_COUNTER
}

// histogram is a series' buckets, cumulative; the encoder adds +Inf.
func histogram(f *metrics.Family, sr *metrics.Series) *dto.Histogram {
	cum := sr.Cumulative()
	h := &dto.Histogram{SampleCount: proto.Uint64(sr.Count()), SampleSum: proto.Float64(sr.Sum)}
	for i, le := range f.Buckets {
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(le), CumulativeCount: proto.Uint64(cum[i])})
	}
	return h
}

// Encode writes the snapshot in the Prometheus text format.
func Encode(snap *metrics.Snapshot) ([]byte, error) {
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range Families(snap) {
		if err := enc.Encode(mf); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", mf.GetName(), err)
		}
	}
	return buf.Bytes(), nil
}

// Write replaces the file at path with the snapshot, atomically: a
// temporary file beside it, which node_exporter does not read (its name
// does not end in .prom), renamed over it. Readable by all: node_exporter
// seldom runs as root.
func Write(snap *metrics.Snapshot, path string) error {
	b, err := Encode(snap)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		// Left by a renderer killed mid-write: only the holder of the
		// file's render lock writes it.
		_ = os.Remove(tmp)
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
