package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The plugin alone, as macvlan runs its IPAM: host-local and nicmux-ipam
// (bin's: through its daemon, without one, and nicmux-ipamd run directly;
// and each of -ipam-variants, run directly), a fresh owner's ADD then its DEL,
// interleaved with the floors that say where nicmux-ipam's time goes: a
// static Go binary's bare start, the same linking etcd's client (bare, and
// with one transaction), and etcd's own WAL fdatasync over the same time,
// from its metrics.

// aloneBin is one IPAM plugin of the probe.
type aloneBin struct {
	label, path, conf string
}

// aloneRun is what one run of the probe measured.
type aloneRun struct {
	add, del                   map[string][]time.Duration // by the plugin's label
	hello, floorBare, floorTxn []time.Duration
	walFsync                   time.Duration // etcd's mean over the run
}

// aloneSetup builds the floors and lists the probe's plugins, each with a
// pool of its own.
func (ib *ipamBench) aloneSetup(variants string) {
	ib.hello = buildHello(ib.e)
	ib.floor = filepath.Join(ib.e.folder("etcdfloor"), "etcdfloor")
	cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags=-s -w", "-o", ib.floor, "./etcdfloor")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	must(err, "building etcdfloor: %s", out)
	hl, _ := json.Marshal(map[string]any{"type": "host-local", "dataDir": ib.e.folder("alone", "host-local"),
		"ranges": [][]map[string]string{{{"subnet": "10.61.0.0/24"}}}})
	ib.alone = []*aloneBin{{label: "host-local", path: ib.e.plugin("host-local"), conf: string(hl)}}
	bins := []string{aloneDirect + "=" + ib.ipam, aloneServed + "=" + ib.thin, aloneNoDaemon + "=" + ib.thin}
	if variants != "" {
		bins = append(bins, strings.Split(variants, ",")...)
	}
	for i, spec := range bins {
		label, path, ok := strings.Cut(spec, "=")
		if !ok {
			fatalf("-ipam-variants: %q is not LABEL=PATH", spec)
		}
		prefix := fmt.Sprintf("/bench/alone-%d-%s", i, ib.e.name(""))
		socket := ""
		switch label {
		case aloneServed:
			socket = ib.socket
		case aloneNoDaemon:
			socket = filepath.Join(filepath.Dir(ib.socket), "none.sock")
		}
		ib.alone = append(ib.alone, &aloneBin{label: label, path: path,
			conf: ib.ipamConfOn("alone", fmt.Sprintf("10.62.%d.0/24", i), prefix, "alone", socket)})
	}
	for _, b := range ib.alone { // the pool's definition, the node's block
		ib.addDel(b, "warm")
	}
}

// addDel runs b's ADD, then its DEL, of owner id.
func (ib *ipamBench) addDel(b *aloneBin, id string) (add, del time.Duration) {
	add, err := ib.callBin(b.path, "ADD", id, b.conf)
	must(err, "%s ADD", b.label)
	del, err = ib.callBin(b.path, "DEL", id, b.conf)
	must(err, "%s DEL", b.label)
	return add, del
}

// The labels of bin's plugins in the probe.
const (
	aloneDirect   = "bin/nicmux-ipamd, directly"
	aloneServed   = "bin/nicmux-ipam, through nicmux-ipamd serve"
	aloneNoDaemon = "bin/nicmux-ipam, no daemon (runs nicmux-ipamd)"
)

// aloneReps is how many times the probe runs per repetition of the other
// figures: its differences are smaller than theirs.
const aloneReps = 4

// measureAlone runs the probe aloneReps*reps times, each time in an order
// of its own.
func (ib *ipamBench) measureAlone(reps, run int) aloneRun {
	r := aloneRun{add: map[string][]time.Duration{}, del: map[string][]time.Duration{}}
	rng := rand.New(rand.NewPCG(seed+uint64(run), seed+2))
	before := ib.etcdMetrics()
	jobs := len(ib.alone) + 3
	for rep := range aloneReps * reps {
		for _, j := range rng.Perm(jobs) {
			switch {
			case j < len(ib.alone):
				b := ib.alone[j]
				add, del := ib.addDel(b, fmt.Sprintf("a-%d-%d", run, rep))
				r.add[b.label], r.del[b.label] = append(r.add[b.label], add), append(r.del[b.label], del)
			case j == len(ib.alone):
				r.hello = append(r.hello, runBare(ib.hello, "hello"))
			case j == len(ib.alone)+1:
				r.floorBare = append(r.floorBare, runBare(ib.floor, "hello"))
			default:
				r.floorTxn = append(r.floorTxn, ib.floorTxn(fmt.Sprintf("/bench/floor-%s/%d-%d", ib.e.name(""), run, rep)))
			}
		}
	}
	after := ib.etcdMetrics()
	r.walFsync = after.mean("etcd_disk_wal_fsync_duration_seconds", before)
	return r
}

// floorTxn runs the etcd-linked floor with one transaction on key.
func (ib *ipamBench) floorTxn(key string) time.Duration {
	cmd := exec.Command(ib.floor, ib.etcd.Endpoints()[0], key)
	cmd.Env = []string{}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	must(err, "etcdfloor: %s", out)
	return d
}

// metrics are etcd's Prometheus counters: name -> value.
type metrics map[string]float64

// etcdMetrics reads etcd's /metrics.
func (ib *ipamBench) etcdMetrics() metrics {
	resp, err := http.Get(ib.etcd.Endpoints()[0] + "/metrics")
	must(err, "reading etcd's metrics")
	defer resp.Body.Close()
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && !strings.HasPrefix(name, "#") {
			if v, err := strconv.ParseFloat(val, 64); err == nil {
				m[name] = v
			}
		}
	}
	return m
}

// mean is a histogram's mean over the time from before to m.
func (m metrics) mean(histogram string, before metrics) time.Duration {
	n := m[histogram+"_count"] - before[histogram+"_count"]
	if n <= 0 {
		return 0
	}
	return time.Duration((m[histogram+"_sum"] - before[histogram+"_sum"]) / n * float64(time.Second))
}

// callBin runs an IPAM plugin as macvlan runs it, for verb, owner id, with
// the ipam object conf, and returns how long it took.
func (ib *ipamBench) callBin(path, verb, id, conf string) (time.Duration, error) {
	cmd := exec.Command(path)
	cmd.Env = []string{"CNI_COMMAND=" + verb, "CNI_CONTAINERID=" + id, "CNI_NETNS=/var/run/netns/" + id,
		"CNI_IFNAME=eth1", "CNI_PATH=" + ib.e.bin}
	cmd.Stdin = strings.NewReader(`{"cniVersion": "1.0.0", "name": "bench", "type": "macvlan", "ipam": ` + conf + `}`)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s %s %s: %v: %s", filepath.Base(path), verb, id, err, out.String())
	}
	return d, nil
}

// --- the report -----------------------------------------------------------

func (ib *ipamBench) aloneFig(f func(r aloneRun) float64) figure {
	return ib.over(func(run int) float64 { return f(ib.runs[run].alone) })
}

func medMS(ds []time.Duration) float64 { return toMS(median(ds)) }

// aloneDiff is a plugin's median ADD (or DEL) minus another's, run by run.
func (ib *ipamBench) aloneDiff(label, minus string, add bool) figure {
	return ib.aloneFig(func(r aloneRun) float64 {
		ds := r.del
		if add {
			ds = r.add
		}
		return medMS(ds[label]) - medMS(ds[minus])
	})
}

func (ib *ipamBench) writeAlone(b *strings.Builder, reps int) {
	fmt.Fprintf(b, "\nThe plugin alone, as macvlan runs its IPAM (a fresh owner's ADD, then its DEL; nicmux-ipam's node holds its block), "+
		"%d repetitions per run interleaved with the floors below; ms, the median per run:\n\n", aloneReps*reps)
	mine := ib.alone[1].label
	fmt.Fprintf(b, "| IPAM plugin | ADD | DEL | ADD − host-local | DEL − host-local | ADD − %s | DEL − %s |\n|---|---:|---:|---:|---:|---:|---:|\n", mine, mine)
	for _, bin := range ib.alone {
		l := bin.label
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", l, ib.aloneFig(func(r aloneRun) float64 { return medMS(r.add[l]) }).ms(),
			ib.aloneFig(func(r aloneRun) float64 { return medMS(r.del[l]) }).ms(),
			ib.aloneDiff(l, "host-local", true).ms(), ib.aloneDiff(l, "host-local", false).ms(),
			ib.aloneDiff(l, mine, true).ms(), ib.aloneDiff(l, mine, false).ms())
	}
	parts := []struct {
		what string
		f    func(r aloneRun) float64
	}{
		{"a static Go binary's start (hello-world, bare)", func(r aloneRun) float64 { return medMS(r.hello) }},
		{"+ the package initialisation of grpc, protobuf and etcd's API (a hello-world linking etcd's client, bare, − the hello-world)",
			func(r aloneRun) float64 { return medMS(r.floorBare) - medMS(r.hello) }},
		{"+ a connection to etcd and one transaction that writes (the same, dialing etcd, − bare)",
			func(r aloneRun) float64 { return medMS(r.floorTxn) - medMS(r.floorBare) }},
		{"  of which etcd's WAL fdatasync (etcd's metrics, the mean over the run)", func(r aloneRun) float64 { return toMS(r.walFsync) }},
		{"+ nicmux-ipam's own work (its ADD − the etcd client's transaction)", func(r aloneRun) float64 { return medMS(r.add[mine]) - medMS(r.floorTxn) }},
		{"= nicmux-ipam's ADD", func(r aloneRun) float64 { return medMS(r.add[mine]) }},
		{"host-local's ADD", func(r aloneRun) float64 { return medMS(r.add["host-local"]) }},
		{"nicmux-ipam's ADD through its daemon", func(r aloneRun) float64 { return medMS(r.add[aloneServed]) }},
	}
	fmt.Fprintf(b, "\nWhere %s's ADD goes, the same runs; ms:\n\n| part | ms |\n|---|---:|\n", mine)
	for _, p := range parts {
		fmt.Fprintf(b, "| %s | %s |\n", p.what, ib.aloneFig(p.f).ms())
	}
}
