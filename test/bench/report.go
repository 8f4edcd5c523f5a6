package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// results is everything the run measured.
type results struct {
	opts        options
	started     time.Time
	elapsed     time.Duration
	loadStart   string
	loadEnd     string
	scens       []scenario
	variants    map[string]*variant // by label
	bareNicmux  []time.Duration
	bareHello   []time.Duration
	scalePhases [nVerbs]time.Duration
	stateEmpty  []sample
	stateFull   []sample
}

func (r *results) variant(s scenario, k kind) *variant { return r.variants[s.Name+"/"+k.String()] }

func (r *results) markdown(e *env) string {
	var b strings.Builder
	r.writeFacts(&b, e)
	r.writeVerbs(&b)
	r.writeOwn(&b)
	r.writeBare(&b)
	r.writeScale(&b)
	return b.String()
}

func (r *results) writeFacts(b *strings.Builder, e *env) {
	fmt.Fprintf(b, "# nicmux benchmark\n\n")
	fmt.Fprintf(b, "- date: %s (the run took %s)\n", r.started.UTC().Format(time.RFC3339), r.elapsed.Round(time.Second))
	fmt.Fprintf(b, "- command: `%s` (in test/bench; `make bench` runs it)\n", command())
	fmt.Fprintf(b, "- machine: %s, %d cores, kernel %s; load average %s at the start, %s at the end\n",
		cpuModel(), runtime.NumCPU(), kernel(), r.loadStart, r.loadEnd)
	fmt.Fprintf(b, "- software: %s, %s, %s, reference plugins %s\n",
		runtime.Version(), depVersion("github.com/containerd/go-cni"),
		depVersion("github.com/containernetworking/cni"), pluginVersion(e))
	fmt.Fprintf(b, "- method: %d measured repetitions after one warm-up; each repetition runs every "+
		"(scenario, variant) once, in an order shuffled with a fixed seed (%d); each iteration is a fresh "+
		"container ID in a fresh netns: ADD, CHECK, DEL, each timed around the go-cni/libcni call only. "+
		"Scenarios: seed = eth0 bridge + host-local (default route), eth1 macvlan + host-local + tuning; "+
		"N=n = n macvlans, each on its own veth master, each with host-local on its own /24. "+
		"Every variant has its own IPAM folder, bridge and subnets.\n\n", r.opts.reps, seed)
}

func (r *results) writeVerbs(b *strings.Builder) {
	fmt.Fprintf(b, "## Verb wall time, ms: median (p90)\n\n")
	fmt.Fprintf(b, "direct-serial: one go-cni network per chain, go-cni SetupSerially / Check / Remove. "+
		"direct-parallel: go-cni Setup (concurrent), libcni CHECK and DEL of all networks in goroutines. "+
		"nicmux-*: nicmux as the one go-cni network, `\"parallel\": false` / `true`. "+
		"Ratios are of medians.\n\n")
	r.writeRatios(b, [2][2]kind{{directSerial, nicmuxSerial}, {directParallel, nicmuxParallel}})
	fmt.Fprintf(b, "What starting delegates ahead buys, same run: nicmux with `\"prestart\": false` (noprestart) "+
		"beside the default.\n\n")
	r.writeRatios(b, [2][2]kind{{nicmuxSerialCold, nicmuxSerial}, {nicmuxParallelCold, nicmuxParallel}})
}

// writeRatios writes a table of two pairs of variants per scenario and
// verb: each pair's medians (p90) and the ratio of the second's median to
// the first's.
func (r *results) writeRatios(b *strings.Builder, pairs [2][2]kind) {
	fmt.Fprintf(b, "| scenario | verb |")
	for _, p := range pairs {
		fmt.Fprintf(b, " %s | %s | ratio |", p[0], p[1])
	}
	fmt.Fprintf(b, "\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.scens {
		for verb := range nVerbs {
			fmt.Fprintf(b, "| %s | %s |", s.Name, verbNames[verb])
			for _, p := range pairs {
				base, x := durations(r.variant(s, p[0]).samples, verb), durations(r.variant(s, p[1]).samples, verb)
				fmt.Fprintf(b, " %s | %s | %s |", medP90(base), medP90(x), ratio(median(x), median(base)))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
}

func (r *results) writeOwn(b *strings.Builder) {
	fmt.Fprintf(b, "## nicmux's own cost, from its log: median ms, serial / parallel\n\n")
	fmt.Fprintf(b, "own: nicmux's in-process wall time during which none of its delegate processes was alive "+
		"(a process started ahead counts from its start). "+
		"cpu: nicmux's own CPU time (not its children's). "+
		"wall − delegates: the driver-measured verb time minus nicmux's logged delegate time, "+
		"so it also counts nicmux's process start, configuration parsing and exit. "+
		"peak RSS: the largest peakRSSKB logged (nicmux's own VmHWM).\n\n")
	fmt.Fprintf(b, "| scenario | verb | own | cpu | wall − delegates | peak RSS, MB |\n")
	fmt.Fprintf(b, "|---|---|---:|---:|---:|---:|\n")
	for _, s := range r.scens {
		cs, cp := r.variant(s, nicmuxSerial).costs(), r.variant(s, nicmuxParallel).costs()
		for verb := range nVerbs {
			a, p := cs[verb], cp[verb]
			fmt.Fprintf(b, "| %s | %s | %s / %s | %s / %s | %s / %s | %.1f / %.1f |\n", s.Name, verbNames[verb],
				ms(median(a.own)), ms(median(p.own)), ms(median(a.cpu)), ms(median(p.cpu)),
				ms(median(a.outside)), ms(median(p.outside)),
				float64(a.peakRSSKB)/1024, float64(p.peakRSSKB)/1024)
		}
	}
	b.WriteString("\n")
}

func (r *results) writeBare(b *strings.Builder) {
	fmt.Fprintf(b, "## Bare start (no CNI_COMMAND, empty environment), %d runs each, interleaved\n\n", bareRuns)
	fmt.Fprintf(b, "| binary | median ms | p90 ms |\n|---|---:|---:|\n")
	fmt.Fprintf(b, "| bin/nicmux (prints its version) | %s | %s |\n", ms(median(r.bareNicmux)), ms(p90(r.bareNicmux)))
	fmt.Fprintf(b, "| static Go hello-world (floor) | %s | %s |\n\n", ms(median(r.bareHello)), ms(p90(r.bareHello)))
}

func (r *results) writeScale(b *strings.Builder) {
	fmt.Fprintf(b, "## Scale (seed job, nicmux-parallel)\n\n")
	fmt.Fprintf(b, "%d containers at once, each phase's wall time until the last returned; all succeeded, "+
		"and nothing was left (container links, host-local leases, nicmux state but gc.lock, bridge ports, libcni cache).\n\n", scaleContainers)
	fmt.Fprintf(b, "| phase | wall ms |\n|---|---:|\n")
	for verb := range nVerbs {
		fmt.Fprintf(b, "| %d × %s | %s |\n", scaleContainers, verbNames[verb], ms(r.scalePhases[verb]))
	}
	fmt.Fprintf(b, "\nstateDir holding %d other containers' records vs an empty one, %d interleaved repetitions each; "+
		"ms: median (p90).\n\n", fillCount, len(r.stateEmpty))
	fmt.Fprintf(b, "| verb | empty stateDir | %d containers | ratio |\n|---|---:|---:|---:|\n", fillCount)
	for verb := range nVerbs {
		e, f := durations(r.stateEmpty, verb), durations(r.stateFull, verb)
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", verbNames[verb], medP90(e), medP90(f), ratio(median(f), median(e)))
	}
}

func command() string {
	return strings.TrimSpace("go run . " + strings.Join(os.Args[1:], " "))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func depVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return path + " " + d.Version
			}
		}
	}
	return path + " (unknown version)"
}

// pluginVersion is what the bridge plugin prints when run bare.
func pluginVersion(e *env) string {
	out, _ := exec.Command(e.plugin("bridge")).CombinedOutput()
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "v") {
			return f
		}
	}
	return "(unknown) in " + filepath.Dir(e.plugin("bridge"))
}
