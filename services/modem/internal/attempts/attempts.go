// Package attempts is the "attempting" record every modem sees: before a
// modem hands an SMS to its hardware it records its MODEM_ID under the
// SMS's tenant and id in the broker's SMS_ATTEMPTS bucket, and before it
// sends it checks that no other modem did. The local ledger keeps the
// guarantee for one modem; this keeps it between modems, so a job that a
// modem may have sent before it died is never sent by another one (it is
// reported Unknown instead).
package attempts

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// ErrElsewhere says another modem recorded an attempt at this SMS first.
var ErrElsewhere = errors.New("another modem recorded an attempt at this SMS")

// Store records attempts in the SMS_ATTEMPTS bucket under one modem's id.
type Store struct {
	id func() string // the MODEM_ID, resolved once the modem is known

	mu sync.Mutex
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// New builds a store on js; id returns this modem's MODEM_ID.
func New(js jetstream.JetStream, id func() string) *Store { return &Store{js: js, id: id} }

// Use switches to a new connection's JetStream.
func (s *Store) Use(js jetstream.JetStream) { s.mu.Lock(); s.js, s.kv = js, nil; s.mu.Unlock() }

func (s *Store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := s.js.KeyValue(ctx, schema.AttemptsBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", schema.AttemptsBucket, err)
	}
	s.kv = kv
	return kv, nil
}

// Key is the bucket key of an SMS: tenant and id, each base64url encoded
// (keys allow only a few characters).
func Key(tenant, smsID string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(tenant)) + "." + enc.EncodeToString([]byte(smsID))
}

// Begin records that this modem is about to send the SMS. It returns nil
// when the record is new or already this modem's (a redelivery, a
// restart: the local ledger decides those), ErrElsewhere when another
// modem holds it, and any other error when the bucket could not be
// asked; then nothing may be sent.
func (s *Store) Begin(ctx context.Context, tenant, smsID string) error {
	id := s.id()
	if id == "" {
		return errors.New("no MODEM_ID yet")
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	key := Key(tenant, smsID)
	_, err = kv.Create(ctx, key, []byte(id))
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("record attempt: %w", err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read attempt: %w", err)
	}
	if string(e.Value()) != id {
		return fmt.Errorf("%w (%s)", ErrElsewhere, e.Value())
	}
	return nil
}

// Abandon deletes this modem's record of the SMS (nothing was sent), so
// another modem may send it; another modem's record is left alone.
func (s *Store) Abandon(ctx context.Context, tenant, smsID string) error {
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	key := Key(tenant, smsID)
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("read attempt: %w", err)
	case string(e.Value()) != s.id():
		return nil
	}
	if err := kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		return fmt.Errorf("withdraw attempt: %w", err)
	}
	return nil
}
