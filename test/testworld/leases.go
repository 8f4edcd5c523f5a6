package testworld

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// leasesIn reads the leases host-local keeps in dir, its dataDir joined
// with the network's name (see Files.Leases).
func leasesIn(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range entries {
		if e.Name() == "lock" || strings.HasPrefix(e.Name(), "last_reserved_ip") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = strings.Join(strings.Fields(string(b)), "/")
	}
	return out, nil
}

// HeldBy returns the leases a container holds, on any interface.
func HeldBy(leases map[string]string, containerID string) map[string]string {
	out := map[string]string{}
	for ip, owner := range leases {
		if owner == containerID || strings.HasPrefix(owner, containerID+"/") {
			out[ip] = owner
		}
	}
	return out
}
