package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/utils"
)

// FuzzParseAttachmentFile feeds arbitrary bytes to parseAttachmentFile: it must
// not panic, every error must be a *conf.Error with a code, and every
// success must be a usable, self-consistent set of chains.
func FuzzParseAttachmentFile(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(sixteenInterfaces()))

	// Relative conflists resolve against testdata/valid, so the seeds that
	// use one parse there too.
	path := filepath.Join("testdata", "valid", "fuzz.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		// A conflist path may name any file; keep away from device and
		// kernel files, where reading may never end.
		for _, p := range []string{"/dev", "/proc", "/sys"} {
			if bytes.Contains(data, []byte(p)) {
				return
			}
		}
		a, err := parseAttachmentFile(path, data, testDefaults)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *conf.Error", err, err)
			}
			if ce.Code == 0 || ce.CNICode() == 0 {
				t.Fatalf("error %q has no code", err)
			}
			if ce.File != path || err.Error() == "" {
				t.Fatalf("error %q does not name %s", err, path)
			}
			if a != nil {
				t.Fatalf("attachments returned along with error %q", err)
			}
			return
		}
		if len(a.Interfaces) == 0 {
			t.Fatal("no error and no interfaces")
		}
		seen := map[string]bool{}
		for _, c := range a.Interfaces {
			if seen[c.IfName] {
				t.Fatalf("duplicate interface %q", c.IfName)
			}
			seen[c.IfName] = true
			if utils.ValidateInterfaceName(c.IfName) != nil {
				t.Fatalf("invalid interface name %q", c.IfName)
			}
			if utils.ValidateNetworkName(c.Network) != nil {
				t.Fatalf("invalid network name %q", c.Network)
			}
			if !IsSupportedVersion(c.CNIVersion) {
				t.Fatalf("unsupported version %q", c.CNIVersion)
			}
			if len(c.Plugins) == 0 {
				t.Fatalf("%s: empty chain", c.IfName)
			}
			for _, p := range c.Plugins {
				var obj map[string]any
				if err := json.Unmarshal(p.Bytes, &obj); err != nil {
					t.Fatalf("%s: plugin bytes %q: %v", c.IfName, p.Bytes, err)
				}
				if p.Type == "" || obj["type"] != p.Type {
					t.Fatalf("%s: plugin type %q, bytes %s", c.IfName, p.Type, p.Bytes)
				}
			}
			// What ADD stores, DEL and CHECK must be able to rebuild.
			cl, err := c.ConfList()
			if err != nil {
				t.Fatalf("%s: ConfList: %v", c.IfName, err)
			}
			back, err := ChainFromConfList(c.IfName, cl)
			if err != nil {
				t.Fatalf("%s: ChainFromConfList(%s): %v", c.IfName, cl, err)
			}
			again, err := back.ConfList()
			if err != nil || !bytes.Equal(again, cl) {
				t.Fatalf("%s: ConfList not stable: %s then %s (%v)", c.IfName, cl, again, err)
			}
		}
	})
}
