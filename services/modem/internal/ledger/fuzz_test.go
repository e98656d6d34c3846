package ledger

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzJournal feeds arbitrary bytes as a journal: Open must not fail or
// panic, and a write after it must be read back by the next Open.
func FuzzJournal(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{255, 255, 255, 255, 0, 0, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 0x5b, 0x6b, 0x2b, 0x36, '{', '}'})
	f.Add([]byte("\x10\x00\x00\x00garbage-garbage-garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		_ = os.MkdirAll(filepath.Join(dir, "ledger"), 0o750)
		_ = os.WriteFile(filepath.Join(dir, "ledger", journalName), data, 0o600)
		l, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Attempting(job("z", 1), 1, t0); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l2, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		if _, err := l2.Get("tenant-a", "z"); err != nil {
			t.Fatalf("record written after a hostile journal is lost: %v", err)
		}
	})
}
