package conf

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

func TestSetFromArgs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"IgnoreUnknown=true;NICMUX_ATTACHMENTS=storage;X=y", "storage"},
		{"NICMUX_ATTACHMENTS=gpu", "gpu"},
		{"K8S_POD_NAME=web;NICMUX_ATTACHMENTS=gpu.v2", "gpu.v2"},
		{"IgnoreUnknown=true;X=y", ""},
		{"NICMUX_ATTACHMENTS=", ""},
		{"NICMUX_ATTACHMENTS", ""},
		{"nicmux_attachments=storage", ""},
		{"XNICMUX_ATTACHMENTS=storage", ""},
		{"NICMUX_ATTACHMENTS=a=b", "a=b"},
		{";;NICMUX_ATTACHMENTS=storage;", "storage"},
	}
	for _, tt := range tests {
		if got := SetFromArgs(tt.in); got != tt.want {
			t.Errorf("SetFromArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if argSet != "NICMUX_ATTACHMENTS" {
		t.Errorf("argSet = %q", argSet)
	}
}

// setsDir makes a folder of attachment sets and returns the base file.
func setsDir(t *testing.T) (dir, base string) {
	t.Helper()
	dir = t.TempDir()
	for _, f := range []string{"default.yaml", "storage.yaml", "gpu.v2.yaml", "under_score-x.yaml", "notes.txt", "storage.yaml.bak", ".hidden.yaml", "-dash.yaml"} {
		if err := writeSettled(filepath.Join(dir, f), []byte("interfaces: []\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, filepath.Join(dir, "default.yaml")
}

func TestResolveSet(t *testing.T) {
	dir, base := setsDir(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.yaml")
	if err := writeSettled(secret, []byte("interfaces: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"evil.yaml":     secret,                                                     // absolute, outside
		"sneaky.yaml":   filepath.Join("..", filepath.Base(outside), "secret.yaml"), // relative, outside
		"dangling.yaml": filepath.Join(outside, "missing.yaml"),                     // outside and missing
		"alias.yaml":    "storage.yaml",                                             // relative, inside
		"absalias.yaml": filepath.Join(dir, "gpu.v2.yaml"),                          // absolute, inside
		"chain.yaml":    "alias.yaml",                                               // a link to a link, inside
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}

	okCases := []struct{ name, want string }{
		{"", base},
		{"storage", filepath.Join(dir, "storage.yaml")},
		{"storage.yaml", filepath.Join(dir, "storage.yaml")},
		{"gpu.v2", filepath.Join(dir, "gpu.v2.yaml")},
		{"under_score-x", filepath.Join(dir, "under_score-x.yaml")},
		{"default", base},
		{"alias", filepath.Join(dir, "alias.yaml")},
		{"absalias", filepath.Join(dir, "absalias.yaml")},
		{"chain", filepath.Join(dir, "chain.yaml")},
	}
	for _, tt := range okCases {
		t.Run("ok/"+tt.name, func(t *testing.T) {
			got, err := ResolveSet(base, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ResolveSet(%q) = %q, want %q", tt.name, got, tt.want)
			}
		})
	}

	errCases := []struct {
		name string
		code uint
		msg  string
	}{
		{"../x", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"..", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"x..y", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"a/b", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"/etc/passwd", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{".hidden", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"-x", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"_x", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"a b", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"a=b", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"storage\n", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"stöhrage", types.ErrInvalidEnvironmentVariables, "is not a valid attachment set name"},
		{"evil", types.ErrInvalidEnvironmentVariables, "outside"},
		{"sneaky", types.ErrInvalidEnvironmentVariables, "outside"},
		{"dangling", types.ErrInvalidNetworkConfig, `no attachment set "dangling"`},
		{"nope", types.ErrInvalidNetworkConfig,
			`no attachment set "nope" in ` + dir + " (available: absalias, alias, chain, dangling, default, evil, gpu.v2, sneaky, storage, under_score-x)"},
		{"storage.yaml.bak", types.ErrInvalidNetworkConfig, `no attachment set "storage.yaml.bak"`},
		{"notes.txt", types.ErrInvalidNetworkConfig, `no attachment set "notes.txt"`},
	}
	for _, tt := range errCases {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			got, err := ResolveSet(base, tt.name)
			if err == nil {
				t.Fatalf("ResolveSet(%q) = %q, want an error", tt.name, got)
			}
			if got != "" {
				t.Errorf("got path %q along with the error", got)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *conf.Error", err)
			}
			if ce.Code != tt.code || ce.File != "CNI_ARGS" || ce.Field != argSet {
				t.Errorf("code %d, file %q, field %q; want %d, CNI_ARGS, %s", ce.Code, ce.File, ce.Field, tt.code, argSet)
			}
			if !strings.HasPrefix(err.Error(), "CNI_ARGS: NICMUX_ATTACHMENTS: ") || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not contain %q", err, tt.msg)
			}
		})
	}
}

// TestResolveSetLinkedFolder: the attachment folder itself may be a link (as
// /etc/nicmux often is); sets inside it are still inside.
func TestResolveSetLinkedFolder(t *testing.T) {
	real, _ := setsDir(t)
	link := filepath.Join(t.TempDir(), "nicmux")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	got, err := ResolveSet(filepath.Join(link, "default.yaml"), "storage")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(link, "storage.yaml"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestResolveSetMissingFolder(t *testing.T) {
	base := filepath.Join(t.TempDir(), "gone", "default.yaml")
	_, err := ResolveSet(base, "storage")
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "attachment folder") {
		t.Errorf("err = %v, want code 7 naming the attachment folder", err)
	}
	// With no set named, the base is returned unchecked: loading it reports.
	if got, err := ResolveSet(base, ""); err != nil || got != base {
		t.Errorf("ResolveSet(base, \"\") = %q, %v", got, err)
	}
}

// TestResolveSetNoSets: with no set in the folder, the message says so in
// words, while AvailableSets lists nothing.
func TestResolveSetNoSets(t *testing.T) {
	dir := t.TempDir()
	_, err := ResolveSet(filepath.Join(dir, "default.conf"), "storage")
	want := `CNI_ARGS: NICMUX_ATTACHMENTS: no attachment set "storage" in ` + dir + " (available: (none))"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestAvailableSets(t *testing.T) {
	if got := AvailableSets(t.TempDir()); len(got) != 0 {
		t.Errorf("empty folder: %v", got)
	}
	// Hidden files, names no set could select and other files are not
	// offered.
	dir, _ := setsDir(t)
	want := []string{"default", "gpu.v2", "storage", "under_score-x"}
	if got := AvailableSets(dir); !reflect.DeepEqual(got, want) {
		t.Errorf("AvailableSets = %v, want %v", got, want)
	}

	// A folder whose name holds glob metacharacters is listed all the same.
	odd := filepath.Join(t.TempDir(), "sets[1]*?")
	if err := os.Mkdir(odd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeSettled(filepath.Join(odd, "web.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := AvailableSets(odd); !reflect.DeepEqual(got, []string{"web"}) {
		t.Errorf("AvailableSets(%q) = %v, want [web]", odd, got)
	}
}

func TestLoadSetChecksWhatItOpened(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	body := "interfaces:\n  - plugins: [{type: bridge}]\n"
	for _, p := range []string{filepath.Join(dir, "multi.yaml"), filepath.Join(outside, "evil.yaml"), filepath.Join(dir, "real.yaml")} {
		if err := writeSettled(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(outside, "evil.yaml"), filepath.Join(dir, "evil.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.yaml", filepath.Join(dir, "alias.yaml")); err != nil {
		t.Fatal(err)
	}
	d := Defaults{IfName: "eth0", ListName: "l", CNIVersion: "1.0.0"}
	base := filepath.Join(dir, "multi.yaml")
	if _, err := LoadSet(base, "alias", d); err != nil {
		t.Errorf("a set linked inside the folder: %v", err)
	}
	_, err := LoadSet(base, "evil", d)
	var ce *Error
	if !errors.As(err, &ce) || ce.CNICode() != types.ErrInvalidEnvironmentVariables || !strings.Contains(err.Error(), "outside") {
		t.Errorf("a set linked outside the folder: %v", err)
	}
}

func TestLoadAttachmentsRefusesWhatIsNotAFile(t *testing.T) {
	d := Defaults{IfName: "eth0", ListName: "l", CNIVersion: "1.0.0"}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := writeSettled(big, append([]byte("interfaces: []\n#"), make([]byte, maxFileSize)...), 0o600); err != nil {
		t.Fatal(err)
	}
	// A FIFO must not block the verb waiting for a writer.
	fifo := filepath.Join(t.TempDir(), "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/dev/zero": "not a regular file", fifo: "not a regular file", big: "larger than 1048576 bytes"} {
		_, err := LoadAttachmentFile(path, d)
		var ce *Error
		if !errors.As(err, &ce) || ce.CNICode() != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadAttachmentFile(%s) = %v, want code 7 and %q", path, err, want)
		}
		// The same through a conflist: reference.
		_, err = parseAttachmentFile("/a.yaml", []byte("interfaces:\n  - conflist: "+path+"\n"), d)
		if !errors.As(err, &ce) || ce.Field != "interfaces[0].conflist" || !strings.Contains(err.Error(), want) {
			t.Errorf("conflist: %s = %v, want the field and %q", path, err, want)
		}
	}
}

func TestLoadAttachmentsWarnsWhenOthersCanWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "multi.yaml")
	if err := writeSettled(path, []byte("interfaces:\n  - plugins: [{type: bridge}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	att, err := LoadAttachmentFile(path, Defaults{IfName: "eth0", ListName: "l", CNIVersion: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(att.Warnings) != 1 || !strings.Contains(att.Warnings[0], "writable by group or others (mode 0666)") {
		t.Errorf("warnings = %q", att.Warnings)
	}
}

// writeSettled is os.WriteFile for a configuration file, dated an hour
// back as a file deployed before the verb is: nicmux reads one written
// less than 100 ms ago again once it is older (see readSettled).
func writeSettled(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return err
	}
	past := time.Now().Add(-time.Hour)
	return os.Chtimes(path, past, past)
}
