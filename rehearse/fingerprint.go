package rehearse

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nicmux/nicmux/nomad"
)

// Fingerprint is what a Nomad client learns from its cni_path at start:
// each binary run bare reports a version, and the bridge binary's decides
// whether CHECK can run.
type Fingerprint struct {
	// Versions are the versions by file name ("" when the binary printed
	// none); a name in two folders is the first folder's, the one libcni
	// runs.
	Versions map[string]string `json:"versions"`
	// Bridge is the bridge binary's path, "" when cni_path has none.
	Bridge string `json:"bridge,omitempty"`
	// CheckGate is open when that bridge reports nomad.CheckGateBridge or
	// later.
	CheckGate bool `json:"checkGate"`
}

// TakeFingerprint runs every executable file of the folders with no
// arguments and an empty environment, each for at most
// nomad.FingerprintTimeout, as the client does.
func TakeFingerprint(ctx context.Context, dirs []string) Fingerprint {
	fp := Fingerprint{Versions: map[string]string{}}
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			name := e.Name()
			path := filepath.Join(dir, name)
			if _, seen := fp.Versions[name]; seen || strings.HasPrefix(name, ".") || !executable(path) {
				continue
			}
			fp.Versions[name] = BareVersion(ctx, path)
			if name == "bridge" {
				fp.Bridge = path
			}
		}
	}
	fp.CheckGate = nomad.CheckGate(fp.Versions["bridge"])
	return fp
}

// executable reports a regular executable file, through symbolic links
// (plugins are often linked into cni_path).
func executable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

// BareVersion runs bin as the fingerprint does and reads its version: ""
// when it prints none.
func BareVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, nomad.FingerprintTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{}
	out, _ := cmd.CombinedOutput() // the CNI skeleton prints it on stderr
	return nomad.FingerprintVersion(out)
}
