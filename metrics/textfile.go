package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RendererName is the renderer's binary, looked for beside the running
// plugin's: it links the Prometheus library, which the plugins do not.
const RendererName = "nicmux-metrics"

// How a renderer waits for more folds: a runtime that attaches containers
// one after another (Nomad, behind its client-wide lock) folds every few
// tens of milliseconds, and one renderer then draws them, a few at a
// time, instead of starting a process per verb; starting one costs the
// verb that does it more than its fold (test/bench/RESULTS.md). Waiting
// costs a read of the counters' header per poll.
const (
	linger = 10 * time.Second
	poll   = 100 * time.Millisecond
)

// Textfile is where a node's figures go: the counters folder (inside the
// plugin's state folder) and the textfile node_exporter reads.
type Textfile struct {
	// Counters is the counters folder; File the textfile, a *.prom file of
	// node_exporter's --collector.textfile.directory.
	Counters, File string
	// LogFile is the plugin's log, where the renderer logs too; "" for
	// none.
	LogFile string
	// Renderer is the renderer binary; "" for RendererName beside the
	// running executable.
	Renderer string
}

// Record folds t into the counters and has the textfile drawn again. It
// never fails: what goes wrong is logged to log, each problem once.
func (p Textfile) Record(t *Tally, log *slog.Logger) {
	d, err := openFolder(p.Counters, true)
	if err != nil {
		log.Warn("metrics: the figures of this run are lost", "error", err)
		return
	}
	defer d.Close()
	_, err = d.fold(t)
	var torn *TornError
	switch {
	case errors.As(err, &torn):
		log.Warn("metrics: the counters could not be read and start again from zero", "error", err)
	case err != nil:
		d.report(log, "fold", "metrics: the figures of this run are lost", err)
		return
	}
	d.report(log, "fold", "", nil)
	d.report(log, "publish", "metrics: the textfile cannot be drawn", p.publish(d))
}

// publish starts a renderer, detached, unless one is at work on the file:
// that one sees the new counters before it ends (see Serve).
func (p Textfile) publish(d *folder) error {
	lock, _ := p.names()
	unlock, err := d.lock(lock, 0)
	if errors.Is(err, errBusy) {
		return nil
	}
	if err != nil {
		return err
	}
	unlock()
	return p.start()
}

// start starts the renderer in a session of its own, its output thrown
// away: the runtime waits for the end of the plugin's output, never for
// the renderer.
func (p Textfile) start() error {
	bin := p.Renderer
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		bin = filepath.Join(filepath.Dir(exe), RendererName)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	args := []string{bin, "render", "-counters", p.Counters, "-file", p.File}
	if p.LogFile != "" {
		args = append(args, "-log", p.LogFile)
	}
	proc, err := os.StartProcess(bin, args, &os.ProcAttr{Files: []*os.File{null, null, null}, Env: []string{},
		Sys: &syscall.SysProcAttr{Setsid: true}})
	if err != nil {
		return fmt.Errorf("starting the renderer: %w", err)
	}
	return proc.Release()
}

// names are the render lock's and the problem note's names for the file.
func (p Textfile) names() (lock, key string) {
	h := fnv.New64a()
	h.Write([]byte(p.File))
	key = fmt.Sprintf("render-%016x", h.Sum64())
	return key + ".lock", key
}

// Serve is the renderer: while it holds the file's render lock, it draws
// the counters with draw whenever a fold changed them, until none came
// for a while; it then lets go of the lock and draws again if a fold came
// meanwhile (whose run saw the lock held, and started no renderer). A
// renderer that finds the lock held ends at once. Problems drawing are
// logged, each once.
func (p Textfile) Serve(draw func(*Snapshot) error, log *slog.Logger) error {
	d, err := openFolder(p.Counters, false)
	if err != nil {
		return err
	}
	defer d.Close()
	lock, key := p.names()
	for {
		unlock, err := d.lock(lock, 0)
		if errors.Is(err, errBusy) {
			return nil
		}
		if err != nil {
			return err
		}
		drawn := p.drawWhileFolding(d, draw, func(err error) {
			d.report(log, key, "metrics: the textfile "+p.File+" cannot be written", err)
		})
		unlock()
		if gen, err := d.generation(); err != nil || gen == drawn {
			return nil
		}
	}
}

// drawWhileFolding draws the counters at once, then at every change, until
// none came for linger or they are gone (their folder was removed), and
// returns the generation it drew last.
func (p Textfile) drawWhileFolding(d *folder, draw func(*Snapshot) error, report func(error)) uint64 {
	drawn, first := uint64(0), true
	for idle := time.Now(); first || time.Since(idle) < linger; time.Sleep(poll) {
		gen, err := d.generation()
		if errors.Is(err, os.ErrNotExist) {
			return drawn
		}
		if first || gen != drawn {
			drawn, first, idle = gen, false, time.Now()
			snap, err := d.load()
			if err != nil {
				continue // torn: the next fold starts them again, and says so
			}
			report(draw(snap))
			drawn = snap.Generation
		}
	}
	return drawn
}

// generation is the counters' generation, read from their header alone;
// zero when it cannot be read.
func (d *folder) generation() (uint64, error) {
	f, err := d.lockFile(countersFile, unix.O_RDONLY|unix.O_NONBLOCK, unix.LOCK_SH, foldWait)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var head [64]byte
	n, _ := f.ReadAt(head[:], 0)
	line, _, _ := bytes.Cut(head[:n], []byte("\n"))
	gen, _, _, _ := decodeHeader(string(line))
	return gen, nil
}

// report logs a problem of the counters folder once: the first run that
// meets it logs it, and those after it stay quiet until it changes; its
// end is logged too. The note of what was logged is a file of the folder,
// key.problem; where it cannot be written, every run logs.
func (d *folder) report(log *slog.Logger, key, msg string, err error) {
	problem := ""
	if err != nil {
		problem = err.Error()
	}
	name := key + ".problem"
	old, rerr := d.ReadFile(name, maxFile)
	if rerr == nil && string(old) == problem || rerr != nil && problem == "" {
		return
	}
	if err == nil {
		_ = d.Remove(name)
		log.Info("metrics: recovered", "was", string(old))
		return
	}
	if werr := d.WriteFile(name, []byte(problem), false); werr != nil {
		err = errors.Join(err, werr) // logged again by the next run
	}
	log.Warn(msg, "error", err)
}

// Problems returns the problems noted in the counters folder dir, by what
// met them ("fold", "publish", or "render-…" for a renderer of one file):
// what was logged once and has not ended. The renderer of nicmux-ipam's
// file has no log: this is where its problems show.
func Problems(dir string) (map[string]string, error) {
	d, err := openFolder(dir, false)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer d.Close()
	names, err := filepath.Glob(filepath.Join(dir, "*.problem"))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range names {
		key := strings.TrimSuffix(filepath.Base(n), ".problem")
		if b, err := d.ReadFile(filepath.Base(n), maxFile); err == nil {
			out[key] = string(b)
		}
	}
	return out, nil
}
