package ledger

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/shared/schema"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func job(id string, claim int) schema.Job {
	return schema.Job{V: 1, ID: schema.JobID(id, claim), SmsID: id, Tenant: "tenant-a",
		PhoneNumber: "+40722000111", ExpiresAt: t0.Add(30 * time.Minute)}
}

func open(t *testing.T, dir string) *Ledger {
	t.Helper()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLifecycleSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	const id = "66cdd7b2e4b0a1c2d3e4f501"
	if _, err := l.Get("tenant-a", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on empty ledger: %v, want ErrNotFound", err)
	}
	if err := l.Attempting(job(id, 1), 1, t0); err != nil {
		t.Fatal(err)
	}
	// A fresh Ledger on the same directory is what a restarted process sees.
	l2 := open(t, dir)
	e, err := l2.Get("tenant-a", id)
	if err != nil || e.State != Attempting || e.Delivered != 1 || e.JobID != id+".1" || !e.Created.Equal(t0) {
		t.Fatalf("after Attempting: %+v, %v", e, err)
	}
	if e.Phone == "+40722000111" || e.Phone == "" {
		t.Fatalf("phone stored as %q, want it masked", e.Phone)
	}
	// The key is the SMS, not the claim, and not another tenant's SMS.
	if _, err := l2.Get("tenant-b", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant's SMS with the same id: %v", err)
	}
	r := schema.Result{V: 1, JobID: id + ".1", SmsID: id, Tenant: "tenant-a", Status: schema.StatusSent, References: []int{7, 8}}
	if err := l2.Done(job(id, 1), r, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	l3 := open(t, dir)
	e, err = l3.Get("tenant-a", id)
	if err != nil || e.State != Done || e.Result == nil || e.Result.TrackingID() != "mr:7,8" || !e.Created.Equal(t0) {
		t.Fatalf("after Done: %+v, %v", e, err)
	}
	if err := l3.Forget("tenant-a", id); err != nil {
		t.Fatal(err)
	}
	if _, err := open(t, dir).Get("tenant-a", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Forget: %v", err)
	}
}

// A power cut tears at most the last record: that change never happened,
// and everything before it is intact.
func TestTornTailIsIgnored(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	_ = l.Attempting(job("a", 1), 1, t0)
	_ = l.Attempting(job("b", 1), 1, t0)
	off := l.off
	l.Close()
	f, _ := os.OpenFile(filepath.Join(dir, "ledger", journalName), os.O_RDWR, 0)
	// Half of a third record: a plausible length, a checksum that cannot match.
	if _, err := f.WriteAt([]byte{40, 0, 0, 0, 1, 2, 3, 4, '{', '"', 'k'}, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	l2 := open(t, dir)
	if _, err := l2.Get("tenant-a", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Get("tenant-a", "b"); err != nil {
		t.Fatal(err)
	}
	if l2.off != off {
		t.Fatalf("next record at %d, want %d (over the torn one)", l2.off, off)
	}
	// The next write replaces the torn record and is read back.
	_ = l2.Attempting(job("c", 1), 1, t0)
	if _, err := open(t, dir).Get("tenant-a", "c"); err != nil {
		t.Fatal(err)
	}
}

func TestHostileIDsAndTenants(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	for _, id := range []string{"../../etc/passwd", "a/b", "..", "x\x00y", "ü.1", "\n"} {
		j := job(id, 1)
		j.Tenant = id
		if err := l.Attempting(j, 1, t0); err != nil {
			t.Fatalf("%q: %v", id, err)
		}
	}
	l2 := open(t, dir)
	for _, id := range []string{"../../etc/passwd", "a/b", "..", "x\x00y", "ü.1", "\n"} {
		if e, err := l2.Get(id, id); err != nil || e.SmsID != id {
			t.Fatalf("%q: got %+v, %v", id, e, err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "ledger"))
	if len(ents) != 1 {
		t.Fatalf("want only the journal in the ledger dir, got %d entries", len(ents))
	}
}

// Age is the time stored in the entry (the trusted clock), never a file
// time; and no entry goes before its SMS's expiry plus the margin.
func TestPruneUsesEntryTimes(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	old, longTTL, fresh := job("old", 1), job("long", 1), job("fresh", 1)
	longTTL.ExpiresAt = t0.Add(72 * time.Hour)
	_ = l.Attempting(old, 1, t0)
	_ = l.Attempting(longTTL, 1, t0)
	_ = l.Attempting(fresh, 1, t0.Add(23*time.Hour))
	n, err := l.Prune(t0.Add(25*time.Hour), 24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	l2 := open(t, dir) // pruning rewrote the journal; a restart sees the same
	if _, err := l2.Get("tenant-a", "old"); !errors.Is(err, ErrNotFound) {
		t.Fatal("old entry survived")
	}
	for _, id := range []string{"long", "fresh"} {
		if _, err := l2.Get("tenant-a", id); err != nil {
			t.Fatalf("%s pruned: %v", id, err)
		}
	}
	if n, _ := l2.Prune(t0.Add(73*time.Hour+time.Minute), 24*time.Hour); n != 2 {
		t.Fatalf("second prune removed %d, want 2", n)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "ledger", ".tmp-*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

// Superseded records are dropped by compaction, which keeps every live
// entry: the journal does not grow without bound.
func TestCompactKeepsLiveEntries(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	r := schema.Result{V: 1, Status: schema.StatusSent}
	for i := range 300 {
		j := job(string(rune('A'+i%26)), 1) // 26 SMS, each written many times
		if err := l.Done(j, r, t0); err != nil {
			t.Fatal(err)
		}
	}
	before := l.off
	if _, err := l.Prune(t0, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if l.off*5 > before {
		t.Fatalf("journal %d bytes after compaction, %d before", l.off, before)
	}
	l2 := open(t, dir)
	if got := len(l2.Entries()); got != 26 {
		t.Fatalf("after compaction %d entries, want 26", got)
	}
	_ = l2.Attempting(job("new", 1), 1, t0) // appends after the compacted records
	if _, err := open(t, dir).Get("tenant-a", "new"); err != nil {
		t.Fatal(err)
	}
}

// Entries written by the older one-file-per-claim format are imported, so
// an upgrade never resends what the old version sent or tried.
func TestLegacyFilesAreImported(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "ledger")
	_ = os.MkdirAll(d, 0o750)
	done, _ := json.Marshal(map[string]any{"job_id": "aaa.1", "state": "done", "updated": t0,
		"result": schema.Result{V: 1, JobID: "aaa.1", SmsID: "aaa", Tenant: "t", Status: schema.StatusSent}})
	_ = os.WriteFile(filepath.Join(d, "aaa%2e1.json"), done, 0o600)
	_ = os.WriteFile(filepath.Join(d, "bbb%2e2.json"), []byte(`{"job_id":"bbb.2","state":"attempting"}`), 0o600)
	_ = os.WriteFile(filepath.Join(d, "ccc%2e1.json"), []byte(`{not json`), 0o600)
	l := open(t, dir)
	if e, err := l.Get("t", "aaa"); err != nil || e.State != Done || e.Result.Status != schema.StatusSent {
		t.Fatalf("done entry: %+v %v", e, err)
	}
	if e, err := l.Get("any-tenant", "bbb"); err != nil || e.State != Attempting {
		t.Fatalf("attempting entry: %+v %v", e, err)
	}
	if e, err := l.Get("any-tenant", "ccc%2e1"); err != nil || e.State != Attempting {
		t.Fatalf("corrupt entry must count as attempting: %+v %v", e, err)
	}
	if files, _ := filepath.Glob(filepath.Join(d, "*.json")); len(files) != 0 {
		t.Fatalf("legacy files left: %v", files)
	}
}
