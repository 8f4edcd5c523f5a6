// Package rehearse drives a CNI configuration as chosen Nomad client
// releases would (package nomad), in a scratch network namespace, on the
// real plugins of a CNI path: the fingerprint and its CHECK gate, ADD with
// the release's CNI_ARGS and retries, the result read as go-cni and the
// client read it, a client restart (CHECK, and on failure the netns rebuilt
// without DEL and set up again), STATUS where the release sends it, the
// teardown, then a check that nothing was left behind, and a cleanup of
// whatever was.
//
// It is a runtime, not a plugin: it runs any configuration through libcni,
// nicmux's or a hand-written chain, and the attachments it makes are real
// (bridges, iptables rules, addresses from the real pools) for as long as a
// rehearsal lasts.
package rehearse

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nicmux/nicmux/nomad"
)

// Options say what to rehearse, and how.
type Options struct {
	// File is the configuration's path; Data its contents.
	File string
	Data []byte
	// CNIPath are the folders of the plugin binaries: the client's
	// cni_path.
	CNIPath []string
	// Releases are the Nomad releases to rehearse, in order.
	Releases []nomad.Release
	// JobArgs are the job's network.cni.args.
	JobArgs map[string]string
	// Namespace and Job are the allocation's NOMAD_NAMESPACE and
	// NOMAD_JOB_ID (its group is named as the job).
	Namespace, Job string
	// Ports are the allocation's port mappings.
	Ports []PortMapping
	// Stop, once closed, ends the rehearsal at the next step: what was
	// made is cleaned up and the releases left are not rehearsed. Plugin
	// calls under way finish unless the context of Run is cancelled.
	Stop <-chan struct{}
	// Done, if set, is called with each release's outcome as it ends.
	Done func(Outcome)
}

// PortMapping is one of the allocation's port mappings, as go-cni hands
// them in runtimeConfig.portMappings: one per port and protocol.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Report is what a run found.
type Report struct {
	File        string      `json:"file"`
	Network     string      `json:"network"`
	CNIPath     []string    `json:"cniPath"`
	Fingerprint Fingerprint `json:"fingerprint"`
	Outcomes    []Outcome   `json:"releases"`
	// Interrupted is set when Stop ended the run.
	Interrupted bool `json:"interrupted,omitempty"`
}

// Pass reports whether every rehearsed release passed, and none was left
// out.
func (r *Report) Pass() bool {
	if r.Interrupted || len(r.Outcomes) == 0 {
		return false
	}
	for _, o := range r.Outcomes {
		if !o.Pass {
			return false
		}
	}
	return true
}

// Run rehearses every release of o in turn. Its error is for what stops it
// before any release is rehearsed (the configuration does not load); a
// release that fails is an Outcome.
func Run(ctx context.Context, o Options) (*Report, error) {
	list, err := loadList(o.File, o.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	if list.Name != nomad.NetworkName(list.Name) {
		return nil, fmt.Errorf("%s: the network name %q has capitals: Nomad lower-cases a job's mode cni/<name>, so no job finds it", o.File, list.Name)
	}
	rep := &Report{File: o.File, Network: list.Name, CNIPath: o.CNIPath, Fingerprint: TakeFingerprint(ctx, o.CNIPath)}
	cache, err := os.MkdirTemp("", "nicmux-rehearse-cache-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cache)
	for _, rel := range o.Releases {
		if stopped(o.Stop) {
			rep.Interrupted = true
			break
		}
		id, err := newAllocID()
		if err != nil {
			return rep, err
		}
		r := &rehearsal{opts: &o, fp: rep.Fingerprint, release: rel, id: id,
			netns: filepath.Join(NetNSDir, id), cacheDir: filepath.Join(cache, id)}
		out := r.run(ctx)
		rep.Outcomes = append(rep.Outcomes, out)
		if o.Done != nil {
			o.Done(out)
		}
		if out.Interrupted {
			rep.Interrupted = true
			break
		}
	}
	return rep, nil
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// errStopped is a step's error when Stop ended the rehearsal before it.
var errStopped = errors.New("interrupted")

// newAllocID makes a random UUID, as Nomad's allocation IDs are.
func newAllocID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
