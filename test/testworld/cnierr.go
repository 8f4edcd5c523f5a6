package testworld

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// CNICode returns the code of the CNI error (*types.Error) in err's
// chain, or 0 if there is none.
func CNICode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// WantCNIError asserts that err is a CNI error with code whose message
// holds every one of parts. A nil err ends the test: what follows a
// failure that did not happen tests nothing.
func WantCNIError(t testing.TB, err error, code uint, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a CNI error (code %d) containing %q, got success", code, parts)
	}
	if got := CNICode(err); got != code {
		t.Errorf("error code = %d, want %d (error: %v)", got, code, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}
