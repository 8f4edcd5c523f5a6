package delegate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	p, err := e.StartPlugin(ctx, pluginPath, environ)
	if err != nil {
		return nil, err
	}
	return p.Feed(ctx, stdin)
}

// Started is a plugin process started ahead of its configuration (see
// Starter). Exactly one of Feed or Abort must be called.
type Started interface {
	// Feed hands the plugin its configuration and returns as ExecPlugin
	// does.
	Feed(ctx context.Context, stdin []byte) ([]byte, error)
	// Abort kills the plugin, which has read nothing, and reaps it.
	Abort()
}

// Starter is an Exec that can start a plugin before its configuration is
// known: the process waits on its standard input. The runner uses it to
// overlap a plugin's start-up (a few milliseconds for a Go binary) with
// the work before it.
type Starter interface {
	StartPlugin(ctx context.Context, pluginPath string, environ []string) (Started, error)
}

// StartPlugin starts a plugin that waits for its configuration.
func (e *RawExec) StartPlugin(ctx context.Context, pluginPath string, environ []string) (Started, error) {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := start(pluginPath, environ)
		// A plugin binary being replaced is briefly "text file busy".
		if errors.Is(err, syscall.ETXTBSY) && attempt < 5 {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err != nil {
			return nil, pluginErr(err, nil, nil)
		}
		return &started{p: p, stderr: e.Stderr}, nil
	}
}

type started struct {
	p      *proc
	stderr io.Writer
}

func (s *started) Feed(ctx context.Context, stdin []byte) ([]byte, error) {
	stdout, stderr, err := s.p.feed(ctx, stdin)
	if err != nil {
		return nil, pluginErr(err, stdout, stderr)
	}
	if s.stderr != nil && len(stderr) > 0 {
		_, _ = s.stderr.Write(stderr)
	}
	return stdout, nil
}

func (s *started) Abort() { s.p.abort() }

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

// decodeResult runs a plugin through exec and decodes its result. A result
// without a cniVersion is taken to be at the configuration's version, as
// libcni does.
func decodeResult(exec func() ([]byte, error), stdin []byte) (types.Result, error) {
	out, err := exec()
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
