package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/state"
)

// entryCheck checks nicmux's entry in the runtime's conflist, for the
// validator it reports to.
type entryCheck struct {
	*validator
	e *entry
}

// check checks nicmux's entry and the list around it, and returns the
// entry's configuration (nil when it cannot be decoded).
func (ck entryCheck) check() *conf.NetConf {
	ck.unknownKeys()
	nc, err := ck.e.netConf()
	if err != nil {
		ck.parseError(err)
	}
	ck.nomadList()
	// A version nicmux refuses is reported above; the plugins' VERSION is
	// then only asked, not compared.
	version := ck.e.cniVersion
	if !conf.IsSupportedVersion(version) {
		version = ""
	}
	for i, typ := range ck.e.plugins {
		field := fmt.Sprintf("plugins[%d].type", i)
		if ck.e.index < 0 {
			field = "type"
		}
		if typ != "" {
			ck.checkBinary(ck.e.pos(field), field, "plugin", typ, version, "the conflist's")
		}
	}
	if nc != nil && nc.LogFile != "" && filepath.IsAbs(nc.LogFile) {
		ck.logFolder(filepath.Dir(nc.LogFile))
	}
	if nc != nil && filepath.IsAbs(nc.StateDir) {
		ck.stateFolder(nc.StateDir)
	}
	return nc
}

// stateFolder reports a state folder nicmux cannot use, as ADD and DEL
// check it before anything runs (state.Usable).
func (ck entryCheck) stateFolder(dir string) {
	err := state.Usable(dir)
	if err == nil {
		return
	}
	field := ck.e.field("stateDir")
	if _, ok := ck.e.raw["stateDir"]; !ok {
		field = ck.e.field("") // the default
	}
	hint := "nicmux fails every ADD and DEL with it (CNI error 5, I/O failure) until it is fixed"
	if uid := os.Geteuid(); uid != 0 {
		hint += fmt.Sprintf("; validate checked it as uid %d: run it as the user that runs the plugins (root, under Nomad)", uid)
	}
	ck.add(newFinding(sevError, ck.e.pos(field), field, hint, "%v", err))
}

// parseError reports conf.ParseNetConf's verdict on the entry, at the field
// it names.
func (ck entryCheck) parseError(err error) {
	const hint = "nicmux fails every verb with this entry until it is fixed"
	var ce *conf.Error
	if !errors.As(err, &ce) {
		ck.add(newFinding(sevError, ck.e.pos(ck.e.field("")), ck.e.field(""), hint, "%v", err))
		return
	}
	field := ck.e.field(ce.Field)
	switch ce.Field {
	case "cniVersion", "name":
		field = ce.Field // the list's, which libcni sets in every plugin
	case "(top level)":
		field = ck.e.field("")
	}
	msg := ce.Msg
	if ce.Err != nil {
		msg += ": " + ce.Err.Error()
	}
	ck.add(newFinding(sevError, ck.e.pos(field), field, hint, "%s", msg))
}

// nomadList reports what Nomad needs of the list: a lower-case name
// (it lower-cases the job's mode), cniVersion 1.0.0 (see the warning) and
// a loopback plugin (without one, tasks of the exec and java drivers,
// which get no lo from elsewhere, have it down).
func (ck entryCheck) nomadList() {
	if ck.e.name != strings.ToLower(ck.e.name) {
		ck.add(newFinding(sevWarning, ck.e.pos("name"), "name",
			"write the name in lower case (and the job's mode with it)",
			"%q has capitals: Nomad lower-cases the job's network mode, so cni/%s finds no conflist of this name", ck.e.name, ck.e.name))
	}
	if conf.AtLeast(ck.e.cniVersion, "1.1.0") {
		ck.add(newFinding(sevWarning, ck.e.pos("cniVersion"), "cniVersion",
			`give the list "cniVersion": "1.0.0" (docs/nomad.md, section 6, "Why cniVersion 1.0.0")`,
			"%s: Nomad 1.9.5 and later ask every plugin for STATUS before every setup and teardown of a list at 1.1.0 or later, "+
				"and skip the teardown (no DEL) when STATUS fails: the allocation's links, leases and iptables rules stay; "+
				"Nomad 1.8.0 to 1.8.2 fail every setup of such a list", ck.e.cniVersion))
	}
	if slices.Contains(ck.e.plugins, "loopback") {
		return
	}
	field, hint := "plugins", `add {"type": "loopback"} after the nicmux entry in "plugins": it brings lo up and passes nicmux's result on`
	if ck.e.index < 0 {
		field, hint = "type", `make this a .conflist whose "plugins" are the nicmux entry, then {"type": "loopback"}`
	}
	ck.add(newFinding(sevWarning, ck.e.pos(field), field, hint,
		`no "loopback" plugin in the conflist: the tasks of Nomad's exec and java drivers get their "lo" interface down`))
}

// unknownKeys reports the keys of the entry that nicmux does not read:
// encoding/json drops them without a word, so a typo ("logFle",
// "paralel") silently leaves the default in force.
func (ck entryCheck) unknownKeys() {
	keys := make([]string, 0, len(ck.e.raw))
	for k := range ck.e.raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if known(ck.keys, k) {
			continue
		}
		hint := "nicmux's keys: " + strings.Join(ck.keys, ", ")
		if s := suggest(ck.keys, k); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		field := ck.e.field(k)
		ck.add(newFinding(sevError, ck.e.pos(field), field, hint, "unknown key: nicmux ignores it"))
	}
}

// logFolder reports a log file whose folder nicmux cannot write in.
func (ck entryCheck) logFolder(dir string) {
	field := ck.e.field("logFile")
	fi, err := os.Stat(dir)
	problem, hint := "", "point logFile at a file in an existing folder"
	switch {
	case errors.Is(err, os.ErrNotExist):
		problem, hint = "does not exist", "create it (mkdir -p "+dir+") or point logFile at an existing folder"
	case err != nil:
		problem = "cannot be read: " + err.Error()
	case !fi.IsDir():
		problem = "is not a folder"
	default:
		return
	}
	ck.add(newFinding(sevWarning, ck.e.pos(field), field, hint,
		"the folder %s %s: nicmux cannot open its log and writes warnings and errors to stderr, which Nomad does not keep", dir, problem))
}

// portmap reports a portmap delegate behind an entry that does
// not declare portMappings: libcni then hands nicmux no port mappings, and
// no port is forwarded.
func (ck entryCheck) portmap(nc *conf.NetConf) {
	if nc == nil || nc.Capabilities["portMappings"] {
		return
	}
	for _, att := range ck.sets {
		for i, c := range att.Interfaces {
			for j, p := range c.Plugins {
				if p.Type != "portmap" {
					continue
				}
				field := ck.e.field("capabilities")
				if _, ok := ck.e.raw["capabilities"]; !ok {
					field = ck.e.field("")
				}
				use := att.loc.Locate(fmt.Sprintf("interfaces[%d].plugins[%d]", i, j))
				ck.add(newFinding(sevError, ck.e.pos(field), field, `add "capabilities": {"portMappings": true} to the nicmux entry`,
					`the nicmux entry does not declare "capabilities": {"portMappings": true}, but %s (interfaces[%d], %s) uses portmap: the runtime hands nicmux no port mappings, so no port is forwarded`,
					use, i, c.IfName))
				return
			}
		}
	}
}
