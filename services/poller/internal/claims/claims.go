// Package claims is the poller's durable record of every SMS it claimed,
// kept in a JetStream key-value bucket beside the queues. It answers two
// questions the API cannot: which results may be reported (only those of
// jobs this poller issued), and which claims a crash left without a result
// (re-queued at the next start, whatever API generation answers). A record
// is keyed on the SMS (tenant + Id), lists every claim's job id, and expires
// with the bucket's TTL once nothing can need it.
package claims

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// State is where a claimed SMS stands at the poller.
type State string

const (
	Queued   State = "queued"   // a job or a result is on its way
	Reported State = "reported" // the API took the final status
	Dead     State = "dead"     // given up, in the dead-letter stream
)

// Record is one claimed SMS.
type Record struct {
	V      int           `json:"v"`
	SmsID  string        `json:"sms_id"`
	Tenant string        `json:"tenant"`
	Jobs   []string      `json:"jobs"` // every job id issued for it, oldest first
	State  State         `json:"state"`
	Status schema.Status `json:"status,omitempty"` // what was reported
	// Job is the latest job while Queued, for the re-queue after a crash;
	// Result, when set, is what was queued instead of a job (an SMS that
	// must not be sent), and is what a re-queue republishes.
	Job     *schema.Job    `json:"job,omitempty"`
	Result  *schema.Result `json:"result,omitempty"`
	Updated time.Time   `json:"updated"`
}

// Issued reports whether jobID was issued for this SMS.
func (r Record) Issued(jobID string) bool { return slices.Contains(r.Jobs, jobID) }

// ErrNotFound means no claim of the SMS is on record.
var ErrNotFound = errors.New("claims: no record")

// Store is the bucket. It is safe for concurrent use.
type Store struct{ kv jetstream.KeyValue }

// New wraps the bucket the broker created.
func New(kv jetstream.KeyValue) *Store { return &Store{kv: kv} }

// Get returns the SMS's record.
func (s *Store) Get(ctx context.Context, tenant, smsID string) (Record, error) {
	r, _, err := s.get(ctx, schema.SMSKey(tenant, smsID))
	return r, err
}

func (s *Store) get(ctx context.Context, key string) (Record, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Record{}, 0, ErrNotFound
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("claims get: %w", err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Record{}, 0, fmt.Errorf("claims get: %w", err)
	}
	return r, e.Revision(), nil
}

// Issue records that job was issued for its SMS, before anything is
// published for it: a result is accepted only for a recorded job. With a
// result, the claim is answered by that result instead of a job (the job is
// then kept without its text).
func (s *Store) Issue(ctx context.Context, job schema.Job, result *schema.Result, now time.Time) error {
	if result != nil {
		job.Message = ""
	}
	return s.change(ctx, job.Tenant, job.SmsID, func(r *Record) {
		r.SmsID, r.Tenant = job.SmsID, job.Tenant
		if !r.Issued(job.ID) {
			r.Jobs = append(r.Jobs, job.ID)
		}
		r.State, r.Status, r.Updated = Queued, 0, now
		r.Job, r.Result = &job, result
	})
}

// Finish records the SMS's end at the poller: Reported with the status the
// API took, or Dead.
func (s *Store) Finish(ctx context.Context, tenant, smsID string, st State, status schema.Status, now time.Time) error {
	return s.change(ctx, tenant, smsID, func(r *Record) {
		r.SmsID, r.Tenant = smsID, tenant
		r.State, r.Status, r.Updated, r.Job, r.Result = st, status, now, nil, nil
	})
}

// change applies f to the record with optimistic concurrency.
func (s *Store) change(ctx context.Context, tenant, smsID string, f func(*Record)) error {
	key := schema.SMSKey(tenant, smsID)
	for range 10 {
		r, rev, err := s.get(ctx, key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		r.V = schema.Version
		f(&r)
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("claims put: %w", err)
		}
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, b)
		} else {
			_, err = s.kv.Update(ctx, key, b, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // someone changed it in between: read again
		}
		if err != nil {
			return fmt.Errorf("claims put: %w", err)
		}
		return nil
	}
	return fmt.Errorf("claims put %s: too many concurrent changes", smsID)
}

// Queued returns every record still waiting for a result.
func (s *Store) Queued(ctx context.Context) ([]Record, error) {
	keys, err := s.kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claims list: %w", err)
	}
	var out []Record
	for key := range keys.Keys() {
		r, _, err := s.get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if r.State == Queued {
			out = append(out, r)
		}
	}
	return out, nil
}
