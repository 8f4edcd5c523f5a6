package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

// argSet is the CNI_ARGS key with which a job picks an attachment set: the
// file "<value>.yaml" in the folder of the configured attachment file.
const argSet = "NICMUX_ATTACHMENTS"

var setNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// SetFromArgs returns the attachment set named in CNI_ARGS ("K=V;K=V"), or
// "" when none is named.
func SetFromArgs(cniArgs string) string {
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == argSet {
			return v
		}
	}
	return ""
}

// ResolveSet returns the attachment file for set name: "<name>.yaml" in the
// folder of base. An empty name selects base itself. The name may not leave
// that folder, neither by its spelling nor through a symbolic link.
func ResolveSet(base, name string) (string, error) {
	if name == "" {
		return base, nil
	}
	path, realDir, err := setPath(base, name)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", noSet(base, name)
	}
	if err != nil {
		return "", setErr(types.ErrInvalidNetworkConfig, "attachment set %q: %v", name, err)
	}
	if filepath.Dir(real) != realDir {
		return "", outside(base, name, real)
	}
	return path, nil
}

// LoadSet reads the attachment file for set name (see ResolveSet) and parses
// it. The file is opened once and what was opened is checked, so a symbolic
// link swapped in between cannot lead outside the folder.
func LoadSet(base, name string, d Defaults) (*AttachmentFile, error) {
	if name == "" {
		return LoadAttachmentFile(base, d)
	}
	path, realDir, err := setPath(base, name)
	if err != nil {
		return nil, err
	}
	// What was opened is checked: a symbolic link swapped in since
	// setPath must not lead outside the folder.
	open := func() (*os.File, error) {
		f, err := openFile(path)
		if err != nil {
			return nil, err
		}
		opened, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
		if err != nil || filepath.Dir(opened) != realDir {
			f.Close()
			return nil, outside(base, name, opened)
		}
		return f, nil
	}
	att, err := load(path, open, d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, noSet(base, name)
	}
	return att, err
}

// setPath checks set name's spelling and returns its file and the real
// path of the folder it must be in.
func setPath(base, name string) (path, realDir string, err error) {
	if !setNameRE.MatchString(name) || strings.Contains(name, "..") {
		return "", "", setErr(types.ErrInvalidEnvironmentVariables,
			"%q is not a valid attachment set name (letters, digits, '.', '_' and '-', starting with a letter or digit)", name)
	}
	dir := filepath.Dir(base)
	realDir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		return "", "", setErr(types.ErrInvalidNetworkConfig, "attachment folder %s: %v", dir, err)
	}
	file := name
	if !strings.HasSuffix(file, ".yaml") {
		file += ".yaml"
	}
	return filepath.Join(dir, file), realDir, nil
}

// setErr is an error in the set CNI_ARGS names.
func setErr(code uint, format string, args ...any) error {
	return &Error{Code: code, File: "CNI_ARGS", Field: argSet, Msg: fmt.Sprintf(format, args...)}
}

func noSet(base, name string) error {
	dir := filepath.Dir(base)
	available := strings.Join(AvailableSets(dir), ", ")
	if available == "" {
		available = "(none)"
	}
	return setErr(types.ErrInvalidNetworkConfig, "no attachment set %q in %s (available: %s)", name, dir, available)
}

func outside(base, name, real string) error {
	return setErr(types.ErrInvalidEnvironmentVariables, "attachment set %q resolves to %s, outside %s", name, real, filepath.Dir(base))
}

// AvailableSets lists the attachment set names in dir, sorted; none when the
// folder holds no set or cannot be read. Files whose name no set could select
// (such as hidden ones) are left out.
func AvailableSets(dir string) []string {
	// Not filepath.Glob: dir may hold glob metacharacters.
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".yaml")
		if ok && setNameRE.MatchString(name) && !strings.Contains(name, "..") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}
