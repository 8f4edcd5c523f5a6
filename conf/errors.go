// Package conf reads nicmux's own network configuration (the JSON the
// runtime passes on stdin) and the YAML attachment file that lists a
// container's interfaces and their delegate plugin chains.
package conf

import (
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

// Error is a configuration error. It names the file (and, for YAML, the line
// and column) and the field at fault, and carries the CNI error code the
// runtime should see: types.ErrDecodingFailure when input could not be
// decoded at all, types.ErrInvalidNetworkConfig when it decoded but is wrong.
type Error struct {
	Code   uint
	File   string
	Line   int
	Column int
	Field  string
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		if e.Msg != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// CNICode returns the CNI error code for e.
func (e *Error) CNICode() uint {
	if e.Code == 0 {
		return types.ErrInvalidNetworkConfig
	}
	return e.Code
}
