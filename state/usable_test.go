package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsable: what a verb that writes needs of the state folder, checked
// without making anything: a folder that is there or can be made is
// usable; a file where a folder must be, a folder others can write, and
// (as root) one of another user are not, with Open's words.
func TestUsable(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	made := filepath.Join(root, "made")
	openStore(t, made).Close()
	open := filepath.Join(root, "open")
	if err := os.Mkdir(open, 0o777); err != nil || os.Chmod(open, 0o777) != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, path, want string }{
		{"a folder Open made", made, ""},
		{"a folder to make, two levels down", filepath.Join(root, "new", "state"), ""},
		{"a file", file, "stateDir " + file + ": " + file + " is a file, not a folder"},
		{"under a file", filepath.Join(file, "state"), "stateDir " + filepath.Join(file, "state") + ": " + file + " is a file, not a folder"},
		{"writable by others", open, "stateDir: " + open + " is writable by group or others (mode 0777): make it 0700"},
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(root, "other")
		if err := os.Mkdir(other, 0o700); err != nil || os.Chown(other, 4321, 4321) != nil {
			t.Fatal(err)
		}
		inner := filepath.Join(root, "inner")
		openStore(t, inner).Close()
		if err := os.Chown(filepath.Join(inner, "locks"), 4321, 4321); err != nil {
			t.Fatal(err)
		}
		cases = append(cases,
			struct{ name, path, want string }{"another user's", other, "stateDir: " + other + " is owned by uid 4321, not by nicmux's user (uid 0)"},
			struct{ name, path, want string }{"another user's locks folder", inner, "stateDir: " + filepath.Join(inner, "locks") + " is owned by uid 4321"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, root)
			err := Usable(c.path)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Usable: %v", err)
			case c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want)):
				t.Errorf("Usable = %v, want %q", err, c.want)
			}
			assertUnchanged(t, root, before, "Usable")
		})
	}
}
