package rehearse

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nicmux/nicmux/nomad"
)

// client is a Nomad client's go-cni, as the release links it, over this
// module's libcni: one network (the conflist), CNI_IFNAME eth0, the
// release's STATUS rule and the libcni result versions it reads.
type client struct {
	release nomad.Release
	list    *libcni.NetworkConfigList
	cni     *libcni.CNIConfig
	exec    *pluginExec
}

// newClient loads the configuration as the client does: a .conflist as a
// list, any other file as a single plugin's configuration.
func newClient(release nomad.Release, file string, data []byte, cniPath []string, cacheDir string) (*client, error) {
	list, err := loadList(file, data)
	if err != nil {
		return nil, err
	}
	ex := &pluginExec{release: release, raw: &invoke.RawExec{Stderr: io.Discard}}
	return &client{release: release, list: list, exec: ex,
		cni: libcni.NewCNIConfigWithCacheDir(cniPath, cacheDir, ex)}, nil
}

func loadList(file string, data []byte) (*libcni.NetworkConfigList, error) {
	if strings.HasSuffix(file, ".conflist") {
		return libcni.ConfListFromBytes(data)
	}
	c, err := libcni.ConfFromBytes(data)
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromConf(c)
}

// failedPlugin is the type of the plugin whose call failed last, so that a
// step names it (libcni's CHECK errors do not).
func (c *client) failedPlugin() string { return c.exec.failed }

// status is go-cni's Status, called before every setup and teardown.
func (c *client) status(ctx context.Context) error {
	c.exec.failed = ""
	if !c.release.CallsStatus(c.list.CNIVersion) {
		return nil
	}
	return c.cni.GetStatusNetworkList(ctx, c.list)
}

// add is one try of go-cni's Setup: ADD the list, then read its result as
// go-cni does.
func (c *client) add(ctx context.Context, rt *libcni.RuntimeConf) (*nomad.Result, error) {
	c.exec.failed = ""
	res, err := c.cni.AddNetworkList(ctx, c.list, rt)
	if err != nil {
		return nil, err
	}
	return nomad.ReadResult(res)
}

func (c *client) check(ctx context.Context, rt *libcni.RuntimeConf) error {
	c.exec.failed = ""
	return c.cni.CheckNetworkList(ctx, c.list, rt)
}

// del is go-cni's Remove: an error saying "not found" counts as success.
func (c *client) del(ctx context.Context, rt *libcni.RuntimeConf) error {
	c.exec.failed = ""
	err := c.cni.DelNetworkList(ctx, c.list, rt)
	if nomad.TeardownIgnores(err) {
		return nil
	}
	return err
}

// pluginExec runs plugins as libcni's RawExec does, and remembers which
// plugin failed last. On ADD it rejects a result whose version the
// release's libcni does not know, after the plugin ran, as that libcni
// does.
type pluginExec struct {
	version.PluginDecoder
	release nomad.Release
	raw     *invoke.RawExec
	failed  string
}

func (e *pluginExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	out, err := e.raw.ExecPlugin(ctx, pluginPath, stdin, environ)
	if err != nil {
		e.failed = filepath.Base(pluginPath)
		return nil, err
	}
	if env(environ, "CNI_COMMAND") == "ADD" {
		if v := resultVersion(out); v != "" && !e.release.ReadsResultVersion(v) {
			e.failed = filepath.Base(pluginPath)
			return nil, nomad.UnreadableResult(v)
		}
	}
	return out, nil
}

func (e *pluginExec) FindInPath(plugin string, paths []string) (string, error) {
	p, err := e.raw.FindInPath(plugin, paths)
	if err != nil {
		e.failed = plugin
	}
	return p, err
}

func env(environ []string, key string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// resultVersion is the cniVersion a plugin's result declares.
func resultVersion(out []byte) string {
	var v struct {
		CNIVersion string `json:"cniVersion"`
	}
	if json.Unmarshal(out, &v) != nil {
		return ""
	}
	return v.CNIVersion
}
