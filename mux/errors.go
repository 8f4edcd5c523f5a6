package mux

import (
	"errors"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/state"
)

// errAlreadyAttached is the plugin-specific CNI code (spec: 100 and up are
// the plugin's) for an ADD refused because the container's interfaces are
// live in the very namespace ADD names.
const errAlreadyAttached uint = 100

// codedError carries a CNI error code for an error of nicmux's own.
type codedError struct {
	error
	code uint
}

func (e *codedError) Unwrap() error       { return e.error }
func (e *codedError) CNICode() uint       { return e.code }
func withCode(code uint, err error) error { return &codedError{error: err, code: code} }

// coder is an error that knows its CNI code: nicmux's own (codedError),
// conf's, state's and delegate's errors, which a plugin's own CNI error
// inside keeps.
type coder interface {
	error
	CNICode() uint
}

// toCNIError turns an error into the *types.Error the runtime sees.
func toCNIError(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	return types.NewError(codeOf(err), msg, "")
}

// codeOf returns the CNI error code for err: that of the first error in the
// tree that carries one (errors.As walks the tree in order), a foreign
// *types.Error's next, a lock timeout's (11, try again later) last; 999
// for an error that carries none.
func codeOf(err error) uint {
	var c coder
	if errors.As(err, &c) {
		return c.CNICode()
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	if errors.Is(err, state.ErrLockTimeout) {
		return types.ErrTryAgainLater
	}
	return types.ErrInternal
}
