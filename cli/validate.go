package cli

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/nicmux/nicmux/conf"
)

const validateHelp = `Checks what can be known before an allocation lands, and prints each
finding as FILE:LINE:COL: error|warning: message, with a hint:

  - the attachment files' schema and their conflist: references (a YAML
    error at the line where the parser's trouble starts);
  - every delegate and IPAM plugin binary in the CNI path, and that its
    VERSION answer supports the chain's cniVersion;
  - each host-local and static IPAM section, through that plugin's own
    ADD (host-local's with a scratch dataDir, removed afterwards); another
    IPAM type gets a note: it is not checked;
  - on this host: that a macvlan, ipvlan or vlan master exists, and that no
    MTU (the plugin's or tuning's) is above the master's;
  - two chains of one set installing a default route of the same family,
    or on overlapping subnets; two chains on one bridge with different
    subnets;
  - portmap without the portMappings capability;
  - with -conflist, nicmux's entry: unknown keys, its own settings, the
    portMappings capability when a chain uses portmap, a loopback plugin
    beside it and cniVersion 1.0.0 (Nomad), the log file's folder, the
    state folder as ADD and DEL use it, the plugins' binaries.

With -conflist and no files, it checks the entry's attachment file and every
attachment set beside it (the <name>.yaml files NICMUX_ATTACHMENTS selects).
Without -conflist, chains default to cniVersion ` + defaultCNIVersion + ` and network names
` + defaultListName + `-<ifname>. Host facts are those of the current network namespace:
run it on the client that runs the allocations.

Exit status: 0 no errors (warnings allowed unless -strict; notes always),
1 errors found, 2 usage error.`

// The defaults for attachment files checked without a conflist: the version
// docs/nomad.md recommends, and a list name for default network names.
const (
	defaultCNIVersion = "1.0.0"
	defaultListName   = "nicmux"
)

func runValidate(e *env, args []string) int {
	f, c := deploymentFlags("validate", validateHelp, "print the report as one JSON object")
	strict := f.Bool("strict", false, "fail (exit 1) on warnings too")
	files, code, ok := f.parseN(e, args, 0, -1, "")
	if !ok {
		return code
	}
	if len(files) == 0 && c.conflist == "" {
		return f.fail(e, "give attachment files, or -conflist to check the entry's attachment file and its sets")
	}
	v := newValidator(e, c.path(e))
	r := v.run(c.conflist, files)
	if c.asJSON {
		r.printJSON(e.stdout)
	} else {
		r.printText(e.stdout)
	}
	if r.Errors > 0 || (*strict && r.Warnings > 0) {
		return exitFail
	}
	return exitOK
}

// validator gathers the findings of one validate run.
type validator struct {
	probes *prober
	report report
	keys   []string // nicmux's entry keys
	// sets are the attachment files that parsed.
	sets []*set
}

// set is an attachment file that parsed, and where its fields are written.
type set struct {
	*conf.AttachmentFile
	loc *conf.Locator
}

func newValidator(e *env, cniPath []string) *validator {
	return &validator{probes: newProber(cniPath, e), keys: netConfKeys()}
}

func (v *validator) add(f finding) { v.report.Findings = append(v.report.Findings, f) }

// run checks the conflist's entry (when given) and the attachment files
// (given, or the entry's file and its sets).
func (v *validator) run(conflist string, files []string) *report {
	e, nc := v.read(conflist, files, func(e *entry) *conf.NetConf { return entryCheck{v, e}.check() })
	for _, att := range v.sets {
		v.checkSet(att)
	}
	v.checkBridges()
	if e != nil {
		entryCheck{v, e}.portmap(nc)
	}
	v.report.sort()
	return &v.report
}

// read reads the conflist's entry, when given, with decode (which checks
// it, or only decodes it), then the attachment files: those given, or the
// entry's file and its sets. What cannot be read is a finding.
func (v *validator) read(conflist string, files []string, decode func(*entry) *conf.NetConf) (*entry, *conf.NetConf) {
	d := conf.Defaults{IfName: "eth0", ListName: defaultListName, CNIVersion: defaultCNIVersion}
	var e *entry
	var nc *conf.NetConf
	if conflist != "" {
		v.report.Files = append(v.report.Files, conflist)
		var f *finding
		if e, f = readEntry(conflist); f != nil {
			v.add(*f)
		} else {
			// Without them, the runtime refuses the list (and
			// checkEntry says so): keep the defaults meanwhile.
			if e.name != "" {
				d.ListName = e.name
			}
			if e.cniVersion != "" {
				d.CNIVersion = e.cniVersion
			}
			nc = decode(e)
		}
	}
	if len(files) == 0 && nc != nil && filepath.IsAbs(nc.Attachments) {
		v.loadEntryFiles(e, nc, d)
	}
	for _, f := range files {
		v.load(f, d)
	}
	return e, nc
}

// loadEntryFiles loads the entry's attachment file and every set in its
// folder, as a job may select them through NICMUX_ATTACHMENTS.
func (v *validator) loadEntryFiles(e *entry, nc *conf.NetConf, d conf.Defaults) {
	base := nc.Attachments
	if _, err := os.Stat(base); err != nil {
		v.add(newFinding(sevError, e.pos(e.field("attachments")), e.field("attachments"),
			"validate reads the files nicmux will read: run it on the client, or pass the attachment files as arguments",
			"cannot read the attachment file: %v", err))
	} else {
		v.load(base, d)
	}
	dir := filepath.Dir(base)
	for _, name := range conf.AvailableSets(dir) {
		path := filepath.Join(dir, name+".yaml")
		if path == base {
			continue
		}
		if _, err := conf.ResolveSet(base, name); err != nil {
			msg := err.Error()
			var ce *conf.Error
			if errors.As(err, &ce) {
				msg = ce.Msg
			}
			v.report.Files = append(v.report.Files, path)
			v.add(newFinding(sevError, conf.Position{File: path}, "",
				"a job that names this set fails: make it a regular file in "+dir+", or remove it", "%s", msg))
			continue
		}
		v.load(path, d)
	}
}

// load parses one attachment file, reporting its errors.
func (v *validator) load(file string, d conf.Defaults) {
	v.report.Files = append(v.report.Files, file)
	att, err := conf.LoadAttachmentFile(file, d)
	if err == nil {
		v.sets = append(v.sets, &set{AttachmentFile: att, loc: conf.NewLocator(file)})
		return
	}
	hint := "nicmux refuses ADD with this attachment set (CNI error 7) until it parses"
	var ce *conf.Error
	if !errors.As(err, &ce) {
		v.add(finding{File: file, Severity: sevError, Message: err.Error(), Hint: hint})
		return
	}
	f := finding{File: ce.File, Line: ce.Line, Column: ce.Column, Severity: sevError, Field: ce.Field, Message: ce.Msg, Hint: hint}
	if f.File == "" {
		f.File = file
	}
	if ce.Err != nil {
		f.Message += ": " + ce.Err.Error()
	}
	if ce.Err != nil && f.Line == 0 {
		// yaml.v3's own line is, for most errors, where the enclosing
		// block begins, counted from 0.
		if se := conf.FindSyntaxError(f.File); se.Line > 0 {
			f.Line, f.Message = se.Line, ce.Msg+": "+se.Problem
		}
	}
	v.add(f)
}
