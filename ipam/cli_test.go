package ipam

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/release"
)

func TestCommandsExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"version"}, 0, "nicmux-ipam " + release.Get().Version + "\ncommit: ", ""},
		{[]string{"version", "-json"}, 0, `"cniVersions": [`, ""},
		{[]string{"help"}, 0, "release-node", ""},
		{[]string{"help", "show"}, 0, "Usage: nicmux-ipam show", ""},
		{[]string{"show", "-h"}, 0, "-endpoints URLS", ""},
		{[]string{"bogus"}, 2, "", `unknown command "bogus"`},
		{[]string{"show", "-bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{[]string{"show"}, 2, "", "give -endpoints URLS or -etcd-config FILE"},
		{[]string{"show", "-endpoints", "127.0.0.1:2379"}, 2, "", `flags.endpoints[0]: "127.0.0.1:2379" is not an etcd client URL`},
		{[]string{"release-node", "-endpoints", "http://127.0.0.1:1"}, 2, "", "give -node NAME"},
		{[]string{"check", "extra"}, 2, "", `takes no arguments, got "extra"`},
		{[]string{"serve", "-h"}, 0, "-socket PATH", ""},
		{[]string{"serve", "extra"}, 2, "", `takes no arguments, got "extra"`},
		{[]string{"serve", "-socket", "relative.sock"}, 1, "", `socket "relative.sock": not an absolute path`},
		{[]string{"serve", "-socket", "/tmp/ipamd.sock"}, 1, "", "socket folder /tmp: mode 0777 lets others in"},
	} {
		var out, errb bytes.Buffer
		getenv := func(string) string { return "" }
		code := Main(tc.args, getenv, &out, &errb, nil)
		if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, out.String(), errb.String())
		}
	}
}
