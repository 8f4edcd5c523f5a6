// Package release says which release of nicmux a binary is: its version (a
// git tag) and the commit it was built from. It imports nothing of the
// project, so that the plugin, the commands and other binaries of the
// project name themselves alike.
package release

import (
	"runtime/debug"
	"strings"
)

// stampedVersion and stampedCommit are set by the linker (the Makefile's
// -ldflags -X): git describe's tag (v0.3.0, or v0.3.0-2-gabc1234-dirty
// between tags) and the commit's hash (with -dirty), so that a build with
// -buildvcs=false, or from a tarball of the tree, still knows them. They
// are never assigned at run time.
var stampedVersion, stampedCommit string

// Dev is the version of a binary that knows no release: built outside a
// git checkout, or from one without tags, without the Makefile's stamp. It
// is a semantic version on purpose: Nomad's fingerprint takes the first
// word of a bare run's output that parses as one, and would otherwise take
// a CNI protocol version from the line below it.
const Dev = "v0.0.0-dev"

// unknownCommit is the commit of a binary that knows none.
const unknownCommit = "unknown"

// Info is what a binary knows of its own release.
type Info struct {
	// Version is the release tag, git describe's output between tags, the
	// module version `go install ...@v0.3.0` records, or Dev.
	Version string
	// Commit is the full commit hash, with "-dirty" when the tree had
	// changes, or "unknown".
	Commit string
}

// Get returns this binary's release. The build information is read only
// when the linker stamped no version or no commit: the Makefile's build,
// whose bare run Nomad times, reads two strings.
func Get() Info {
	if isTag(stampedVersion) && stampedCommit != "" {
		return Info{Version: stampedVersion, Commit: stampedCommit}
	}
	bi, _ := debug.ReadBuildInfo() // nil when the binary has none
	return resolve(stampedVersion, stampedCommit, bi)
}

// resolve picks each of the version and the commit from the first source
// that has it: the linker's stamp, then the build information go records
// (the module version `go install` builds, the VCS revision `go build`
// reads from a checkout), then Dev and "unknown".
func resolve(version, commit string, bi *debug.BuildInfo) Info {
	info := Info{Version: Dev, Commit: unknownCommit}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		}
		if rev := setting(bi, "vcs.revision"); rev != "" {
			info.Commit = rev
			if setting(bi, "vcs.modified") == "true" {
				info.Commit += "-dirty"
			}
		}
	}
	// git describe --always names a commit when no tag is reachable: that
	// is no version.
	if isTag(version) {
		info.Version = version
	}
	if commit != "" {
		info.Commit = commit
	}
	return info
}

func setting(bi *debug.BuildInfo, key string) string {
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// isTag reports whether v is a release tag or git describe's output from
// one: "v" and a digit.
func isTag(v string) bool {
	return len(v) > 1 && v[0] == 'v' && v[1] >= '0' && v[1] <= '9'
}

// About is the line a CNI plugin of the project prints when it is run bare,
// for name ("nicmux"): "CNI nicmux plugin v0.3.0 (commit 9a7f094c1e2b)".
// Nomad fingerprints every binary in its cni_path this way. The commit is
// in parentheses so that a hash of digits only never reads as a version.
func About(name string) string {
	return about(name, Get())
}

func about(name string, info Info) string {
	s := "CNI " + name + " plugin " + info.Version
	if info.Commit != unknownCommit {
		s += " (commit " + short(info.Commit) + ")"
	}
	return s
}

// short is a commit hash cut to 12 digits, keeping a "-dirty" suffix.
func short(commit string) string {
	hash, dirty, _ := strings.Cut(commit, "-")
	if len(hash) > 12 {
		hash = hash[:12]
	}
	if dirty != "" {
		return hash + "-" + dirty
	}
	return hash
}
