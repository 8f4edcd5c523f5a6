package conf

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestErrorString(t *testing.T) {
	inner := errors.New("boom")
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"everything", Error{File: "a.yaml", Line: 3, Column: 7, Field: "interfaces[0].ifname", Msg: "bad", Err: inner},
			"a.yaml:3:7: interfaces[0].ifname: bad: boom"},
		{"no position", Error{File: "a.yaml", Field: "interfaces", Msg: "empty"}, "a.yaml: interfaces: empty"},
		{"no field", Error{File: "a.yaml", Line: 1, Column: 1, Msg: "must be a mapping"}, "a.yaml:1:1: must be a mapping"},
		{"no file", Error{Field: "x", Msg: "bad"}, "x: bad"},
		{"only a wrapped error", Error{File: "f", Err: inner}, "f: boom"},
		{"only a message", Error{Msg: "bad"}, "bad"},
		{"a line without a file is not shown", Error{Line: 4, Column: 2, Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorUnwrapAndCode(t *testing.T) {
	e := &Error{Code: types.ErrDecodingFailure, Msg: "cannot read", Err: fs.ErrNotExist}
	if !errors.Is(e, fs.ErrNotExist) {
		t.Error("errors.Is does not see the wrapped error")
	}
	if e.CNICode() != types.ErrDecodingFailure {
		t.Errorf("CNICode() = %d, want %d", e.CNICode(), types.ErrDecodingFailure)
	}
	if got := (&Error{Msg: "x"}).CNICode(); got != types.ErrInvalidNetworkConfig {
		t.Errorf("CNICode() without a code = %d, want %d", got, types.ErrInvalidNetworkConfig)
	}
	if (&Error{}).Unwrap() != nil {
		t.Error("Unwrap() of an Error without Err is not nil")
	}
}
