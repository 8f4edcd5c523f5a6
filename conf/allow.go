package conf

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"gopkg.in/yaml.v3"
)

// allowRule is an attachment set's `allow` rule: which Nomad jobs may select
// the set. Each list holds path.Match patterns; a nil list matches
// anything, and when both are given both must match.
//
// It reads NOMAD_NAMESPACE and NOMAD_JOB_ID from CNI_ARGS, which Nomad
// sends from 1.9.4 on; nicmux cannot tell who wrote them (see
// docs/nomad.md, "Who may use which set").
type allowRule struct {
	Namespaces []string
	Jobs       []string
}

// allow parses a set's top-level `allow` mapping.
func (p *parser) allow(n *yaml.Node) (*allowRule, error) {
	keys, vals, err := p.mapping(n, "allow", "namespaces", "jobs")
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, p.errorf(n, "allow", "give namespaces, jobs or both (leave allow out to let every job use the set)")
	}
	a := &allowRule{}
	for key, dst := range map[string]*[]string{"namespaces": &a.Namespaces, "jobs": &a.Jobs} {
		v, ok := vals[key]
		if !ok {
			continue
		}
		field := join("allow", key)
		if v.Kind != yaml.SequenceNode {
			return nil, p.errorf(v, field, "must be a list of patterns, not %s", kindName(v))
		}
		if len(v.Content) == 0 {
			return nil, p.errorf(v, field, "the list is empty, which no job matches: leave the key out to match any")
		}
		for i, item := range v.Content {
			item = resolve(item)
			if item.Kind != yaml.ScalarNode || item.Tag == "!!null" || item.Value == "" {
				return nil, p.errorf(item, fmt.Sprintf("%s[%d]", field, i), "must be a non-empty pattern, not %s", kindName(item))
			}
			if _, err := path.Match(item.Value, ""); err != nil {
				return nil, p.errorf(item, fmt.Sprintf("%s[%d]", field, i), "%q is not a valid pattern (Go's path.Match: *, ?, [a-z], \\ escapes)", item.Value)
			}
			*dst = append(*dst, item.Value)
		}
	}
	return a, nil
}

// setName is the name a job selects the set by: its file name without
// ".yaml".
func (a *AttachmentFile) setName() string {
	return strings.TrimSuffix(filepath.Base(a.File), ".yaml")
}

// Permit checks the set's allow rule against the job CNI_ARGS name. A
// rule that needs NOMAD_NAMESPACE or NOMAD_JOB_ID refuses an ADD that
// lacks it. The error (code 7) names the namespace, the job and the set.
func (a *AttachmentFile) Permit(job *JobArgs) error {
	if a.allowed == nil {
		return nil
	}
	refuse := func(key, format string, args ...any) error {
		return &Error{Code: types.ErrInvalidNetworkConfig, File: "CNI_ARGS", Field: key,
			Msg: fmt.Sprintf(format, args...) + fmt.Sprintf(" (attachment set %q, %s)", a.setName(), a.File)}
	}
	if pats := a.allowed.Namespaces; pats != nil {
		switch {
		case job.Namespace == "":
			return refuse(argNamespace, "missing: the set allows namespaces %s only, and nicmux cannot tell the job's (Nomad sends NOMAD_NAMESPACE from 1.9.4)", list(pats))
		case !matchAny(pats, job.Namespace):
			return refuse(argNamespace, "namespace %q may not use the set: it allows namespaces %s", job.Namespace, list(pats))
		}
	}
	if pats := a.allowed.Jobs; pats != nil {
		switch {
		case job.JobID == "":
			return refuse(argJobID, "missing: the set allows jobs %s only, and nicmux cannot tell the job (Nomad sends NOMAD_JOB_ID from 1.9.4)", list(pats))
		case !matchAny(pats, job.JobID):
			in := ""
			if job.Namespace != "" {
				in = fmt.Sprintf(" in namespace %q", job.Namespace)
			}
			return refuse(argJobID, "job %q%s may not use the set: it allows jobs %s", job.JobID, in, list(pats))
		}
	}
	return nil
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

func list(patterns []string) string { return strings.Join(patterns, ", ") }
