package sender_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"

	"github.com/sensorsreport/smsgw/services/modem/internal/attempts"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// attemptsBucket creates SMS_ATTEMPTS as the poller's topology does.
func (e *env) attemptsBucket() jetstream.KeyValue {
	e.t.Helper()
	kv, err := e.js.CreateKeyValue(ctxT(e.t), jetstream.KeyValueConfig{Bucket: schema.AttemptsBucket, History: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	return kv
}

func attemptedBy(t *testing.T, kv jetstream.KeyValue, j schema.Job) string {
	t.Helper()
	en, err := kv.Get(ctxT(t), attempts.Key(j.Tenant, j.SmsID))
	if err != nil {
		t.Fatalf("attempt record of %s: %v", j.SmsID, err)
	}
	return string(en.Value())
}

// Modem pi-a recorded an attempt at an SMS and died; its job reaches pi-b,
// which must report Unknown and never hand it to its hardware.
func TestJobAnotherModemAttemptedIsUnknownNeverSent(t *testing.T) {
	e := newEnv(t, envOpt{})
	kv := e.attemptsBucket()
	j := newJob(to, "maybe already sent by pi-a")
	if _, err := kv.Create(ctxT(t), attempts.Key(j.Tenant, j.SmsID), []byte("pi-a")); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.Attempts = attempts.New(e.js, func() string { return "pi-b" })
	e.start(cfg)
	e.publish(j)
	r := e.nextResult()
	if r.Status != schema.StatusUnknown || r.Code != schema.CodeOutcomeUnknown || r.SmsID != j.SmsID {
		t.Fatalf("result %+v; want Unknown", r)
	}
	e.waitAcked()
	if got := e.sim.Received(); len(got) != 0 {
		t.Fatalf("pi-b sent an SMS pi-a may have sent: %+v", got)
	}
	// A later claim of the same SMS is answered from pi-b's ledger.
	j2 := j
	j2.ID = schema.JobID(j.SmsID, 1)
	e.publish(j2)
	if r := e.nextResult(); r.Status != schema.StatusUnknown || r.JobID != j2.ID {
		t.Fatalf("second claim: %+v", r)
	}
	if got := e.sim.Received(); len(got) != 0 {
		t.Fatalf("sent on the second claim: %+v", got)
	}
}

// A job nobody attempted is recorded under this modem before it is sent;
// this modem's own record (a restart, a redelivery) does not stop it.
func TestAttemptIsRecordedBeforeSending(t *testing.T) {
	e := newEnv(t, envOpt{})
	kv := e.attemptsBucket()
	own := newJob(to, "recorded by me before a crash")
	if _, err := kv.Create(ctxT(t), attempts.Key(own.Tenant, own.SmsID), []byte("pi-b")); err != nil {
		t.Fatal(err)
	}
	fresh := newJob(to, "nobody tried this one")
	cfg := defaultConfig()
	cfg.Attempts = attempts.New(e.js, func() string { return "pi-b" })
	e.start(cfg)
	for _, j := range []schema.Job{own, fresh} {
		e.publish(j)
		if r := e.nextResult(); r.Status != schema.StatusSent || r.SmsID != j.SmsID {
			t.Fatalf("result %+v; want Sent", r)
		}
		if by := attemptedBy(t, kv, j); by != "pi-b" {
			t.Fatalf("attempt of %s recorded by %q, want pi-b", j.SmsID, by)
		}
	}
	if got := e.sim.Received(); len(got) != 2 {
		t.Fatalf("received %d SMS, want 2", len(got))
	}
}

// Without the bucket nothing can be known about other modems: nothing is
// sent, and the job waits (handed back) until the record can be written.
func TestNoAttemptRecordNoSend(t *testing.T) {
	e := newEnv(t, envOpt{})
	cfg := defaultConfig()
	cfg.Attempts = attempts.New(e.js, func() string { return "pi-b" })
	e.start(cfg)
	j := newJob(to, "wait for the bucket")
	e.publish(j)
	// Handed back at least once: the bucket is missing.
	e.waitRedelivered(2)
	if got := e.sim.Received(); len(got) != 0 {
		t.Fatalf("sent without an attempt record: %+v", got)
	}
	e.attemptsBucket()
	if r := e.nextResult(); r.Status != schema.StatusSent {
		t.Fatalf("result %+v after the bucket appeared; want Sent", r)
	}
}

// waitRedelivered waits until the jobs consumer delivered n times.
func (e *env) waitRedelivered(n uint64) {
	e.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ci, err := e.jobs.Info(ctxT(e.t))
		if err != nil {
			e.t.Fatal(err)
		}
		if ci.Delivered.Consumer >= n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("delivered %d times, want %d", ci.Delivered.Consumer, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readyOnce is ready when the sender first asks (so it takes the job) and
// never again (so the job waits before its first part).
type readyOnce struct {
	*gsm.Modem
	asked atomic.Int32
}

func (m *readyOnce) WaitReady(ctx context.Context) error {
	if m.asked.Add(1) == 1 {
		return m.Modem.WaitReady(ctx)
	}
	<-ctx.Done()
	return ctx.Err()
}

// A job handed back at shutdown before anything reached the hardware has
// its attempt record withdrawn: the next modem sends it.
func TestHandedBackJobWithdrawsItsAttempt(t *testing.T) {
	e := newEnv(t, envOpt{})
	kv := e.attemptsBucket()
	cfg := defaultConfig()
	cfg.Attempts = attempts.New(e.js, func() string { return "pi-a" })
	stop := e.startWith(cfg, &readyOnce{Modem: e.modem})
	j := newJob(to, "handed back")
	e.publish(j)
	deadline := time.Now().Add(wait)
	for {
		if _, err := kv.Get(ctxT(t), attempts.Key(j.Tenant, j.SmsID)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("attempt never recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if _, err := kv.Get(ctxT(t), attempts.Key(j.Tenant, j.SmsID)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("attempt record after the hand-back: %v; want it withdrawn", err)
	}
	// Another modem now sends it.
	cfg.Attempts = attempts.New(e.js, func() string { return "pi-b" })
	e.start(cfg)
	if r := e.nextResult(); r.Status != schema.StatusSent || r.SmsID != j.SmsID {
		t.Fatalf("result %+v; want Sent by the next modem", r)
	}
	if got := e.sim.Received(); len(got) != 1 {
		t.Fatalf("received %d, want 1", len(got))
	}
}
