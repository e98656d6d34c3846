package ledger

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/shared/schema"
)

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const id = "66cdd7b2e4b0a1c2d3e4f501.1"
	if _, err := l.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on empty ledger: %v, want ErrNotFound", err)
	}
	if err := l.Attempting(id, 1); err != nil {
		t.Fatal(err)
	}
	// A fresh Ledger on the same directory is what a restarted process sees.
	l2, _ := Open(dir)
	e, err := l2.Get(id)
	if err != nil || e.State != Attempting || e.Delivered != 1 {
		t.Fatalf("after Attempting: %+v, %v", e, err)
	}
	r := schema.Result{V: 1, JobID: id, SmsID: "66cdd7b2e4b0a1c2d3e4f501", Status: schema.StatusSent, References: []int{7, 8}}
	if err := l2.Done(r); err != nil {
		t.Fatal(err)
	}
	e, err = l.Get(id)
	if err != nil || e.State != Done || e.Result == nil || e.Result.TrackingID() != "mr:7,8" {
		t.Fatalf("after Done: %+v, %v", e, err)
	}
	if err := l.Forget(id); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Forget: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "ledger", ".tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

func TestHostileJobIDsStayInside(t *testing.T) {
	dir := t.TempDir()
	l, _ := Open(dir)
	for _, id := range []string{"../../etc/passwd", "a/b", "..", "", "x\x00y", "ü.1"} {
		if err := l.Attempting(id, 1); err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if e, err := l.Get(id); err != nil || e.JobID != id {
			t.Fatalf("%q: got %+v, %v", id, e, err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "ledger"))
	if len(ents) != 6 {
		t.Fatalf("want 6 distinct entries inside the ledger dir, got %d", len(ents))
	}
	if _, err := os.Stat(filepath.Join(dir, "etc")); err == nil {
		t.Fatal("an id escaped the ledger directory")
	}
}

func TestCorruptEntryCountsAsAttempting(t *testing.T) {
	dir := t.TempDir()
	l, _ := Open(dir)
	if err := os.WriteFile(l.fileName("j.1"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := l.Get("j.1")
	if err != nil || e.State != Attempting {
		t.Fatalf("corrupt entry: %+v, %v; want Attempting so it is never resent", e, err)
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	l, _ := Open(dir)
	_ = l.Attempting("old.1", 1)
	_ = l.Attempting("new.1", 1)
	old := time.Now().Add(-10 * 24 * time.Hour)
	if err := os.Chtimes(l.fileName("old.1"), old, old); err != nil {
		t.Fatal(err)
	}
	n, err := l.Prune(7 * 24 * time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	if _, err := l.Get("old.1"); !errors.Is(err, ErrNotFound) {
		t.Fatal("old entry survived")
	}
	if _, err := l.Get("new.1"); err != nil {
		t.Fatal("new entry pruned")
	}
}
