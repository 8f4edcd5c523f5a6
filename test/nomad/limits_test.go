package nomad

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/version"
)

// Upstream limitations some legs run into. A scenario that cannot pass in
// a leg because of one asserts the leg's behaviour instead, and names the
// limitation; TestMain prints the limitations of the leg.

// macvlanDelNeedsMaster: before plugins v1.4.0, macvlan's DEL loads its
// whole configuration, which looks up the master link's MTU, so DEL fails
// with "Link not found" once the master is gone
// (containernetworking/plugins#953, fixed by #954 in v1.4.0).
func macvlanDelNeedsMaster() bool { return compareVersions(leg.Plugins, "v1.4.0") < 0 }

const macvlanDelLimit = "macvlan's DEL fails with \"Link not found\" when its master link is missing: before v1.4.0 it looks up the master's MTU before deleting anything (containernetworking/plugins#953, fixed by #954 in v1.4.0)"

// pluginsSpeak110: the reference plugins accept CNI 1.1.0 configurations
// from v1.6.0, the first release built on containernetworking/cni v1.2;
// before, their supported versions end at 1.0.0.
func pluginsSpeak110() bool { return compareVersions(leg.Plugins, "v1.6.0") >= 0 }

const plugins110Limit = "every plugin refuses CNI 1.1.0 configurations (\"incompatible CNI versions\"): before v1.6.0 the plugins are built on containernetworking/cni v1.1.2, whose supported versions end at 1.0.0"

// libcniKnows110: containernetworking/cni knows CNI 1.1.0 from v1.2.0;
// before, libcni rejects a plugin's 1.1.0 result with "unsupported CNI
// result version".
func libcniKnows110() bool { return compareVersions(moduleVersion(libcni.ConfFiles), "v1.2.0") >= 0 }

const libcni110Limit = "libcni knows CNI versions up to 1.0.0 (1.1.0 from v1.2.0 on): a setup whose plugin returns a 1.1.0 result fails with \"unsupported CNI result version\", after the plugin attached everything"

// legLimitations lists the limitations above that apply to this leg.
func legLimitations() []string {
	var out []string
	if macvlanDelNeedsMaster() {
		out = append(out, "reference plugins "+leg.Plugins+": "+macvlanDelLimit)
	}
	if !pluginsSpeak110() {
		out = append(out, "reference plugins "+leg.Plugins+": "+plugins110Limit)
	}
	if !libcniKnows110() {
		out = append(out, "containernetworking/cni "+moduleVersion(libcni.ConfFiles)+": "+libcni110Limit)
	}
	return out
}

// TestLimitationsAreReal checks the version rules above against the
// binaries and library the leg runs: the bridge plugin's VERSION answer
// lists 1.1.0 exactly when pluginsSpeak110, and the linked libcni's
// current spec version is 1.1.0 or later exactly when libcniKnows110.
func TestLimitationsAreReal(t *testing.T) {
	for _, l := range legLimitations() {
		t.Logf("upstream limitation, asserted where it applies: %s", l)
	}
	cfg := libcni.NewCNIConfig(filepath.SplitList(testCNIPath()), nil)
	info, err := cfg.GetVersionInfo(context.Background(), "bridge")
	failIf(t, err, "asking the bridge plugin for its VERSION")
	if got := slices.Contains(info.SupportedVersions(), "1.1.0"); got != pluginsSpeak110() {
		t.Errorf("bridge %s supports %v: 1.1.0 there is %v, the rule for plugins %s says %v",
			leg.Plugins, info.SupportedVersions(), got, leg.Plugins, pluginsSpeak110())
	}
	if got := compareVersions(version.Current(), "1.1.0") >= 0; got != libcniKnows110() {
		t.Errorf("containernetworking/cni %s's current spec version is %s: the rule says knows-1.1.0 = %v",
			moduleVersion(libcni.ConfFiles), version.Current(), libcniKnows110())
	}
}
