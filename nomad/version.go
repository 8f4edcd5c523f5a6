package nomad

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// version is a major.minor.patch version.
type version [3]int

// parseVersion reads "1.10.4" or "v1.10.4".
func parseVersion(s string) (version, error) {
	var v version
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("version %q is not major.minor.patch", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p != strconv.Itoa(n) {
			return v, fmt.Errorf("version %q is not major.minor.patch", s)
		}
		v[i] = n
	}
	return v, nil
}

// mustParse is parseVersion for the package's own constants.
func mustParse(s string) version {
	v, err := parseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// compare orders two versions like strings.Compare.
func compare(a, b version) int {
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}

// atLeastSemver reports whether version s is min or later; a version that
// does not parse is not.
func atLeastSemver(s, min string) bool {
	v, err := parseVersion(s)
	return err == nil && compare(v, mustParse(min)) >= 0
}

// FingerprintTimeout bounds each binary's bare run when a client
// fingerprints its cni_path: every file there is run once with no
// arguments and no CNI variable.
const FingerprintTimeout = 3 * time.Second

// fingerprintRE finds the version in the first line a plugin prints when
// run bare ("CNI bridge plugin v1.10.0").
var fingerprintRE = regexp.MustCompile(`v?(\d+)\.(\d+)\.(\d+)`)

// FingerprintVersion is the version a client reads from a binary's bare
// run (its combined output): the first major.minor.patch of the first
// line, or "" for none ("version unknown").
func FingerprintVersion(output []byte) string {
	first, _, _ := strings.Cut(string(output), "\n")
	m := fingerprintRE.FindStringSubmatch(first)
	if m == nil {
		return ""
	}
	return m[1] + "." + m[2] + "." + m[3]
}

// CheckGateBridge is the bridge version from which the gate opens: the
// constraint in the client's code (1.2.0 in the 1.9.5 upgrade notes).
const CheckGateBridge = "1.3.0"

// CheckGate reports whether CHECK may run at all: the bridge binary in
// cni_path reports CheckGateBridge or later. A missing or unparsable
// version ("") keeps it closed.
func CheckGate(bridgeVersion string) bool { return atLeastSemver(bridgeVersion, CheckGateBridge) }
