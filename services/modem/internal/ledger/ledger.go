// Package ledger is the modem's durable memory of what it did with each job.
// A job is recorded as attempting before the first AT+CMGS and as done, with
// the result to report, once the outcome is known. A redelivered job is then
// answered from the ledger instead of being sent again. Each entry is its own
// file written with fsync and an atomic rename, so a power cut leaves either
// the old entry or the new one, never a torn one.
package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// State is where a job stands.
type State string

const (
	// Attempting: the send may have started; the outcome is unknown.
	Attempting State = "attempting"
	// Done: the outcome is known and Result holds it.
	Done State = "done"
)

// Entry is one job's record.
type Entry struct {
	JobID     string         `json:"job_id"`
	State     State          `json:"state"`
	Updated   time.Time      `json:"updated"`
	Result    *schema.Result `json:"result,omitempty"`
	Delivered int            `json:"delivered,omitempty"` // JetStream delivery count when attempting began
}

// ErrNotFound means the ledger has no entry for the job.
var ErrNotFound = errors.New("ledger: no entry")

// Ledger stores entries under a directory.
type Ledger struct{ dir string }

// Open creates the directory if needed.
func Open(dir string) (*Ledger, error) {
	d := filepath.Join(dir, "ledger")
	if err := os.MkdirAll(d, 0o750); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &Ledger{dir: d}, nil
}

// fileName maps a job id to a file name that cannot escape the directory.
func (l *Ledger) fileName(jobID string) string {
	var b strings.Builder
	for _, r := range jobID {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "%%%02x", r)
		}
	}
	return filepath.Join(l.dir, b.String()+".json")
}

// Get returns the entry for jobID or ErrNotFound.
func (l *Ledger) Get(jobID string) (Entry, error) {
	b, err := os.ReadFile(l.fileName(jobID))
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("ledger get: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		// A torn file cannot happen with rename; a corrupt one means the disk
		// lied. Treat it as attempting: never resend what may have gone out.
		return Entry{JobID: jobID, State: Attempting}, nil
	}
	return e, nil
}

// Attempting durably records that sending is about to start.
func (l *Ledger) Attempting(jobID string, delivered int) error {
	return l.put(Entry{JobID: jobID, State: Attempting, Delivered: delivered})
}

// Done durably records the job's outcome.
func (l *Ledger) Done(r schema.Result) error {
	return l.put(Entry{JobID: r.JobID, State: Done, Result: &r})
}

// Forget removes an entry. Used when a send was abandoned before any part
// reached the modem, so a later delivery may try again.
func (l *Ledger) Forget(jobID string) error {
	err := os.Remove(l.fileName(jobID))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ledger forget: %w", err)
	}
	return syncDir(l.dir)
}

func (l *Ledger) put(e Entry) error {
	e.Updated = time.Now().UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("ledger put: %w", err)
	}
	name := l.fileName(e.JobID)
	tmp, err := os.CreateTemp(l.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("ledger put: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("ledger put: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ledger put: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ledger put: %w", err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("ledger put: %w", err)
	}
	return syncDir(l.dir)
}

// Prune deletes entries not updated for longer than age. Jobs live at most
// as long as their SMS's TTL plus the broker's retention, so a week is ample.
func (l *Ledger) Prune(age time.Duration) (int, error) {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return 0, fmt.Errorf("ledger prune: %w", err)
	}
	cutoff := time.Now().Add(-age)
	n := 0
	for _, de := range ents {
		info, err := de.Info()
		if err != nil || info.ModTime().After(cutoff) {
			continue
		}
		if os.Remove(filepath.Join(l.dir, de.Name())) == nil {
			n++
		}
	}
	return n, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ledger sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("ledger sync dir: %w", err)
	}
	return nil
}
