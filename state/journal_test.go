package state

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// slotsOf returns, by slot, the containers plans.slots holds plans of.
func slotsOf(t *testing.T, dir string) map[int]string {
	t.Helper()
	out := map[int]string{}
	f, err := os.Open(filepath.Join(dir, journalFile))
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	j := &journal{f: f}
	for i := 0; i < slotCount; i++ {
		sl, err := j.readSlot(i)
		if err != nil {
			t.Fatal(err)
		}
		if sl.id != "" {
			out[i] = sl.id
		}
	}
	return out
}

// idsHomedAt returns n container IDs whose slot probing starts at the same
// slot.
func idsHomedAt(n int) []string {
	by := map[int][]string{}
	for i := 0; ; i++ {
		id := fmt.Sprintf("c%d", i)
		h := home(id)
		by[h] = append(by[h], id)
		if len(by[h]) == n {
			return by[h]
		}
	}
}

// TestJournalHoldsThePlan: Begin makes the plan durable in a slot, whose
// plan is container.json's.
func TestJournalHoldsThePlan(t *testing.T) {
	s, dir := newStore(t)
	attach(t, s, "c1")
	slots := slotsOf(t, dir)
	if len(slots) != 1 || slots[home("c1")] != "c1" {
		t.Fatalf("slots = %v, want c1 at %d", slots, home("c1"))
	}
	f, err := os.Open(filepath.Join(dir, journalFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	j := &journal{f: f}
	sl, err := j.readSlot(home("c1"))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := os.ReadFile(filepath.Join(dir, "containers", "c1", planFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := j.payload(home("c1"), sl); string(got) != string(plan) {
		t.Errorf("the slot holds\n%s\nwant container.json's\n%s", got, plan)
	}
	fi, err := os.Stat(filepath.Join(dir, journalFile))
	if err != nil || fi.Size() != slotSize*slotCount || fi.Mode().Perm() != 0o600 {
		t.Errorf("plans.slots: %v, %v", fi, err)
	}
	// Removing the container frees its slot.
	if err := s.Remove("c1"); err != nil {
		t.Fatal(err)
	}
	if slots := slotsOf(t, dir); len(slots) != 0 {
		t.Errorf("slots after Remove = %v", slots)
	}
}

// TestJournalRecovers: a crash that loses the page cache loses
// container.json (or the whole folder); the first verb of the next boot
// puts the plan back from its slot, once.
func TestJournalRecovers(t *testing.T) {
	for name, lose := range map[string]func(dir string) error{
		"plan lost": func(dir string) error { return os.Remove(filepath.Join(dir, "containers", "c1", planFile)) },
		"plan torn": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "containers", "c1", planFile), []byte(`{"kind":`), 0o600)
		},
		"folder lost": func(dir string) error { return os.RemoveAll(filepath.Join(dir, "containers", "c1")) },
	} {
		t.Run(name, func(t *testing.T) {
			s, dir := newStore(t)
			want := attach(t, s, "c1")
			attach(t, s, "c2")
			// The plan is there to lose, and is lost.
			if _, err := os.Stat(filepath.Join(dir, "containers", "c1", planFile)); err != nil {
				t.Fatal(err)
			}
			if err := lose(dir); err != nil {
				t.Fatal(err)
			}
			// The next boot.
			writeRaw(t, filepath.Join(dir, bootFile), []byte("another-boot\n"))
			s2 := openStore(t, dir)
			rec := s2.Load("c1")
			if rec.Status != Whole || rec.Plan == nil || rec.Plan.Created != want.Created || len(rec.Interfaces) != 3 {
				t.Fatalf("Load after recovery = %+v", rec)
			}
			if name == "folder lost" && rec.Complete {
				t.Error("a recovered plan says complete: the mark was lost with the folder")
			}
			if b, _ := os.ReadFile(filepath.Join(dir, bootFile)); strings.TrimSpace(string(b)) != currentBoot() {
				t.Errorf("plans.boot = %q after recovery", b)
			}
			// c2 was untouched.
			if rec := load(t, s2, "c2"); !rec.Complete {
				t.Error("c2 lost its completion mark")
			}
		})
	}
}

// TestJournalNoRecoveryInTheSameBoot: nicmux killed (not the host) loses
// nothing; a plan removed within the boot stays removed.
func TestJournalNoRecoveryInTheSameBoot(t *testing.T) {
	s, dir := newStore(t)
	attach(t, s, "c1")
	_ = os.RemoveAll(filepath.Join(dir, "containers", "c1"))
	s2 := openStore(t, dir)
	if rec := s2.Load("c1"); rec.Status != Missing || rec.Plan != nil || len(rec.Interfaces) > 0 {
		t.Errorf("Load = %+v; want nothing", rec)
	}
}

// TestJournalKeepsOthersSlots: a container whose slot is taken by another
// live container goes on to the next.
func TestJournalKeepsOthersSlots(t *testing.T) {
	s, dir := newStore(t)
	ids := idsHomedAt(3)
	for _, id := range ids {
		attach(t, s, id)
	}
	h := home(ids[0])
	slots := slotsOf(t, dir)
	for k, id := range ids {
		if got := slots[(h+k)%slotCount]; got != id {
			t.Errorf("slot %d holds %q, want %s", (h+k)%slotCount, got, id)
		}
	}
	// The first goes; a fourth takes its slot back.
	if err := s.Remove(ids[0]); err != nil {
		t.Fatal(err)
	}
	fourth := ""
	for i := 0; fourth == ""; i++ {
		if id := fmt.Sprintf("d%d", i); home(id) == h {
			fourth = id
		}
	}
	attach(t, s, fourth)
	if got := slotsOf(t, dir)[h]; got != fourth {
		t.Errorf("slot %d holds %q, want %s", h, got, fourth)
	}
}

// TestJournalStaleSlotIsTaken: a slot whose container's folder is gone
// (removed without Remove: a crash) is free.
func TestJournalStaleSlotIsTaken(t *testing.T) {
	s, dir := newStore(t)
	ids := idsHomedAt(2)
	attach(t, s, ids[0])
	_ = os.RemoveAll(filepath.Join(dir, "containers", ids[0]))
	attach(t, s, ids[1])
	if got := slotsOf(t, dir)[home(ids[0])]; got != ids[1] {
		t.Errorf("slot holds %q, want %s", got, ids[1])
	}
}

// TestJournalConcurrentBegins: containers recorded at the same time each
// get a slot of their own.
func TestJournalConcurrentBegins(t *testing.T) {
	_, dir := newStore(t)
	ids := idsHomedAt(8)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			txn, err := s.Begin(samplePlan(id))
			if err != nil {
				t.Error(err)
				return
			}
			txn.Close()
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for _, id := range slotsOf(t, dir) {
		seen[id]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("%s holds %d slots, want 1", id, seen[id])
		}
	}
}

// TestJournalLargePlan: a plan larger than a slot is fsynced instead.
func TestJournalLargePlan(t *testing.T) {
	s, dir := newStore(t)
	p := samplePlan("big")
	p.Interfaces = nil
	for i := 0; len(p.Interfaces)*300 < slotSize; i++ {
		p.Interfaces = append(p.Interfaces, samplePlanned(fmt.Sprintf("n%d", i), "net"))
	}
	txn := begin(t, s, p)
	txn.Close()
	if slots := slotsOf(t, dir); len(slots) != 0 {
		t.Errorf("slots = %v, want none", slots)
	}
	if rec := load(t, s, "big"); len(rec.Interfaces) != len(p.Interfaces) {
		t.Errorf("%d interfaces, want %d", len(rec.Interfaces), len(p.Interfaces))
	}
}

// TestJournalTmpSwept: a journal whose making was cut short (nicmux
// killed) leaves its temporary file; the next verb removes it.
func TestJournalTmpSwept(t *testing.T) {
	_, dir := newStore(t)
	tmp := filepath.Join(dir, journalTmp)
	writeRaw(t, tmp, make([]byte, 4096))
	openStore(t, dir)
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("%s left: %v", tmp, err)
	}
}

// TestJournalUnreadable: a journal cut short (by hand, or by a file
// system's repair) refuses no ADD: the plan is fsynced instead.
func TestJournalUnreadable(t *testing.T) {
	s, dir := newStore(t)
	attach(t, s, "c0") // makes the journal
	if err := os.Truncate(filepath.Join(dir, journalFile), 0); err != nil {
		t.Fatal(err)
	}
	begin(t, s, samplePlan("c1"))
	if rec := load(t, openStore(t, dir), "c1"); rec.Plan == nil {
		t.Error("no plan")
	}
}

// TestJournalRecoverySkipsUnsafeFolder: a link planted at a lost
// container's folder is refused by the verbs on that container (DEL removes
// it), not by every verb of the boot: the other plans are put back.
func TestJournalRecoverySkipsUnsafeFolder(t *testing.T) {
	s, dir := newStore(t)
	attach(t, s, "c1")
	attach(t, s, "c2")
	link := containerDir(dir, "c1")
	for _, id := range []string{"c1", "c2"} {
		if err := os.RemoveAll(containerDir(dir, id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	writeRaw(t, filepath.Join(dir, bootFile), []byte("another-boot\n"))
	s2 := openStore(t, dir)
	if rec := load(t, s2, "c2"); rec.Plan == nil {
		t.Error("c2's plan was not put back")
	}
	rec := s2.Load("c1")
	if rec.Status != Unsafe {
		t.Errorf("Load: status %v, want Unsafe", rec.Status)
	}
	assertUnsafe(t, rec.Err, link)
}
