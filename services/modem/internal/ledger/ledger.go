// Package ledger is the modem's durable memory of what it did with each SMS.
// An SMS is identified by its tenant and upstream Id (schema.SMSKey), not
// by the claim that brought it: the API hands the same SMS out again after
// its trust timeout, and every later claim must be answered with the first
// outcome instead of a second send. An SMS is recorded as attempting before
// its first AT+CMGS and as done, with the result to report, once the outcome
// is known.
//
// The ledger is one append-only journal: each change is a framed record
// (length, CRC-32C, JSON) written into space the file already has, then
// fdatasync'ed. Writing into preallocated space changes no file metadata,
// so a change costs one or two data pages on the SD card instead of the
// inode, directory and journal blocks a file per entry would. A power cut
// can only tear the last record, which Open then ignores: that change never
// happened, and the send it guarded never started. Pruning rewrites the
// live entries into a fresh file (write, fsync, rename, fsync the directory).
package ledger

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// State is where an SMS stands.
type State string

const (
	// Attempting: the send may have started; the outcome is unknown.
	Attempting State = "attempting"
	// Done: the outcome is known and Result holds it.
	Done State = "done"
)

// Entry is one SMS's record. Times are on the trusted clock (the SMS API's),
// never file times.
type Entry struct {
	Key       string         `json:"key"`
	SmsID     string         `json:"sms_id"`
	Tenant    string         `json:"tenant"`
	JobID     string         `json:"job_id"`          // the claim that sent, or tried to
	Phone     string         `json:"phone,omitempty"` // masked
	State     State          `json:"state"`
	Delivered int            `json:"delivered,omitempty"` // JetStream delivery count when attempting began
	Created   time.Time      `json:"created"`
	Updated   time.Time      `json:"updated"`
	Expires   time.Time      `json:"expires"` // the SMS's own expiry
	Result    *schema.Result `json:"result,omitempty"`
	Removed   bool           `json:"removed,omitempty"` // a tombstone in the journal
}

// ErrNotFound means the ledger has no entry for the SMS.
var ErrNotFound = errors.New("ledger: no entry")

const (
	journalName = "journal"
	headerLen   = 8
	// growBy is how much zeroed space is added when the journal runs out:
	// about three thousand records.
	growBy = 1 << 20
	// maxRecord bounds one record; a result carries at most a few hundred
	// bytes of reason and references.
	maxRecord = 64 << 10
	// expiryMargin keeps an entry at least this long past its SMS's expiry,
	// covering the API's trust timeout and clock error: before then the API
	// could still hand the SMS out again.
	expiryMargin = time.Hour
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Ledger is safe for concurrent use.
type Ledger struct {
	dir string

	mu      sync.Mutex
	f       *os.File
	off     int64 // where the next record goes
	size    int64 // bytes of zeroed space the file has
	entries map[string]Entry
}

// Open reads (or creates) the journal under dir/ledger.
func Open(dir string) (*Ledger, error) {
	d := filepath.Join(dir, "ledger")
	if err := os.MkdirAll(d, 0o750); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	l := &Ledger{dir: d, entries: map[string]Entry{}}
	f, err := os.OpenFile(filepath.Join(d, journalName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	l.f = f
	if err := l.load(); err != nil {
		f.Close()
		return nil, err
	}
	if err := l.importLegacy(); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// Close closes the journal.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// load replays the journal; it stops at the first record that is absent,
// torn or corrupt.
func (l *Ledger) load() error {
	data, err := io.ReadAll(l.f)
	if err != nil {
		return fmt.Errorf("ledger read: %w", err)
	}
	l.size = int64(len(data))
	off := 0
	for off+headerLen <= len(data) {
		// Bounded as uint32 first: on a 32-bit Pi int(0xFFFFFFFF) is -1.
		n32 := binary.LittleEndian.Uint32(data[off:])
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n32 == 0 || n32 > maxRecord || off+headerLen+int(n32) > len(data) {
			break
		}
		n := int(n32)
		payload := data[off+headerLen : off+headerLen+n]
		if crc32.Checksum(payload, crcTable) != sum {
			break
		}
		var e Entry
		if json.Unmarshal(payload, &e) != nil || e.Key == "" {
			break
		}
		l.apply(e)
		off += headerLen + n
	}
	l.off = int64(off)
	return nil
}

func (l *Ledger) apply(e Entry) {
	if e.Removed {
		delete(l.entries, e.Key)
		return
	}
	l.entries[e.Key] = e
}

// Get returns the entry for the SMS or ErrNotFound.
func (l *Ledger) Get(tenant, smsID string) (Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.entries[schema.SMSKey(tenant, smsID)]; ok {
		return e, nil
	}
	if e, ok := l.entries[legacyKey(smsID)]; ok {
		return e, nil
	}
	return Entry{}, ErrNotFound
}

// Attempting durably records that sending the job's SMS is about to start.
func (l *Ledger) Attempting(job schema.Job, delivered int, now time.Time) error {
	return l.put(Entry{
		Key: schema.SMSKey(job.Tenant, job.SmsID), SmsID: job.SmsID, Tenant: job.Tenant, JobID: job.ID,
		Phone: logging.MaskPhone(job.PhoneNumber), State: Attempting, Delivered: delivered,
		Created: now, Updated: now, Expires: job.ExpiresAt,
	})
}

// Done durably records the outcome of the job's SMS.
func (l *Ledger) Done(job schema.Job, r schema.Result, now time.Time) error {
	e := Entry{
		Key: schema.SMSKey(job.Tenant, job.SmsID), SmsID: job.SmsID, Tenant: job.Tenant, JobID: job.ID,
		Phone: logging.MaskPhone(job.PhoneNumber), State: Done, Result: &r,
		Created: now, Updated: now, Expires: job.ExpiresAt,
	}
	l.mu.Lock()
	if old, ok := l.entries[e.Key]; ok && !old.Created.IsZero() {
		e.Created = old.Created
	}
	l.mu.Unlock()
	return l.put(e)
}

// Forget removes the SMS's entry. Used when a send was abandoned before any
// part reached the modem, so a later delivery may try again.
func (l *Ledger) Forget(tenant, smsID string) error {
	return l.put(Entry{Key: schema.SMSKey(tenant, smsID), Removed: true})
}

// Entries returns every entry, newest first.
func (l *Ledger) Entries() []Entry {
	l.mu.Lock()
	out := make([]Entry, 0, len(l.entries))
	for _, e := range l.entries {
		out = append(out, e)
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b Entry) int { return b.Updated.Compare(a.Updated) })
	return out
}

func (l *Ledger) put(e Entry) error {
	payload, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("ledger put: %w", err)
	}
	if len(payload) > maxRecord {
		return fmt.Errorf("ledger put: record of %d bytes is over %d", len(payload), maxRecord)
	}
	// The record is followed by a zero header in the same write, so the end
	// of the journal is always marked, even over the remains of a torn record.
	rec := make([]byte, headerLen+len(payload)+headerLen)
	binary.LittleEndian.PutUint32(rec, uint32(len(payload)))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(payload, crcTable))
	copy(rec[headerLen:], payload)

	l.mu.Lock()
	defer l.mu.Unlock()
	if need := l.off + int64(len(rec)); need > l.size {
		if err := l.grow(need); err != nil {
			return err
		}
	}
	if _, err := l.f.WriteAt(rec, l.off); err != nil {
		return fmt.Errorf("ledger put: %w", err)
	}
	if err := fdatasync(l.f); err != nil {
		return fmt.Errorf("ledger put: %w", err)
	}
	l.off += int64(len(rec) - headerLen)
	l.apply(e)
	return nil
}

// grow appends zeroed space (real zeros, not a hole or an unwritten extent,
// so later writes into it change no metadata) and makes the new size durable.
func (l *Ledger) grow(need int64) error {
	n := max(growBy, need-l.size)
	if _, err := l.f.WriteAt(make([]byte, n), l.size); err != nil {
		return fmt.Errorf("ledger grow: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("ledger grow: %w", err)
	}
	l.size += n
	return nil
}

// Prune forgets entries that no claim of their SMS can need any more: older
// than retention and past their SMS's expiry by a margin (now is on the
// trusted clock). It rewrites the journal with the live entries when that
// frees space, and returns how many entries it removed.
func (l *Ledger) Prune(now time.Time, retention time.Duration) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	removed := 0
	for k, e := range l.entries {
		if now.After(e.Created.Add(retention)) && now.After(e.Expires.Add(expiryMargin)) {
			delete(l.entries, k)
			removed++
		}
	}
	if removed == 0 && l.off < l.size/2 {
		return 0, nil
	}
	return removed, l.compact()
}

// compact writes the live entries to a new journal and swaps it in.
func (l *Ledger) compact() error {
	keys := make([]string, 0, len(l.entries))
	for k := range l.entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var buf []byte
	for _, k := range keys {
		payload, err := json.Marshal(l.entries[k])
		if err != nil {
			return fmt.Errorf("ledger compact: %w", err)
		}
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(payload)))
		buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(payload, crcTable))
		buf = append(buf, payload...)
	}
	off := int64(len(buf))
	size := (off/growBy + 1) * growBy
	buf = append(buf, make([]byte, size-off)...)
	tmp, err := os.CreateTemp(l.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("ledger compact: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(buf); err != nil {
		tmp.Close()
		return fmt.Errorf("ledger compact: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ledger compact: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(l.dir, journalName)); err != nil {
		tmp.Close()
		return fmt.Errorf("ledger compact: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		tmp.Close()
		return err
	}
	l.f.Close()
	l.f, l.off, l.size = tmp, off, size
	return nil
}

// legacyKey is where an entry of the older one-file-per-claim format that
// recorded no tenant is kept: found by SMS id alone.
func legacyKey(smsID string) string { return "legacy." + smsID }

// importLegacy moves entries of the older format (one JSON file per claim,
// named by job id "<sms id>.<claim>") into the journal, then removes the
// files, so an upgrade never resends what the old version sent or tried.
func (l *Ledger) importLegacy() error {
	files, err := filepath.Glob(filepath.Join(l.dir, "*.json"))
	if err != nil || len(files) == 0 {
		return err
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("ledger import %s: %w", name, err)
		}
		var old struct {
			JobID   string         `json:"job_id"`
			State   State          `json:"state"`
			Updated time.Time      `json:"updated"`
			Result  *schema.Result `json:"result"`
		}
		if json.Unmarshal(b, &old) != nil || old.JobID == "" {
			// Unreadable: keep the conservative reading, never resend.
			old.State = Attempting
			old.JobID = strings.TrimSuffix(filepath.Base(name), ".json")
		}
		smsID, _, _ := strings.Cut(old.JobID, ".")
		e := Entry{Key: legacyKey(smsID), SmsID: smsID, JobID: old.JobID, State: old.State,
			Created: old.Updated, Updated: old.Updated, Expires: old.Updated.Add(7 * 24 * time.Hour)}
		if old.State == Done && old.Result != nil {
			e.Key, e.Tenant, e.Result = schema.SMSKey(old.Result.Tenant, old.Result.SmsID), old.Result.Tenant, old.Result
		} else {
			e.State = Attempting
		}
		if err := l.put(e); err != nil {
			return err
		}
	}
	for _, name := range files {
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("ledger import: %w", err)
		}
	}
	return syncDir(l.dir)
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
