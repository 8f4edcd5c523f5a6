package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	gocni "github.com/containerd/go-cni"

	"github.com/nicmux/nicmux/state"
	"github.com/nicmux/nicmux/test/testworld"
)

const (
	scaleContainers = 64     // containers attached at once
	fillCount       = 10_000 // containers already in the stateDir
)

func seedScenario() scenario { return scenarios(nil)[0] }

// scaleConcurrent attaches scaleContainers containers through nicmux (seed
// job) at once, checks them at once, detaches them at once, and asserts
// that nothing is left. It returns each phase's wall time.
func scaleConcurrent(e *env) [nVerbs]time.Duration {
	v := newVariant(e, seedScenario(), nicmuxParallel, []string{e.addMaster()})
	v.label = fmt.Sprintf("scale %d/%s", scaleContainers, v.kind)
	v.iterate(-1) // the bridge exists before the containers race for it
	ids, nss := make([]string, scaleContainers), make([]string, scaleContainers)
	for i := range ids {
		ids[i], nss[i] = e.name("c"), e.newNetns()
	}
	results := make([]*gocni.Result, scaleContainers)
	var phases [nVerbs]time.Duration
	phases[vADD] = v.concurrently(vADD, func(ctx context.Context, i int) (err error) {
		results[i], err = v.add(ctx, ids[i], nss[i])
		return err
	})
	for i := range ids {
		must(v.verifyAdded(results[i], nss[i]), "%s: after ADD of %s", v.label, ids[i])
	}
	phases[vCHECK] = v.concurrently(vCHECK, func(ctx context.Context, i int) error { return v.check(ctx, ids[i], nss[i]) })
	phases[vDEL] = v.concurrently(vDEL, func(ctx context.Context, i int) error { return v.del(ctx, ids[i], nss[i]) })
	for i, ns := range nss {
		must(verifyEmpty(ns), "%s: after DEL of %s", v.label, ids[i])
		e.destroyNetns(ns)
		v.samples = append(v.samples, sample{id: ids[i], d: phases})
	}
	v.assertNoLeaks(nil)
	v.costs() // every verb of every container logged "ok", none a warning
	return phases
}

// concurrently runs f for every container at once and returns the wall time
// until the last one returned; any failure ends the run.
func (v *variant) concurrently(verb int, f func(ctx context.Context, i int) error) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
	defer cancel()
	errs := make([]error, scaleContainers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range scaleContainers {
		wg.Go(func() { errs[i] = f(ctx, i) })
	}
	wg.Wait()
	d := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		fatalf("%s: %s of %d containers at once: %v%s", v.label, verbNames[verb], scaleContainers, err, v.logTail())
	}
	return d
}

// stateBench measures the seed job through nicmux with fillCount
// containers already in its stateDir (full) and with an empty one (empty),
// interleaved.
type stateBench struct {
	empty, full *variant
	prefix      string // of the filled containers' IDs
}

// newStateBench makes both variants, runs each once and fills full's
// stateDir.
func newStateBench(e *env) *stateBench {
	master := e.addMaster()
	sb := &stateBench{
		empty: newVariant(e, seedScenario(), nicmuxParallel, []string{master}),
		full:  newVariant(e, seedScenario(), nicmuxParallel, []string{master}),
	}
	sb.empty.label, sb.full.label = "stateDir empty", fmt.Sprintf("stateDir with %d containers", fillCount)
	sb.empty.iterate(-1)
	sb.full.iterate(-1)
	sb.prefix = fillState(e, sb.full)
	return sb
}

// measure runs reps rounds of run run, each running both variants in a
// shuffled order, and asserts that each left nothing but the filled
// records.
func (sb *stateBench) measure(reps, run int) {
	rng := rand.New(rand.NewPCG(seed+uint64(run), seed))
	vs := []*variant{sb.empty, sb.full}
	for r := range reps {
		for _, i := range rng.Perm(len(vs)) {
			vs[i].samples = append(vs[i].samples, vs[i].iterate(run))
		}
		progress("run %d, stateDir round %d/%d", run+1, r+1, reps)
	}
	sb.empty.assertNoLeaks(nil)
	sb.full.assertNoLeaks(func(rel string) bool { return strings.HasPrefix(rel, "containers/"+sb.prefix) })
	assertFilled(sb.full, sb.prefix)
	sb.empty.costs()
	sb.full.costs()
}

// fillState writes fillCount containers' records into v's stateDir, copied
// from a real ADD's with the container ID and netns path rewritten. It
// returns the prefix of their IDs.
func fillState(e *env, v *variant) string {
	tmpl, files := recordTemplate(e, v)
	prefix := "nmbfill" + e.tag + "-"
	for i := range fillCount {
		id := fmt.Sprintf("%s%06d", prefix, i)
		dir := testworld.ContainerDir(v.state, id)
		must(os.MkdirAll(dir, 0o700), "filling the stateDir")
		for name, b := range files {
			b = bytes.ReplaceAll(b, []byte(tmpl.id), []byte(id))
			b = bytes.ReplaceAll(b, []byte(tmpl.ns), []byte("/run/netns/"+id))
			must(os.WriteFile(filepath.Join(dir, name), b, 0o600), "filling the stateDir")
		}
	}
	for _, id := range []string{prefix + "000000", fmt.Sprintf("%s%06d", prefix, fillCount-1)} {
		must(loadable(v.state, id), "a record written to fill the stateDir does not load")
	}
	progress("filled %s with %d containers' records", v.state, fillCount)
	return prefix
}

type container struct{ id, ns string }

// recordTemplate runs a real ADD and returns the container's record files,
// then removes the container.
func recordTemplate(e *env, v *variant) (container, map[string][]byte) {
	c := container{id: e.name("tmpl"), ns: e.newNetns()}
	defer e.destroyNetns(c.ns)
	ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
	defer cancel()
	_, err := v.add(ctx, c.id, c.ns)
	must(err, "%s: ADD of the template container", v.label)
	dir := testworld.ContainerDir(v.state, c.id)
	entries, err := os.ReadDir(dir)
	must(err, "reading the template's records")
	files := map[string][]byte{}
	for _, en := range entries {
		files[en.Name()], err = os.ReadFile(filepath.Join(dir, en.Name()))
		must(err, "reading the template's records")
	}
	names := slices.Sorted(maps.Keys(files))
	if !slices.Equal(names, []string{"complete.json", "container.json", "if-eth0.json", "if-eth1.json"}) {
		fatalf("the template container's records are %v, want complete.json, container.json, if-eth0.json, if-eth1.json", names)
	}
	must(v.del(ctx, c.id, c.ns), "%s: DEL of the template container", v.label)
	return c, files
}

// loadable reads a container's records with nicmux's own store.
func loadable(dir, id string) error {
	s, err := state.Open(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	rec := s.Load(id)
	if rec.Status != state.Whole {
		return fmt.Errorf("container %s: record %v: %v", id, rec.Status, rec.Err)
	}
	for _, it := range rec.Interfaces {
		if it.Result == nil || it.ResultErr != nil {
			return fmt.Errorf("container %s: %s has no readable result", id, it.IfName)
		}
	}
	return nil
}

// assertFilled checks that every filled container is still in the stateDir.
func assertFilled(v *variant, prefix string) {
	entries, err := os.ReadDir(testworld.ContainersDir(v.state))
	must(err, "listing %s", v.state)
	n := 0
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), prefix) {
			n++
		}
	}
	if n != fillCount {
		fatalf("%s: %d filled containers left in the stateDir, want %d", v.label, n, fillCount)
	}
}
