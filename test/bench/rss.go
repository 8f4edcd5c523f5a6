package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/sys/unix"
)

// rssEvery is how often the peak RSS pass samples nicmux's VmHWM.
const rssEvery = 200 * time.Microsecond

// peakRSS is one run's peak RSS pass: every nicmux variant attaches, checks
// and detaches one container through libcni, untimed, while an exec of its
// own samples the nicmux process's VmHWM from outside (nicmux does not
// report its own). A sample holds every peak before it, so a peak is
// missed only in the last rssEvery of a process. It returns each variant's
// peak per verb, in KB, by label.
func peakRSS(vs []*variant) map[string][nVerbs]int64 {
	out := map[string][nVerbs]int64{}
	for _, v := range vs {
		if !v.kind.nicmux() {
			continue
		}
		x := &rssExec{nicmux: v.dirs[0] + "/nicmux"}
		lib := libcni.NewCNIConfig(v.dirs, x)
		list, err := libcni.ConfListFromBytes(v.conflist)
		must(err, "%s: its conflist", v.label)
		ns := v.env.newNetns()
		rt := &libcni.RuntimeConf{ContainerID: v.env.name("c"), NetNS: ns, IfName: "eth0"}
		ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
		_, err = lib.AddNetworkList(ctx, list, rt)
		if err == nil {
			err = lib.CheckNetworkList(ctx, list, rt)
		}
		if err == nil {
			err = lib.DelNetworkList(ctx, list, rt)
		}
		cancel()
		must(err, "%s: peak RSS pass, container %s%s", v.label, rt.ContainerID, v.logTail())
		must(verifyEmpty(ns), "%s: peak RSS pass: after DEL of %s", v.label, rt.ContainerID)
		v.env.destroyNetns(ns)
		out[v.label] = x.peakKB
	}
	return out
}

// rssExec runs plugins as libcni does, sampling nicmux's VmHWM as it runs.
type rssExec struct {
	nicmux string
	mu     sync.Mutex
	peakKB [nVerbs]int64 // by verb
	version.PluginDecoder
}

func (x *rssExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (x *rssExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = environ, bytes.NewReader(stdin), &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	stop, peak := make(chan struct{}), make(chan int64)
	go func() {
		var kb int64
		for {
			kb = max(kb, vmHWMKB(pid))
			select {
			case <-stop:
				peak <- kb
				return
			case <-time.After(rssEvery):
			}
		}
	}()
	// Exited, not yet reaped: the pid cannot name another process while
	// the sampler stops.
	for {
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
			break
		}
	}
	close(stop)
	kb := <-peak
	err := cmd.Wait()
	if path == x.nicmux {
		x.note(environ, kb)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s%s", path, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// note keeps the peak of one nicmux run, by its CNI_COMMAND.
func (x *rssExec) note(environ []string, kb int64) {
	for _, kv := range environ {
		if cmd, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			for verb, name := range verbNames {
				if name == cmd {
					x.mu.Lock()
					x.peakKB[verb] = max(x.peakKB[verb], kb)
					x.mu.Unlock()
				}
			}
		}
	}
}

// vmHWMKB is a process's peak resident memory so far, 0 when it cannot be
// read (the process is gone).
func vmHWMKB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	var kb int64
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if _, err := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &kb); err == nil {
			return kb
		}
	}
	return 0
}
