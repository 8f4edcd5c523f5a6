package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// DefaultStateDir is where nicmux keeps its per-container state when the
// network configuration does not say otherwise.
const DefaultStateDir = "/var/lib/cni/nicmux"

// defaultDelegateTimeout bounds each delegate plugin call when the network
// configuration does not say otherwise.
const defaultDelegateTimeout = 60 * time.Second

// SupportedVersions returns the CNI specification versions nicmux speaks,
// oldest first. 0.1.0 and 0.2.0 are left out on purpose: their results carry
// no interface list, so a merged multi-interface result cannot be expressed.
func SupportedVersions() []string {
	return []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}
}

// IsSupportedVersion reports whether v is one of SupportedVersions.
func IsSupportedVersion(v string) bool {
	return slices.Contains(SupportedVersions(), v)
}

// NetConf is nicmux's own entry in the runtime's network configuration list.
type NetConf struct {
	CNIVersion  string `json:"cniVersion"`
	Name        string `json:"name"`
	Type        string `json:"type"`
	Attachments string `json:"attachments"`
	StateDir    string `json:"stateDir"`
	LogFile     string `json:"logFile"`
	LogLevel    string `json:"logLevel"`
	// MetricsFile is the Prometheus text file nicmux's figures are drawn
	// in, for node_exporter's textfile collector; "" for none.
	MetricsFile string `json:"metricsFile,omitempty"`
	// Parallel runs independent chains at the same time (default true).
	Parallel bool `json:"parallel"`
	// Prestart is accepted and ignored, so that conflists written for
	// nicmux 0.2.0, which started delegates' processes ahead, still load
	// and validate.
	Prestart bool `json:"prestart"`
	// DelegateTimeout bounds each delegate plugin call: a Go duration
	// ("60s", the default). Timeout is its value.
	DelegateTimeout string          `json:"delegateTimeout,omitempty"`
	Timeout         time.Duration   `json:"-"`
	DisableCheck    bool            `json:"disableCheck,omitempty"`
	DisableGC       bool            `json:"disableGC,omitempty"`
	Capabilities    map[string]bool `json:"capabilities,omitempty"`

	// RuntimeConfig holds the capability arguments the runtime injected
	// (libcni only injects those that nicmux's entry declares). They are
	// handed on, unchanged, to the delegates that declare them.
	RuntimeConfig map[string]json.RawMessage `json:"runtimeConfig,omitempty"`

	// PrevResult is set when nicmux is not the first plugin of its list.
	PrevResult json.RawMessage `json:"prevResult,omitempty"`

	// ValidAttachments is given on GC (spec 1.1). The spec first named it
	// cni.dev/attachments; libcni sends both.
	ValidAttachments       []types.GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
	LegacyValidAttachments []types.GCAttachment `json:"cni.dev/attachments,omitempty"`
}

// ParseNetConf decodes and validates nicmux's network configuration.
func ParseNetConf(stdin []byte) (*NetConf, error) {
	nc := &NetConf{Parallel: true, Timeout: defaultDelegateTimeout}
	if err := json.Unmarshal(stdin, nc); err != nil {
		return nil, decodeError(err)
	}
	if nc.StateDir == "" {
		nc.StateDir = DefaultStateDir
	}
	if err := nc.validate(); err != nil {
		return nil, err
	}
	return nc, nil
}

func (nc *NetConf) validate() error {
	bad := func(field, format string, args ...any) error {
		return &Error{Code: types.ErrInvalidNetworkConfig, File: "network config " + quoteName(nc.Name),
			Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if nc.Attachments == "" {
		return bad("attachments", "is required: the path of the YAML attachment file")
	}
	for field, p := range map[string]string{"attachments": nc.Attachments, "stateDir": nc.StateDir, "logFile": nc.LogFile, "metricsFile": nc.MetricsFile} {
		if p != "" && !filepath.IsAbs(p) {
			return bad(field, "%q must be an absolute path", p)
		}
	}
	if nc.MetricsFile != "" && filepath.Ext(nc.MetricsFile) != ".prom" {
		return bad("metricsFile", "%q must end in .prom: node_exporter's textfile collector reads no other file", nc.MetricsFile)
	}
	if !IsSupportedVersion(nc.CNIVersion) {
		return &Error{Code: types.ErrIncompatibleCNIVersion, File: "network config " + quoteName(nc.Name),
			Field: "cniVersion", Msg: fmt.Sprintf("%q is not supported (supported: %v)", nc.CNIVersion, SupportedVersions())}
	}
	if nc.DelegateTimeout != "" {
		d, err := time.ParseDuration(nc.DelegateTimeout)
		if err != nil || d <= 0 {
			return bad("delegateTimeout", "%q is not a positive Go duration such as \"60s\"", nc.DelegateTimeout)
		}
		nc.Timeout = d
	}
	switch nc.LogLevel {
	case "", "debug", "info", "warn", "warning", "error":
	default:
		return bad("logLevel", "%q is not one of debug, info, warn, error", nc.LogLevel)
	}
	return nil
}

// GCValid returns the attachments a GC call declared valid, merging both the
// current and the legacy key.
func (nc *NetConf) GCValid() []types.GCAttachment {
	out := slices.Clone(nc.ValidAttachments)
	for _, a := range nc.LegacyValidAttachments {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// GCValidGiven reports whether the GC call carried a list of valid
// attachments at all. Without one, every attachment is garbage, as libcni
// and cnitool mean it; nicmux logs that case.
func GCValidGiven(stdin []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(stdin, &probe) != nil {
		return false
	}
	_, a := probe["cni.dev/valid-attachments"]
	_, b := probe["cni.dev/attachments"]
	return a || b
}

func quoteName(name string) string {
	if name == "" {
		return "(unnamed)"
	}
	return fmt.Sprintf("%q", name)
}

// decodeError turns a JSON decoding failure into an Error that names the field
// where it can.
func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			field = "(top level)"
		}
		return &Error{Code: types.ErrDecodingFailure, File: "network config", Field: field,
			Msg: fmt.Sprintf("expected %s, got JSON %s", typeErr.Type, typeErr.Value)}
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return &Error{Code: types.ErrDecodingFailure, File: "network config",
			Msg: fmt.Sprintf("not valid JSON at byte %d", syntaxErr.Offset), Err: err}
	}
	return &Error{Code: types.ErrDecodingFailure, File: "network config", Msg: "cannot decode", Err: err}
}

// compactJSON returns b without insignificant white space, so that stored
// configurations compare equal when only formatting differs.
func compactJSON(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// marshalJSON is json.Marshal without HTML escaping: plugin configurations
// pass through nicmux byte for byte, "<", ">" and "&" included.
func MarshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
