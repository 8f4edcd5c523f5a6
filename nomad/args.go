package nomad

import (
	"sort"
	"strings"
)

// IfName is the CNI_IFNAME of every call: the client's go-cni has the
// interface prefix "eth" and one network, the allocation's.
const IfName = "eth0"

// Identity is what an allocation's NOMAD_* CNI arguments say.
type Identity struct {
	Region, Namespace, Job, Group, AllocID string
}

// Args returns the CNI_ARGS the release gives ADD and CHECK (DEL gets
// none): IgnoreUnknown=true, the allocation's identity, and the job's
// network.cni.args verbatim (no ${...} interpolation), which come last and
// so win over the others in the client's map. The client sends them in a
// map's random order; Args sorts them by key.
func (r Release) Args(id Identity, job map[string]string) [][2]string {
	m := map[string]string{"IgnoreUnknown": "true"}
	if r.SendsIdentity() {
		m["NOMAD_REGION"] = id.Region
		m["NOMAD_NAMESPACE"] = id.Namespace
		m["NOMAD_JOB_ID"] = id.Job
		m["NOMAD_GROUP_NAME"] = id.Group
		m["NOMAD_ALLOC_ID"] = id.AllocID
	}
	if r.SendsJobArgs() {
		for k, v := range job {
			m[k] = v
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][2]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, [2]string{k, m[k]})
	}
	return out
}

// NetworkName is the conflist name a job's mode "cni/<name>" selects: the
// client lower-cases the mode, so a conflist whose name has capitals is
// never found.
func NetworkName(name string) string { return strings.ToLower(name) }

// TeardownIgnores reports whether the client's teardown counts a DEL
// error as success: go-cni drops every error that says "not found".
func TeardownIgnores(err error) bool {
	return err != nil && strings.Contains(err.Error(), "not found")
}
