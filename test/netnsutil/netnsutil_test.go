package netnsutil

import (
	"os"
	"strings"
	"testing"
)

// TestLeftNetns goes on only in another namespace than the one PrivateEnv
// names: not with the variable set by hand, in the namespace it names or
// holding no namespace at all.
func TestLeftNetns(t *testing.T) {
	here, err := os.Readlink(selfNetns)
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{here, "1", ""} {
		if err := leftNetns(from); err == nil || !strings.Contains(err.Error(), PrivateEnv) {
			t.Errorf("%s=%q in %s: err = %v, want one naming the variable", PrivateEnv, from, here, err)
		}
	}
	if err := leftNetns("net:[1]"); err != nil {
		t.Errorf("from another netns: %v", err)
	}
}
