// Package ipamd is what passes between nicmux-ipam, the plugin a chain
// names, and nicmux-ipamd, the node daemon that holds the etcd clients:
// one request and one response on a unix socket, and the client side of
// it. It links no etcd, grpc or protobuf package, so that the plugin's
// start stays a small Go binary's.
//
// A request is the CNI call whole: the CNI_* variables and stdin. A
// response is what the plugin would have printed and its exit code. Each
// is one length-prefixed JSON object, and a connection carries one call:
// the client keeps its side open while it waits, so that the daemon sees
// a client that went away and cancels the call's work.
package ipamd

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// DefaultSocket is where nicmux-ipamd listens and nicmux-ipam calls, when
// the ipam configuration names no socket. Its folder is root's alone.
const DefaultSocket = "/run/nicmux-ipam/ipamd.sock"

// maxFrame bounds a request or a response: a network configuration with a
// prevResult is a few kilobytes.
const maxFrame = 4 << 20

// Request is one CNI call.
type Request struct {
	// Env holds the call's CNI_* variables.
	Env map[string]string `json:"env"`
	// Stdin is the network configuration.
	Stdin []byte `json:"stdin"`
	// Wait is how long the client waits for the response: the daemon ends
	// the call's work before, so that a client that stops waiting and runs
	// the call itself does not overlap it.
	Wait time.Duration `json:"wait"`
}

// Getenv reads a variable of the call.
func (r *Request) Getenv(name string) string { return r.Env[name] }

// Response is what the call printed and its exit code.
type Response struct {
	Code   int    `json:"code"`
	Stdout []byte `json:"stdout"`
	Stderr []byte `json:"stderr,omitempty"`
}

// CNIEnv picks the CNI_* variables of an environment (os.Environ's form).
func CNIEnv(environ []string) map[string]string {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, "CNI_") {
			env[k] = v
		}
	}
	return env
}

// WriteFrame writes v as one frame: its JSON's length (4 bytes, big
// endian), then the JSON.
func WriteFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("a frame of %d bytes, more than %d", len(b), maxFrame)
	}
	buf := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

// ErrShort is a frame cut before its end: the other side went away.
var ErrShort = errors.New("frame cut short")

// ReadFrame reads one frame into v. A frame cut anywhere, even before its
// first byte, wraps ErrShort.
func ReadFrame(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return short(err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxFrame {
		return fmt.Errorf("a frame of %d bytes, more than %d", size, maxFrame)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return short(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("frame: %w", err)
	}
	return nil
}

func short(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", ErrShort, err)
	}
	return err
}
