package testworld

import (
	"bufio"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Files are a test world's folders and files, all under Dir: nicmux's
// state folder and log, host-local's data folder (IPAMDir), the tuning
// plugin's (TuningDir) and the recorder plugin's log (RecordFile). A
// suite's world embeds them, so its templates name them {{.StateDir}}.
type Files struct {
	Dir, StateDir, IPAMDir, TuningDir, LogFile, RecordFile string
}

// FilesIn lays out a world's files in dir; nothing is made yet.
func FilesIn(dir string) Files {
	return Files{
		Dir:        dir,
		StateDir:   filepath.Join(dir, "state"),
		IPAMDir:    filepath.Join(dir, "ipam"),
		TuningDir:  filepath.Join(dir, "tuning"),
		LogFile:    filepath.Join(dir, "nicmux.log"),
		RecordFile: filepath.Join(dir, "calls.jsonl"),
	}
}

// Leases reads host-local's leases of a network: IP -> owner,
// "containerID/ifname" as the lease file names them, or "" for a file that
// names none (a crash between its creation and its write). A network
// without a folder holds no lease.
func (f Files) Leases(network string) (map[string]string, error) {
	return leasesIn(filepath.Join(f.IPAMDir, network))
}

// Conflist is a configuration list of one plugin, nicmux, with the
// world's state folder and log, debug logging and the portMappings
// capability; extra keys are added to nicmux's entry (or replace one).
func (f Files) Conflist(cniVersion, name, attachments string, extra map[string]any) ([]byte, error) {
	plugin := map[string]any{
		"type":         "nicmux",
		"attachments":  attachments,
		"stateDir":     f.StateDir,
		"logFile":      f.LogFile,
		"logLevel":     "debug",
		"capabilities": map[string]bool{"portMappings": true},
	}
	for k, v := range extra {
		plugin[k] = v
	}
	return json.Marshal(map[string]any{"cniVersion": cniVersion, "name": name, "plugins": []any{plugin}})
}

// Log returns nicmux's log so far ("" before it has one).
func (f Files) Log() string {
	b, _ := os.ReadFile(f.LogFile)
	return string(b)
}

// LogLines returns the lines of nicmux's log that hold every one of parts.
func (f Files) LogLines(parts ...string) []string {
	var out []string
next:
	for _, l := range strings.Split(f.Log(), "\n") {
		if l == "" {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// LogOnFailure has the end of a failed test print nicmux's log.
func (f Files) LogOnFailure(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(f.LogFile); err == nil {
				t.Logf("nicmux log:\n%s", b)
			}
		}
	})
}

// Call is one call the recorder test plugin (test/plugins/recorder)
// logged: the verb, the CNI variables and the exact configuration (Stdin)
// it was handed. The recorder's keys are these names in lower camel case,
// which encoding/json matches without tags.
type Call struct {
	Command, ContainerID, Netns, IfName, Args, Path string
	Stdin                                           json.RawMessage
}

// Decode decodes the configuration the call was handed into v.
func (c Call) Decode(v any) error { return json.Unmarshal(c.Stdin, v) }

// Calls reads the recorder's log, oldest call first: none before the
// recorder's first call.
func (f Files) Calls() ([]Call, error) {
	file, err := os.Open(f.RecordFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var out []Call
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var c Call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// WriteFile writes data to path, making its folders, and ends the test on
// an error.
func WriteFile[D ~string | ~[]byte](t testing.TB, path string, data D) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// WriteDeployed writes a configuration file as WriteFile does, dated an
// hour back, as a file deployed before the verbs that read it: nicmux reads
// a file changed less than 100 ms ago again once it is older
// (docs/configuration.md), which would add that wait to a test's first
// verb.
func WriteDeployed[D ~string | ~[]byte](t testing.TB, path string, data D) {
	t.Helper()
	WriteFile(t, path, data)
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
}

// ReadJSON decodes the JSON file at path into v and ends the test on an
// error.
func ReadJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// WriteJSON writes v to path as indented JSON, making its folders, and
// ends the test on an error.
func WriteJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("encoding %s: %v", path, err)
	}
	WriteFile(t, path, b)
}
