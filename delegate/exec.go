package delegate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/version"
)

// Exec finds and runs plugin binaries. It has the method set of the CNI
// library's invoke.Exec, so that library's fakes fit; nicmux does not import
// invoke itself because it links OpenTelemetry and net/http, which would
// more than double the start-up time of every nicmux run.
type Exec interface {
	ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error)
	FindInPath(plugin string, paths []string) (string, error)
	Decode(jsonBytes []byte) (version.PluginInfo, error)
}

// RawExec runs plugin binaries from disk, as invoke.RawExec does.
type RawExec struct {
	// Stderr receives what plugins print on their standard error.
	Stderr io.Writer
	version.PluginDecoder
}

// ExecPlugin runs a plugin and returns its standard output. A plugin that
// fails gets its CNI error parsed from standard output.
func (e *RawExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	for attempt := 0; ; attempt++ {
		stdout.Reset()
		stderr.Reset()
		c := exec.CommandContext(ctx, pluginPath)
		c.Env = environ
		c.Stdin = bytes.NewReader(stdin)
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		if err == nil {
			break
		}
		// A plugin binary being replaced is briefly "text file busy".
		if strings.Contains(err.Error(), "text file busy") && attempt < 5 {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		return nil, pluginErr(err, stdout.Bytes(), stderr.Bytes())
	}
	if e.Stderr != nil && stderr.Len() > 0 {
		_, _ = stderr.WriteTo(e.Stderr)
	}
	return stdout.Bytes(), nil
}

func pluginErr(err error, stdout, stderr []byte) error {
	e := &types.Error{}
	switch {
	case len(stdout) == 0 && len(stderr) == 0:
		e.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
	case len(stdout) == 0:
		e.Msg = fmt.Sprintf("netplugin failed: %q: %v", string(stderr), err)
	default:
		if perr := json.Unmarshal(stdout, e); perr != nil {
			e.Msg = fmt.Sprintf("netplugin failed but error parsing its diagnostic message %q: %v", string(stdout), perr)
		}
	}
	return e
}

// FindInPath returns the path of the first regular file named plugin in
// paths.
func (e *RawExec) FindInPath(plugin string, paths []string) (string, error) {
	if plugin == "" || strings.ContainsRune(plugin, os.PathSeparator) {
		return "", fmt.Errorf("invalid plugin name %q", plugin)
	}
	for _, dir := range paths {
		full := filepath.Join(dir, plugin)
		if fi, err := os.Stat(full); err == nil && fi.Mode().IsRegular() {
			return full, nil
		}
	}
	return "", fmt.Errorf("failed to find plugin %q in path %v", plugin, paths)
}

// environ is the environment of one plugin call: nicmux's own, with the CNI
// variables set for the call.
type environ struct {
	command, containerID, netns, ifname, args, path string
}

func (v environ) list() []string {
	set := map[string]string{
		"CNI_COMMAND": v.command, "CNI_CONTAINERID": v.containerID, "CNI_NETNS": v.netns,
		"CNI_IFNAME": v.ifname, "CNI_ARGS": v.args, "CNI_PATH": v.path,
	}
	out := make([]string, 0, len(os.Environ())+len(set))
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := set[k]; !ours {
			out = append(out, kv)
		}
	}
	for k, val := range set {
		out = append(out, k+"="+val)
	}
	return out
}

// execWithResult runs a plugin and decodes its result. A result without a
// cniVersion is taken to be at the configuration's version, as libcni does.
func execWithResult(ctx context.Context, ex Exec, path string, stdin []byte, env environ) (types.Result, error) {
	out, err := ex.ExecPlugin(ctx, path, stdin, env.list())
	if err != nil {
		return nil, err
	}
	var probe struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		return nil, fmt.Errorf("decoding the plugin's result: %w", err)
	}
	ver := probe.CNIVersion
	if ver == "" {
		if ver, err = (&version.ConfigDecoder{}).Decode(stdin); err != nil {
			return nil, err
		}
	}
	res, err := create.Create(ver, out)
	if err != nil {
		return nil, fmt.Errorf("decoding the plugin's result: %w", err)
	}
	return res, nil
}

func execWithoutResult(ctx context.Context, ex Exec, path string, stdin []byte, env environ) error {
	_, err := ex.ExecPlugin(ctx, path, stdin, env.list())
	return err
}
