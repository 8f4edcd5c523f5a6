package ipam

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// Defaults of the etcd settings.
const (
	DefaultPrefix  = "/nicmux/ipam"
	DefaultTimeout = 5 * time.Second
)

// etcdConf is the etcd object as written, in the configuration or in the
// etcdConfig file.
type etcdConf struct {
	Endpoints []string `json:"endpoints"`
	CAFile    string   `json:"caFile,omitempty"`
	CertFile  string   `json:"certFile,omitempty"`
	KeyFile   string   `json:"keyFile,omitempty"`
	Prefix    string   `json:"prefix,omitempty"`
	Timeout   string   `json:"timeout,omitempty"`
}

// EtcdConfig is how to reach the cluster, checked, defaults filled in.
type EtcdConfig struct {
	Endpoints                 []string
	CAFile, CertFile, KeyFile string
	Prefix                    string
	// Timeout bounds all the etcd work of one call.
	Timeout time.Duration
}

// String names the cluster in messages.
func (c EtcdConfig) String() string { return "etcd at " + strings.Join(c.Endpoints, ",") }

// etcdFrom reads the etcd settings from the inline object or the file.
func etcdFrom(inline *etcdConf, file string) (EtcdConfig, error) {
	switch {
	case inline != nil && file != "":
		return EtcdConfig{}, configErr("ipam: give etcd or etcdConfig, not both")
	case inline != nil:
		return inline.check("ipam.etcd")
	case file != "":
		return loadEtcdConfig(file)
	}
	return EtcdConfig{}, configErr("ipam.etcd: missing: give etcd {endpoints: [...]} or etcdConfig: FILE")
}

// loadEtcdConfig reads an etcd settings file (the etcd object as JSON).
func loadEtcdConfig(file string) (EtcdConfig, error) {
	b, err := readFile("ipam.etcdConfig", file)
	if err != nil {
		return EtcdConfig{}, err
	}
	var ec etcdConf
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ec); err != nil {
		return EtcdConfig{}, codeErr(types.ErrDecodingFailure, fmt.Errorf("ipam.etcdConfig: %s: %w", file, err))
	}
	return ec.check(file)
}

// check validates the settings; where names them in messages.
func (ec *etcdConf) check(where string) (EtcdConfig, error) {
	c := EtcdConfig{CAFile: ec.CAFile, CertFile: ec.CertFile, KeyFile: ec.KeyFile, Prefix: ec.Prefix, Timeout: DefaultTimeout}
	if len(ec.Endpoints) == 0 {
		return c, configErr("%s.endpoints: missing: list the etcd client URLs, e.g. [\"https://10.0.0.5:2379\"]", where)
	}
	for i, e := range ec.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
			return c, configErr("%s.endpoints[%d]: %q is not an etcd client URL (http:// or https://host:port)", where, i, e)
		}
		c.Endpoints = append(c.Endpoints, u.Scheme+"://"+u.Host)
	}
	if (ec.CertFile == "") != (ec.KeyFile == "") {
		return c, configErr("%s: give certFile and keyFile together", where)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/") || strings.Contains(c.Prefix, "//") {
		return c, configErr("%s.prefix: %q must start with / and have no empty part or trailing /", where, c.Prefix)
	}
	if ec.Timeout != "" {
		d, err := time.ParseDuration(ec.Timeout)
		if err != nil || d <= 0 || d > 10*time.Minute {
			return c, configErr("%s.timeout: %q is not a duration between 0 and 10m (e.g. \"5s\")", where, ec.Timeout)
		}
		c.Timeout = d
	}
	return c, nil
}
