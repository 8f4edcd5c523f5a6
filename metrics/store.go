package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nicmux/nicmux/safedir"
)

// countersFile is the counters, written in place under their own lock.
const countersFile = "counters"

// foldWait bounds the wait for the counters' lock: its holders only read,
// add and write some kilobytes, so a run that waits longer skips its
// figures rather than hold up the runtime.
const foldWait = 2 * time.Second

// header starts a counters file: the format, the generation, and the
// length and CRC-32 of the rest, by which a torn file is told.
const header = "nicmux-counters 1"

// TornError is a counters file that cannot be read: torn by a crash, or
// written by something else. Fold starts the counters again from zero.
type TornError struct {
	Path string
	Err  error
}

func (e *TornError) Error() string {
	return "metrics: " + e.Path + " cannot be read (" + e.Err.Error() + ")"
}

func (e *TornError) Unwrap() error { return e.Err }

// Fold adds t to the counters in the folder dir (made if need be) under
// their lock, and returns what it wrote. A torn counters file is started
// again from zero: the snapshot is then returned with a *TornError for
// the caller to log. Any other error means t was not folded.
func Fold(dir string, t *Tally) (*Snapshot, error) {
	d, err := openFolder(dir, true)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer d.Close()
	return d.fold(t)
}

func (d *folder) fold(t *Tally) (*Snapshot, error) {
	f, err := d.lockFile(countersFile, unix.O_RDWR|unix.O_CREAT, unix.LOCK_EX, foldWait)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	snap, torn := decodeFile(f)
	if torn != nil && !errors.As(torn, new(*TornError)) {
		return nil, torn
	}
	snap.apply(t)
	snap.Generation++
	if err := rewrite(f, snap.encode()); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return snap, torn
}

// Read reads the counters in the folder dir, under their lock, shared. A
// folder or file that is not there holds nothing yet.
func Read(dir string) (*Snapshot, error) {
	d, err := openFolder(dir, false)
	if errors.Is(err, os.ErrNotExist) {
		return &Snapshot{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer d.Close()
	return d.load()
}

// load reads the counters file under its lock, shared: an empty snapshot
// when there is none, or with a *TornError when it cannot be decoded.
func (d *folder) load() (*Snapshot, error) {
	f, err := d.lockFile(countersFile, unix.O_RDONLY|unix.O_NONBLOCK, unix.LOCK_SH, foldWait)
	if errors.Is(err, os.ErrNotExist) {
		return &Snapshot{}, nil
	}
	if err != nil {
		return &Snapshot{}, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	return decodeFile(f)
}

// decodeFile decodes the counters in f; an empty file holds nothing yet.
func decodeFile(f *os.File) (*Snapshot, error) {
	b, err := safedir.ReadAll(f, maxFile)
	if err != nil {
		return &Snapshot{}, fmt.Errorf("metrics: %w", err)
	}
	if len(b) == 0 {
		return &Snapshot{}, nil
	}
	snap, err := decode(b)
	if err != nil {
		return &Snapshot{}, &TornError{Path: f.Name(), Err: err}
	}
	return snap, nil
}

// encode writes the snapshot: the header line, then a line per series:
// the family's name, its label values, then its value, or a histogram's
// bucket counts and sum, all separated by tabs. Label values hold no
// control character (cleanLabel).
func (s *Snapshot) encode() []byte {
	var body []byte
	for _, sr := range s.Series {
		body = append(body, sr.Family.Name...)
		for _, l := range sr.Labels {
			body = append(append(body, '\t'), l...)
		}
		if sr.Family.Kind == Histogram {
			for _, c := range sr.Counts {
				body = strconv.AppendUint(append(body, '\t'), c, 10)
			}
			body = strconv.AppendFloat(append(body, '\t'), sr.Sum, 'g', -1, 64)
		} else {
			body = strconv.AppendFloat(append(body, '\t'), sr.Value, 'g', -1, 64)
		}
		body = append(body, '\n')
	}
	head := fmt.Sprintf("%s %d %d %08x\n", header, s.Generation, len(body), crc32.ChecksumIEEE(body))
	return append([]byte(head), body...)
}

// decode reads what encode wrote. Series of families this build does not
// know are dropped.
func decode(b []byte) (*Snapshot, error) {
	line, body, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return nil, errors.New("no header")
	}
	gen, length, sum, err := decodeHeader(string(line))
	if err != nil {
		return nil, err
	}
	if length != len(body) || crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("%d bytes where the header says %d, or a wrong checksum", len(body), length)
	}
	s := &Snapshot{Generation: gen}
	families := known()
	var fields []string
	for rest := string(body); rest != ""; {
		var l string
		l, rest, _ = strings.Cut(rest, "\n")
		fields = fields[:0]
		for f, more, ok := strings.Cut(l, "\t"); ; f, more, ok = strings.Cut(more, "\t") {
			fields = append(fields, f)
			if !ok {
				break
			}
		}
		f := families[fields[0]]
		if f == nil {
			continue
		}
		if err := s.decodeSeries(f, fields[1:]); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
	}
	return s, nil
}

// decodeHeader reads the header line: the generation, and the body's
// length and checksum.
func decodeHeader(line string) (gen uint64, length int, sum uint32, err error) {
	f := strings.Fields(line)
	if len(f) != 5 || f[0]+" "+f[1] != header {
		return 0, 0, 0, fmt.Errorf("header %.40q", line)
	}
	gen, err = strconv.ParseUint(f[2], 10, 64)
	if err == nil {
		length, err = strconv.Atoi(f[3])
	}
	if err == nil {
		var s uint64
		s, err = strconv.ParseUint(f[4], 16, 32)
		sum = uint32(s)
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("header %.40q: %w", line, err)
	}
	return gen, length, sum, nil
}

// decodeSeries reads one series' fields: its label values, then its
// values.
func (s *Snapshot) decodeSeries(f *Family, fields []string) error {
	n := len(f.Labels)
	want := n + 1
	if f.Kind == Histogram {
		want = n + len(f.Buckets) + 2
	}
	if len(fields) != want {
		return fmt.Errorf("%d fields, not %d", len(fields), want)
	}
	sr := s.series(f, fields[:n])
	vals := fields[n:]
	if f.Kind != Histogram {
		v, err := strconv.ParseFloat(vals[0], 64)
		sr.Value = v
		return err
	}
	for i := range sr.Counts {
		c, err := strconv.ParseUint(vals[i], 10, 64)
		if err != nil {
			return err
		}
		sr.Counts[i] = c
	}
	var err error
	sr.Sum, err = strconv.ParseFloat(vals[len(vals)-1], 64)
	return err
}
