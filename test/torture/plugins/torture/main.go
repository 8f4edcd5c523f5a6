// Command torture is the torture suite's fault plugin. Put in a delegate
// chain, it either passes its prevResult through (no "exec") or becomes the
// real plugin named by "exec" (same pid, same stdin less its own keys, type
// set to that plugin), after an optional fault. Its own settings are under
// "torture":
//
//	{"type": "torture", "exec": "portmap", "capabilities": {...}, ...portmap's own keys...,
//	 "torture": {
//	   "verbs":   ["ADD"],         // verbs the fault applies to (default: all)
//	   "marker":  "/path",         // appended "<verb> <ifname> <pid>" on every call, before anything else
//	   "span":    "/path",         // appended "begin <verb> <containerID> <ifname> <pid> <ns>" first, and "end ..." when a
//	                               //   pass-through call is done (CLOCK_MONOTONIC nanoseconds): when the call ran
//	   "armFile": "/path",         // the fault applies only while this file exists
//	   "once":    true,            // ... and disarms it (removes armFile) when it fires
//	   "delayMs": 500,             // sleep first (then act, or exec the real plugin)
//	   "action":  "hang",          // "" (none), hang, fail, garbage, signal, flood
//	   "child":   true,            // hang: leave a child process hanging too
//	   "code":    11,              // fail: the CNI code
//	   "exit":    1,               // garbage: the exit status (0: garbage as a "success")
//	   "signal":  "KILL",          // signal: KILL or TERM
//	   "floodMB": 100,             // flood: MB written before failing
//	   "floodTo": "stdout"         // flood: stdout or stderr
//	 }}
//
// Every process it starts inherits its environment, so the suite finds
// them all by the trial's marker variable.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type settings struct {
	Verbs   []string `json:"verbs"`
	Marker  string   `json:"marker"`
	Span    string   `json:"span"`
	ArmFile string   `json:"armFile"`
	Once    bool     `json:"once"`
	DelayMs int      `json:"delayMs"`
	Action  string   `json:"action"`
	Child   bool     `json:"child"`
	Code    uint     `json:"code"`
	Exit    int      `json:"exit"`
	Signal  string   `json:"signal"`
	FloodMB int      `json:"floodMB"`
	FloodTo string   `json:"floodTo"`
}

const childEnv = "TORTURE_HANGING_CHILD"

var versions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

func main() {
	if os.Getenv(childEnv) != "" {
		hang() // a child left hanging by "hang" with "child"
	}
	verb := os.Getenv("CNI_COMMAND")
	if verb == "" {
		fmt.Println("CNI torture test plugin")
		return
	}
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(999, "reading stdin: "+err.Error())
	}
	if verb == "VERSION" {
		out, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "supportedVersions": versions})
		os.Stdout.Write(out)
		return
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &obj); err != nil {
		fail(6, "torture: decoding config: "+err.Error())
	}
	var s settings
	if raw, ok := obj["torture"]; ok {
		if err := json.Unmarshal(raw, &s); err != nil {
			fail(6, "torture: decoding settings: "+err.Error())
		}
	}
	var target string
	if raw, ok := obj["exec"]; ok {
		_ = json.Unmarshal(raw, &target)
	}
	if s.Marker != "" {
		if f, err := os.OpenFile(s.Marker, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintf(f, "%s %s %d\n", verb, os.Getenv("CNI_IFNAME"), os.Getpid())
			f.Close()
		}
	}
	span(s.Span, "begin", verb)
	if active(&s, verb) {
		if s.DelayMs > 0 {
			time.Sleep(time.Duration(s.DelayMs) * time.Millisecond)
		}
		act(&s)
	}
	if target != "" {
		become(target, obj, stdin)
	}
	pass(verb, obj)
	span(s.Span, "end", verb)
}

// span appends a line saying what this call is and when, in nanoseconds of
// CLOCK_MONOTONIC (one clock for every process), to path, if set.
func span(path, what, verb string) {
	if path == "" {
		return
	}
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
		fmt.Fprintf(f, "%s %s %s %s %d %d\n", what, verb, os.Getenv("CNI_CONTAINERID"), os.Getenv("CNI_IFNAME"), os.Getpid(), ts.Nano())
		f.Close()
	}
}

// active reports whether the fault applies to this call, disarming a
// once-only fault (removing its arm file: only one call can win that).
func active(s *settings, verb string) bool {
	if len(s.Verbs) > 0 && !slices.Contains(s.Verbs, verb) {
		return false
	}
	if s.ArmFile == "" {
		return true
	}
	if s.Once {
		return os.Remove(s.ArmFile) == nil
	}
	_, err := os.Stat(s.ArmFile)
	return err == nil
}

func act(s *settings) {
	switch s.Action {
	case "":
	case "hang":
		if s.Child {
			cmd := exec.Command("/proc/self/exe")
			cmd.Env = append(os.Environ(), childEnv+"=1")
			_ = cmd.Start()
		}
		hang()
	case "fail":
		code := s.Code
		if code == 0 {
			code = 11
		}
		fail(code, "torture: told to fail")
	case "garbage":
		fmt.Print("this is not JSON {{{ garbage from the torture plugin")
		os.Exit(s.Exit)
	case "signal":
		// Go dies of an unhandled SIGTERM as of SIGKILL: by the signal.
		sig := syscall.SIGKILL
		if s.Signal == "TERM" {
			sig = syscall.SIGTERM
		}
		_ = syscall.Kill(os.Getpid(), sig)
		time.Sleep(time.Second)
		os.Exit(3)
	case "flood":
		w := os.Stdout
		if s.FloodTo == "stderr" {
			w = os.Stderr
		}
		line := "flood from the torture plugin.\n" // 31 bytes
		chunk := []byte(strings.Repeat(line, 1<<20/len(line)+1)[:1<<20])
		for i := 0; i < s.FloodMB; i++ {
			if _, err := w.Write(chunk); err != nil {
				break
			}
		}
		os.Exit(1)
	default:
		fail(7, "torture: unknown action "+s.Action)
	}
}

// hang sleeps for ever (select{} would not do: with no other goroutine
// Go's runtime calls it a deadlock and exits).
func hang() {
	for {
		time.Sleep(time.Hour)
	}
}

// become execs the real plugin in place of this process, with the
// configuration less the torture keys on its stdin.
func become(target string, obj map[string]json.RawMessage, stdin []byte) {
	delete(obj, "torture")
	delete(obj, "exec")
	obj["type"], _ = json.Marshal(target)
	conf, err := json.Marshal(obj)
	if err != nil {
		fail(999, "torture: encoding config: "+err.Error())
	}
	path := ""
	for _, dir := range filepath.SplitList(os.Getenv("CNI_PATH")) {
		p := filepath.Join(dir, target)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			path = p
			break
		}
	}
	if path == "" {
		fail(7, "torture: plugin "+target+" not found in CNI_PATH")
	}
	fd, err := unix.MemfdCreate("torture-stdin", 0)
	if err == nil {
		_, err = unix.Write(fd, conf)
	}
	if err == nil {
		_, err = unix.Seek(fd, 0, 0)
	}
	if err == nil {
		err = unix.Dup2(fd, 0)
	}
	if err != nil {
		fail(999, "torture: preparing stdin: "+err.Error())
	}
	_ = unix.Close(fd)
	err = syscall.Exec(path, []string{path}, os.Environ())
	fail(999, "torture: exec "+path+": "+err.Error())
}

// pass acts as a no-op plugin: ADD prints its prevResult (or an empty
// result), the other verbs succeed.
func pass(verb string, obj map[string]json.RawMessage) {
	if verb != "ADD" {
		return
	}
	var ver string
	_ = json.Unmarshal(obj["cniVersion"], &ver)
	if prev, ok := obj["prevResult"]; ok && len(prev) > 0 && string(prev) != "null" {
		var res map[string]json.RawMessage
		if json.Unmarshal(prev, &res) == nil {
			res["cniVersion"], _ = json.Marshal(ver)
			out, _ := json.Marshal(res)
			os.Stdout.Write(out)
			return
		}
	}
	out, _ := json.Marshal(map[string]any{"cniVersion": ver})
	os.Stdout.Write(out)
}

func fail(code uint, msg string) {
	out, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "code": code, "msg": msg})
	os.Stdout.Write(out)
	os.Exit(1)
}
