package release

import (
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

// semver is a semantic version with an optional "v", as semver.org's
// grammar has it, loosened as Nomad's parser is (a pre-release part may
// start with a digit and carry leading zeros).
var semver = regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// fingerprint is the version Nomad reads off a bare run: the first word of
// its output that is a semantic version.
func fingerprint(out string) string {
	for _, w := range strings.Fields(out) {
		if semver.MatchString(w) {
			return w
		}
	}
	return ""
}

func TestResolve(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "9a7f094c1e2b3d4f5a6b7c8d9e0f1a2b3c4d5e6f"
	cases := []struct {
		name            string
		version, commit string // stamped
		bi              *debug.BuildInfo
		want            Info
	}{
		{"stamped, -buildvcs=false", "v0.3.0", rev, &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			Info{"v0.3.0", rev}},
		{"stamped between tags, dirty", "v0.3.0-2-g9a7f094-dirty", rev + "-dirty", nil,
			Info{"v0.3.0-2-g9a7f094-dirty", rev + "-dirty"}},
		{"stamp wins over build info", "v0.3.0", rev, &debug.BuildInfo{Main: debug.Module{Version: "v0.2.0"}, Settings: vcs("abc", "true")},
			Info{"v0.3.0", rev}},
		{"no tag reachable: describe gave a hash", "9a7f094", rev, &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			Info{Dev, rev}},
		{"go install @v0.3.0", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}},
			Info{"v0.3.0", "unknown"}},
		{"go build in a checkout", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.1-0.20261207120000-9a7f094c1e2b+dirty"}, Settings: vcs(rev, "true")},
			Info{"v0.3.1-0.20261207120000-9a7f094c1e2b+dirty", rev + "-dirty"}},
		{"go build, clean checkout", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")},
			Info{Dev, rev}},
		{"nothing known", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			Info{Dev, "unknown"}},
		{"no build info", "", "", nil, Info{Dev, "unknown"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolve(tt.version, tt.commit, tt.bi); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAbout(t *testing.T) {
	const rev = "9a7f094c1e2b3d4f5a6b7c8d9e0f1a2b3c4d5e6f"
	cases := []struct {
		info Info
		want string
	}{
		{Info{"v0.3.0", rev}, "CNI nicmux plugin v0.3.0 (commit 9a7f094c1e2b)"},
		{Info{"v0.3.0-2-g9a7f094-dirty", rev + "-dirty"}, "CNI nicmux plugin v0.3.0-2-g9a7f094-dirty (commit 9a7f094c1e2b-dirty)"},
		{Info{Dev, "1234567"}, "CNI nicmux plugin v0.0.0-dev (commit 1234567)"},
		{Info{"v0.3.0", "unknown"}, "CNI nicmux plugin v0.3.0"},
	}
	for _, tt := range cases {
		got := about("nicmux", tt.info)
		if got != tt.want {
			t.Errorf("about(%+v) = %q, want %q", tt.info, got, tt.want)
		}
		// What skel prints below it must not be taken for nicmux's version.
		bare := got + "\nCNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n"
		if fp := fingerprint(bare); fp != tt.info.Version {
			t.Errorf("Nomad would fingerprint %q as %q, want %q", bare, fp, tt.info.Version)
		}
	}
}
