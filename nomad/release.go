// Package nomad says, as data and small pure functions, how each Nomad
// client release drives CNI (docs/nomad.md): the go-cni and
// containernetworking/cni versions it links, the CNI_ARGS it sends, its
// retries, when it sends STATUS and runs CHECK, what it does when CHECK
// fails, and how it reads the result and picks the allocation's address.
// It does no I/O: the rehearse package acts on it, and the go-cni suite
// (test/nomad) holds its verdicts against the real go-cni releases.
//
// Only the open-source releases are modelled. Nomad Enterprise 1.8.5 and
// later 1.8.x, and 1.9.8 and later 1.9.x, are not public; Enterprise
// 1.8.10 and later run CHECK on restore as the open-source 1.9.5 does
// (Nomad issue 25510): rehearse 1.9.5 to see what they do.
package nomad

import (
	"errors"
	"fmt"
	"time"
)

// Release is one Nomad client release, or a release that behaves as one
// of Releases (then As names that one).
type Release struct {
	// Version is the release, e.g. "1.9.5".
	Version string `json:"version"`
	// As is the release of Releases whose behaviour Version has, when it
	// is not Version itself.
	As string `json:"as,omitempty"`
	// GoCNI and CNI are the versions of github.com/containerd/go-cni and
	// github.com/containernetworking/cni the release links.
	GoCNI string `json:"goCNI"`
	CNI   string `json:"cni"`
	// Change is what this release does differently from the one before.
	Change string `json:"change"`
}

// releases are the open-source releases, oldest first: each one where the
// linked go-cni / containernetworking/cni pair changes (docs/nomad.md's
// table of tested versions) or where Nomad's own handling of CNI does.
var releases = []Release{
	{Version: "1.8.0", GoCNI: "v1.1.9", CNI: "v1.1.2",
		Change: "CNI_ARGS IgnoreUnknown only; no CHECK, no STATUS; the address is the first IP of the first sandboxed interface; CNI results up to 1.0.0"},
	{Version: "1.8.2", GoCNI: "v1.1.9", CNI: "v1.1.2",
		Change: "the job's network.cni.args reach CNI_ARGS, verbatim"},
	{Version: "1.8.3", GoCNI: "v1.1.9", CNI: "v1.2.3",
		Change: "containernetworking/cni v1.2.3: 1.1.0 results are read"},
	{Version: "1.9.0", GoCNI: "v1.1.9", CNI: "v1.2.3",
		Change: "the address is the first IPv4 of the first sandboxed interface that has one"},
	{Version: "1.9.4", GoCNI: "v1.1.9", CNI: "v1.2.3",
		Change: "CNI_ARGS carry NOMAD_REGION, NOMAD_NAMESPACE, NOMAD_JOB_ID, NOMAD_GROUP_NAME, NOMAD_ALLOC_ID"},
	{Version: "1.9.5", GoCNI: "v1.1.11", CNI: "v1.2.3",
		Change: "CHECK on restore when bridge >= 1.3.0, netns rebuilt without DEL on failure; STATUS before every setup and teardown of a 1.1.0 list (go-cni v1.1.11)"},
	{Version: "1.9.6", GoCNI: "v1.1.12", CNI: "v1.2.3",
		Change: "go-cni v1.1.12"},
	{Version: "1.10.1", GoCNI: "v1.1.12", CNI: "v1.3.0",
		Change: "containernetworking/cni v1.3.0"},
	{Version: "1.10.4", GoCNI: "v1.1.12", CNI: "v1.3.0",
		Change: "AddressIPv6: the first IPv6 of the interface the address comes from"},
	{Version: "1.10.5", GoCNI: "v1.1.13", CNI: "v1.3.0",
		Change: "go-cni v1.1.13"},
	{Version: "1.11.0", GoCNI: "v1.1.13", CNI: "v1.3.0",
		Change: "an interface with IPv6 only is accepted: its IPv6 becomes the address"},
}

// Releases returns the modelled releases, oldest first, one per distinct
// behaviour.
func Releases() []Release { return append([]Release(nil), releases...) }

// Errors of Lookup.
var (
	ErrEnterprise = errors.New("an Enterprise-only release, which is not public")
	ErrUnknown    = errors.New("not a release nicmux models")
)

// Lookup returns the release version, e.g. "1.10.0": one of Releases, or
// a later public release with the behaviour of the newest one before it.
// Releases before 1.8.0 and Enterprise-only ones are errors.
func Lookup(version string) (Release, error) {
	v, err := parseVersion(version)
	if err != nil {
		return Release{}, fmt.Errorf("Nomad %q: %w (give a version such as 1.9.5)", version, ErrUnknown)
	}
	if enterpriseOnly(v) {
		return Release{}, fmt.Errorf("Nomad %s: %w; nicmux models the open-source releases (Enterprise 1.8.10 and later run CHECK as 1.9.5 does: rehearse 1.9.5)", version, ErrEnterprise)
	}
	var found *Release
	for i := range releases {
		if compare(v, mustParse(releases[i].Version)) >= 0 {
			found = &releases[i]
		}
	}
	if found == nil {
		return Release{}, fmt.Errorf("Nomad %s: %w (the oldest modelled is %s)", version, ErrUnknown, releases[0].Version)
	}
	r := *found
	if canonical := v.String(); canonical != r.Version {
		r.As, r.Version = r.Version, canonical
	}
	return r, nil
}

// enterpriseOnly reports the releases only Nomad Enterprise shipped.
func enterpriseOnly(v version) bool {
	return (v[0] == 1 && v[1] == 8 && v[2] >= 5) || (v[0] == 1 && v[1] == 9 && v[2] >= 8)
}

// model is the release of Releases whose behaviour r has.
func (r Release) model() version {
	if r.As != "" {
		return mustParse(r.As)
	}
	return mustParse(r.Version)
}

// atLeast reports whether r behaves as release min or a later one.
func (r Release) atLeast(min string) bool { return compare(r.model(), mustParse(min)) >= 0 }

// Retries of a failed setup: Nomad tries ADD up to SetupTries times,
// SetupInterval apart, with no DEL between the tries.
const (
	SetupTries    = 3
	SetupInterval = time.Second
)

// SendsJobArgs reports whether the job's network.cni.args reach CNI_ARGS.
func (r Release) SendsJobArgs() bool { return r.atLeast("1.8.2") }

// SendsIdentity reports whether CNI_ARGS carry the allocation's NOMAD_*
// identity.
func (r Release) SendsIdentity() bool { return r.atLeast("1.9.4") }

// RunsCheck reports whether the release runs CHECK on restore (a client
// restart that finds the allocation's netns), given the CHECK gate. When
// CHECK fails, such a release destroys the netns WITHOUT DEL, makes it
// again at the same path and sets the allocation up again (with its
// retries) under the same container ID, once; a second failure fails the
// allocation.
func (r Release) RunsCheck() bool { return r.atLeast("1.9.5") }

// CallsStatus reports whether go-cni's Status, which Nomad calls before
// every setup and every teardown, asks the plugins: from go-cni v1.1.11,
// and then (libcni's own rule) only for a list of cniVersion 1.1.0 or
// later. A STATUS error fails the setup, and skips the teardown's DEL.
func (r Release) CallsStatus(listVersion string) bool {
	return atLeastSemver(r.GoCNI, "1.1.11") && atLeastSemver(listVersion, "1.1.0")
}

// ReadsResultVersion reports whether the release's libcni understands a
// plugin result of CNI version v: containernetworking/cni before v1.2.0
// knows versions up to 1.0.0, so a 1.1.0 list fails every ADD after its
// first plugin ran, on that plugin's result.
func (r Release) ReadsResultVersion(v string) bool {
	if atLeastSemver(r.CNI, "1.2.0") {
		return true
	}
	return !atLeastSemver(v, "1.1.0")
}

// UnreadableResult is libcni's error for a result of version v it does not
// know, as ExecPluginWithResult returns it.
func UnreadableResult(v string) error {
	return fmt.Errorf("unsupported CNI result version %q", v)
}
