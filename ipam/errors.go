package ipam

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
)

// ErrPoolFull is the CNI code of an ADD refused because a range set of the
// pool has no free address (the spec's table has no code for it).
const ErrPoolFull uint = 110

// ErrUnavailable is what a Store's error wraps when the store did not
// answer in time or cannot be reached: the operation may or may not have
// taken effect.
var ErrUnavailable = errors.New("unavailable")

// ErrNoLease is what a Store's error wraps when a transaction names a
// lease the store does not know (it ended).
var ErrNoLease = errors.New("the lease ended")

// ErrUnreadable marks a record that cannot be read, reported after what
// could be done without it.
var ErrUnreadable = errors.New("a record that cannot be read")

// codedError carries the CNI code an error is reported with.
type codedError struct {
	code uint
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func codeErr(code uint, err error) error { return &codedError{code: code, err: err} }

func configErr(format string, args ...any) error {
	return codeErr(types.ErrInvalidNetworkConfig, fmt.Errorf(format, args...))
}

// codeOf is the CNI code err is reported with: its own, 11 (try again
// later) when the store is unavailable, else 999.
func codeOf(err error) uint {
	var c *codedError
	switch {
	case errors.As(err, &c):
		return c.code
	case errors.Is(err, ErrUnavailable):
		return types.ErrTryAgainLater
	}
	return types.ErrInternal
}

// toCNI turns err into the CNI error the plugin prints: the one place where
// errors become *types.Error.
func toCNI(err error) error {
	if err == nil {
		return nil
	}
	return types.NewError(codeOf(err), "nicmux-ipam: "+err.Error(), "")
}
