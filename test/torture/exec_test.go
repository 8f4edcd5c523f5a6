package torture

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// The runtime's exec: how the suite's runtime runs nicmux, and what it
// keeps of every run.

// nicmuxRun is one nicmux process the runtime ran.
type nicmuxRun struct {
	verb, id       string
	stdout, stderr []byte
	err            error
	dur            time.Duration
	peakRSSKB      int64 // VmHWM, sampled from outside, when watched
	watchKilled    bool
}

// tExec runs nicmux as libcni's RawExec does (SIGKILL when the context
// ends), adding the trial marker to its environment and keeping what it
// printed. With maxRSSKB set it samples nicmux's resident memory and kills
// it past that.
type tExec struct {
	w        *world
	mu       sync.Mutex
	runs     []*nicmuxRun
	maxRSSKB int64
	version.PluginDecoder
}

func (e *tExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (e *tExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	r := &nicmuxRun{}
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			r.verb = v
		}
		if v, ok := strings.CutPrefix(kv, "CNI_CONTAINERID="); ok {
			r.id = v
		}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = append(append([]string{}, environ...), trialEnv+"="+e.w.id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		if e.maxRSSKB > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.watch(cmd.Process.Pid, r, stop)
			}()
		}
		err = cmd.Wait()
		close(stop)
		wg.Wait()
	}
	r.dur = time.Since(start)
	r.stdout, r.stderr, r.err = stdout.Bytes(), stderr.Bytes(), err
	e.mu.Lock()
	e.runs = append(e.runs, r)
	e.mu.Unlock()
	if err != nil {
		return nil, pluginErr(err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func (e *tExec) watch(pid int, r *nicmuxRun, stop chan struct{}) {
	for {
		if kb := vmHWMKB(pid); kb > r.peakRSSKB {
			r.peakRSSKB = kb
		}
		if r.peakRSSKB > e.maxRSSKB && !r.watchKilled {
			r.watchKilled = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func vmHWMKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// pluginErr is libcni's RawExec.pluginErr.
func pluginErr(err error, stdout, stderr []byte) error {
	emsg := types.Error{}
	if len(stdout) == 0 {
		if len(stderr) == 0 {
			emsg.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
		} else {
			emsg.Msg = fmt.Sprintf("netplugin failed: %q: %v", string(stderr), err)
		}
	} else if perr := json.Unmarshal(stdout, &emsg); perr != nil {
		emsg.Msg = fmt.Sprintf("netplugin failed but error parsing its diagnostic message %q: %v", string(stdout), perr)
	}
	return &emsg
}

// lastRun returns the last nicmux run of verb.
func (w *world) lastRun(verb string) *nicmuxRun {
	w.ex.mu.Lock()
	defer w.ex.mu.Unlock()
	for i := len(w.ex.runs) - 1; i >= 0; i-- {
		if w.ex.runs[i].verb == verb {
			return w.ex.runs[i]
		}
	}
	return nil
}

// forgetRuns forgets the nicmux runs so far: a class that runs thousands
// keeps those of its last round for a failure report.
func (w *world) forgetRuns() {
	w.ex.mu.Lock()
	defer w.ex.mu.Unlock()
	w.ex.runs = nil
}

// runsLog is every nicmux run of the trial, for a failure report.
func (w *world) runsLog() string {
	w.ex.mu.Lock()
	defer w.ex.mu.Unlock()
	var b strings.Builder
	for i, r := range w.ex.runs {
		if r.err == nil {
			fmt.Fprintf(&b, "  run %d: %s %s ok in %s (stdout %d bytes)\n", i, r.verb, r.id, r.dur.Round(time.Millisecond), len(r.stdout))
		} else {
			fmt.Fprintf(&b, "  run %d: %s %s in %s, %v\n    stdout: %s\n", i, r.verb, r.id, r.dur.Round(time.Millisecond), r.err, short(string(r.stdout), 600))
		}
		if len(r.stderr) > 0 {
			fmt.Fprintf(&b, "    stderr: %s\n", short(string(r.stderr), 600))
		}
	}
	return b.String()
}
