package delegate

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the plugins the real-process tests run, and as
// the "nicmux" those tests kill. pluginDir holds links to it named tp-PART:
// run under such a name, TestMain acts the part and exits. A helper run
// with NICMUX_TEST_HELPER set acts that helper (a nicmux that starts
// plugins and is then killed).
//
// A plugin finds the folder its markers go in in CNI_ARGS (DIR=...).
var pluginDir string

var parts = []string{"echo", "streams", "fail", "bigmsg", "silent", "stderr", "garbage", "code0", "signal",
	"flood", "sleep", "family", "detach", "exit", "a", "b", "c"}

func TestMain(m *testing.M) {
	if part, ok := strings.CutPrefix(filepath.Base(os.Args[0]), "tp-"); ok {
		// Not os.Exit: under -race, it waits a second before exiting.
		syscall.Exit(child(part))
	}
	if h := os.Getenv("NICMUX_TEST_HELPER"); h != "" {
		os.Exit(helper(h))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if pluginDir, err = os.MkdirTemp("", "nicmux-delegate-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(pluginDir)
	for _, p := range parts {
		if err := os.Symlink(self, filepath.Join(pluginDir, "tp-"+p)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	return m.Run()
}

// markerDir is the folder named in CNI_ARGS.
func markerDir() string {
	for _, kv := range strings.Split(os.Getenv("CNI_ARGS"), ";") {
		if v, ok := strings.CutPrefix(kv, "DIR="); ok {
			return v
		}
	}
	return os.TempDir()
}

// writeMarker writes a file in the marker folder atomically, so that a test
// polling for it never reads it half-written.
func writeMarker(name, content string) {
	dir := markerDir()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err == nil {
		_ = os.Rename(tmp, filepath.Join(dir, name))
	}
}

// startSleeper starts a grandchild that sleeps, in the caller's process
// group; it inherits the caller's stdout and stderr when inherit is set.
func startSleeper(inherit bool) int {
	self, _ := os.Executable()
	cmd := &exec.Cmd{Path: self, Args: []string{"tp-sleep"}}
	if inherit {
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(98)
	}
	return cmd.Process.Pid
}

func child(part string) int {
	pid := os.Getpid()
	switch part {
	case "sleep": // reads nothing, ends only when killed
		time.Sleep(time.Minute)
		return 0
	case "family": // starts two grandchildren in its group, then sleeps
		a, b := startSleeper(false), startSleeper(false)
		writeMarker("family", fmt.Sprintf("%d %d", a, b))
		time.Sleep(time.Minute)
		return 0
	case "exit":
		return 0
	case "a", "b", "c":
		writeMarker(part+".started", strconv.Itoa(pid))
	}
	in, _ := io.ReadAll(os.Stdin)
	switch part {
	case "echo": // stdin to stdout, the CNI variables to stderr
		os.Stdout.Write(in)
		fmt.Fprintf(os.Stderr, "command=%s container=%s netns=%s ifname=%s args=%s path=%s",
			os.Getenv("CNI_COMMAND"), os.Getenv("CNI_CONTAINERID"), os.Getenv("CNI_NETNS"),
			os.Getenv("CNI_IFNAME"), os.Getenv("CNI_ARGS"), os.Getenv("CNI_PATH"))
		return 0
	case "streams": // more than a pipe holds on both streams, interleaved
		out, errOut := []byte(strings.Repeat("o", 16<<10)), []byte(strings.Repeat("e", 16<<10))
		for i := range 60 {
			os.Stdout.Write(out)
			if i < 20 {
				os.Stderr.Write(errOut)
			}
		}
		return 0
	case "fail": // a CNI error on stdout
		fmt.Printf(`{"cniVersion":"1.0.0","code":11,"msg":"try later","details":"%d bytes in"}`, len(in))
		return 1
	case "bigmsg": // a CNI error with a message larger than is quoted
		fmt.Printf(`{"cniVersion":"1.0.0","code":11,"msg":%q}`, strings.Repeat("m", 10000))
		return 1
	case "silent":
		return 3
	case "stderr":
		fmt.Fprint(os.Stderr, "something broke\n")
		return 2
	case "garbage":
		fmt.Print(strings.Repeat("garbage ", 1250)) // 10000 bytes
		return 1
	case "code0":
		fmt.Print(`{"cniVersion":"1.0.0","code":0,"msg":"zero"}`)
		return 1
	case "signal":
		_ = syscall.Kill(pid, syscall.SIGTERM)
		time.Sleep(time.Minute)
		return 0
	case "flood": // 100 MB on stdout, then a failure
		chunk := []byte(strings.Repeat("x", 1<<20))
		for range 100 {
			os.Stdout.Write(chunk)
		}
		return 1
	case "detach": // answers and exits, leaving a grandchild that holds stdout
		writeMarker("detached", strconv.Itoa(startSleeper(true)))
		fmt.Print(`{"cniVersion":"1.0.0"}`)
		writeMarker("exited", strconv.FormatInt(time.Now().UnixNano(), 10))
		return 0
	case "a", "b", "c":
		return plugin(part, in)
	}
	return 99
}

// plugin is a CNI plugin named id (tp-a, tp-b, tp-c) and driven by its
// configuration. It notes ID.started once it runs and ID.read once it has
// read its input, both holding its pid; it then waits for ID2.started if
// "waitFor" is ID2, sleeps "sleepMs", fails with code "fail" if set, and
// answers ADD with its prevResult (or an empty result).
func plugin(id string, in []byte) int {
	var cfg struct {
		CNIVersion string          `json:"cniVersion"`
		WaitFor    string          `json:"waitFor"`
		SleepMs    int             `json:"sleepMs"`
		Fail       uint            `json:"fail"`
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := json.Unmarshal(in, &cfg); err != nil {
		fmt.Printf(`{"code":100,"msg":%q}`, err.Error())
		return 1
	}
	writeMarker(id+".read", strconv.Itoa(os.Getpid()))
	if cfg.WaitFor != "" {
		eventually(10*time.Second, func() bool { return exists(markerDir(), cfg.WaitFor+".started") })
	}
	time.Sleep(time.Duration(cfg.SleepMs) * time.Millisecond)
	if cfg.Fail != 0 {
		fmt.Printf(`{"cniVersion":%q,"code":%d,"msg":"%s failed"}`, cfg.CNIVersion, cfg.Fail, id)
		return 1
	}
	if os.Getenv("CNI_COMMAND") != "ADD" {
		return 0
	}
	if cfg.PrevResult != nil {
		os.Stdout.Write(cfg.PrevResult)
	} else {
		fmt.Printf(`{"cniVersion":%q}`, cfg.CNIVersion)
	}
	return 0
}

// helper acts a nicmux that starts plugins and waits to be killed.
func helper(name string) int {
	plugins := os.Getenv("NICMUX_TEST_PLUGINS")
	switch name {
	case "pdeath": // starts a plugin that never reads its input
		p, err := startProc(filepath.Join(plugins, "tp-sleep"), os.Environ())
		if err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Println(p.pid())
	case "fence": // runs a plugin that starts grandchildren, noting it
		r := &Runner{Path: []string{plugins}, Started: func(p Proc) { fmt.Println(p.Note()) }}
		fmt.Println(r.exec(context.Background(), "ADD", Env{CNIArgs: os.Getenv("CNI_ARGS")}, "tp-family", []byte("{}")))
	}
	time.Sleep(time.Minute)
	return 0
}

// running reports whether pid is a process that can still act: alive and
// not a zombie (whose reaper, init in a container, may be slow).
func running(pid int) bool {
	f, err := statFields(strconv.Itoa(pid))
	return err == nil && len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// eventually polls cond until it holds or d has passed.
func eventually(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// readMarker waits up to 10 s for a marker file and returns its content.
func readMarker(t testing.TB, dir, name string) string {
	t.Helper()
	var b []byte
	if !eventually(10*time.Second, func() bool {
		var err error
		b, err = os.ReadFile(filepath.Join(dir, name))
		return err == nil
	}) {
		t.Fatalf("no marker %s after 10s", name)
	}
	return string(b)
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

// pids parses a marker holding pids, and has them killed when the test
// ends, whatever happened.
func pids(t testing.TB, s string) []int {
	t.Helper()
	var out []int
	for _, f := range strings.Fields(s) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 1 {
			t.Fatalf("bad pid %q in %q", f, s)
		}
		out = append(out, pid)
	}
	killAtCleanup(t, out...)
	return out
}

func killAtCleanup(t testing.TB, pids ...int) {
	t.Cleanup(func() {
		for _, pid := range pids {
			if running(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// startHelper starts the test binary as helper name, and returns it and a
// reader of its standard output; the helper is killed when the test ends.
func startHelper(t *testing.T, name, dir string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "NICMUX_TEST_HELPER="+name, "NICMUX_TEST_PLUGINS="+pluginDir, "CNI_ARGS=DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewReader(out)
}

// record collects what a Runner reports (Started, Observe), from any
// goroutine.
type record[T any] struct {
	mu    sync.Mutex
	items []T
}

func (l *record[T]) add(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, v)
}

func (l *record[T]) get() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.items...)
}

// procLog records the processes a Runner reports as Started.
type procLog struct{ record[Proc] }

// wait waits up to 10 s for n processes to be reported and returns them;
// they are killed when the test ends, should the test fail before.
func (l *procLog) wait(t testing.TB, n int) []Proc {
	t.Helper()
	if !eventually(10*time.Second, func() bool { return len(l.get()) >= n }) {
		t.Fatalf("%d processes started, want %d", len(l.get()), n)
	}
	ps := l.get()
	for _, p := range ps {
		killAtCleanup(t, p.Pid)
	}
	return ps
}
