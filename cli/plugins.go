package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nicmux/nicmux/conf"
)

// defaultVersionTimeout bounds a plugin's VERSION answer: Nomad gives its
// fingerprint run 3 s, and a plugin that hangs longer on VERSION would hang
// a client's CNI calls, which run one at a time.
const defaultVersionTimeout = 3 * time.Second

// probeError is a plugin binary that cannot serve: the message says what,
// the hint what to do.
type probeError struct{ msg, hint string }

func (e *probeError) Error() string { return e.msg }

// prober finds plugin binaries in the CNI path and asks each its VERSION
// once per cniVersion.
type prober struct {
	path    []string
	env     *env
	timeout time.Duration
	cache   map[[2]string]probe
}

type probe struct {
	versions []string
	err      *probeError
}

func newProber(path []string, e *env) *prober {
	t := e.versionTimeout
	if t == 0 {
		t = defaultVersionTimeout
	}
	return &prober{path: path, env: e, timeout: t, cache: map[[2]string]probe{}}
}

// find returns the binary for a plugin type the way libcni finds it: the
// first regular file of that name in the CNI path.
func (p *prober) find(kind, name string) (string, *probeError) {
	if strings.ContainsRune(name, os.PathSeparator) {
		return "", &probeError{fmt.Sprintf("%s type %q holds a %q: runtimes look the type up as a file name in the CNI path", kind, name, string(os.PathSeparator)),
			"name the binary, not its path, and put its folder in the CNI path"}
	}
	for _, dir := range p.path {
		full := filepath.Join(dir, name)
		fi, err := os.Stat(full)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi.Mode().Perm()&0o111 == 0 {
			return "", &probeError{fmt.Sprintf("%s binary %s is not executable", kind, full), "chmod +x " + full}
		}
		return full, nil
	}
	return "", &probeError{fmt.Sprintf("no %s binary %q in %s", kind, name, joinPath(p.path)),
		"install it there, or name the folders that hold it with -cni-path (Nomad: the client's cni_path)"}
}

// versions returns the CNI versions the binary at bin says it supports,
// asked with cniVersion in its configuration as libcni asks.
func (p *prober) versions(kind, bin, cniVersion string) ([]string, *probeError) {
	key := [2]string{bin, cniVersion}
	if pr, ok := p.cache[key]; ok {
		return pr.versions, pr.err
	}
	vs, err := p.ask(kind, bin, cniVersion)
	p.cache[key] = probe{vs, err}
	return vs, err
}

// pluginRun is what one run of a plugin binary printed, and how it ended.
type pluginRun struct {
	stdout, stderr bytes.Buffer
	err            error
	timedOut       bool
}

// run runs the plugin binary bin with the CNI variables env (CNI_PATH
// added) and stdin, for at most the prober's timeout.
func (p *prober) run(bin string, env []string, stdin []byte) *pluginRun {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(env, "CNI_PATH="+joinPath(p.path))
	if path := p.env.getenv("PATH"); path != "" {
		cmd.Env = append(cmd.Env, "PATH="+path)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	r := &pluginRun{}
	cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
	// A grandchild holding the output open must not hold validate up.
	cmd.WaitDelay = time.Second
	r.err = cmd.Run()
	r.timedOut = ctx.Err() != nil
	return r
}

func (p *prober) ask(kind, bin, cniVersion string) ([]string, *probeError) {
	if cniVersion == "" {
		cniVersion = version.Current()
	}
	stdin := fmt.Sprintf(`{"cniVersion":%q}`, cniVersion)
	// The dummy values are libcni's: plugins built on older skel versions
	// insist on them even for VERSION.
	r := p.run(bin, []string{"CNI_COMMAND=VERSION", "CNI_NETNS=dummy", "CNI_IFNAME=dummy"}, []byte(stdin))
	stdout, stderr, err := &r.stdout, &r.stderr, r.err
	byHand := fmt.Sprintf("run it by hand: echo '%s' | CNI_COMMAND=VERSION %s", stdin, bin)
	if r.timedOut {
		return nil, &probeError{fmt.Sprintf("%s %s did not answer VERSION within %s", kind, bin, p.timeout),
			"a plugin that hangs stalls every CNI call of a Nomad client, which runs them one at a time: " + byHand}
	}
	if err != nil {
		var cniErr types.Error
		if json.Unmarshal(stdout.Bytes(), &cniErr) == nil && cniErr.Msg != "" {
			// libcni's reading of a plugin older than VERSION.
			if cniErr.Msg == "unknown CNI_COMMAND: VERSION" {
				return []string{"0.1.0"}, nil
			}
			return nil, &probeError{fmt.Sprintf("%s %s failed VERSION: %s", kind, bin, cniErr.Msg), byHand}
		}
		detail := firstLine(stderr.String())
		if detail != "" {
			detail = ": " + detail
		}
		return nil, &probeError{fmt.Sprintf("%s %s failed VERSION: %v%s", kind, bin, err, detail), byHand}
	}
	info, err := (&version.PluginDecoder{}).Decode(stdout.Bytes())
	if err != nil {
		return nil, &probeError{fmt.Sprintf("%s %s answered VERSION with no version list: %v", kind, bin, err), byHand}
	}
	return info.SupportedVersions(), nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// checkBinary reports a plugin binary that is missing, cannot answer
// VERSION, or does not speak the cniVersion it will be handed. whose names
// that version ("the chain's", "the conflist's").
func (v *validator) checkBinary(at conf.Position, field, kind, name, cniVersion, whose string) {
	bin, pe := v.probes.find(kind, name)
	var supported []string
	if pe == nil {
		supported, pe = v.probes.versions(kind, bin, cniVersion)
	}
	if pe != nil {
		v.add(newFinding(sevError, at, field, pe.hint, "%s", pe.msg))
		return
	}
	if cniVersion != "" && !slices.Contains(supported, cniVersion) {
		v.add(newFinding(sevError, at, field, "set cniVersion to a version it speaks, or install a newer "+name,
			"%s %s speaks CNI %s, not %s cniVersion %s", kind, bin, strings.Join(supported, ", "), whose, cniVersion))
	}
}
