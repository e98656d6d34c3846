package sender_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/ledger"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// scripted wraps the real modem on its pty and lets a test act at two
// points the simulator cannot reach: after the sender's readiness wait
// returned (afterReady), and instead of the n-th AT+CMGS (submit returns a
// non-nil error to fail that call without touching the modem).
type scripted struct {
	*gsm.Modem
	mu         sync.Mutex
	ready      int
	submits    int
	afterReady func(n int)
	submit     func(n int) error
}

func (m *scripted) WaitReady(ctx context.Context) error {
	if err := m.Modem.WaitReady(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	m.ready++
	n, f := m.ready, m.afterReady
	m.mu.Unlock()
	if f != nil {
		f(n)
	}
	return nil
}

func (m *scripted) Submit(ctx context.Context, tpduLen int, hexPDU string) (int, error) {
	m.mu.Lock()
	m.submits++
	n, f := m.submits, m.submit
	m.mu.Unlock()
	if f != nil {
		if err := f(n); err != nil {
			return 0, err
		}
	}
	return m.Modem.Submit(ctx, tpduLen, hexPDU)
}

// reclaim is the job the poller publishes when the API hands the same SMS
// out again after its trust timeout: same SMS, next claim.
func reclaim(j schema.Job) schema.Job {
	r := j
	r.ID = schema.JobID(j.SmsID, 1)
	return r
}

// The API re-queued an SMS the modem had already sent: the second claim is
// answered with the first outcome and nothing goes out again.
func TestReclaimOfASentSMSIsNotSentAgain(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.start(defaultConfig())
	j := newJob(to, "sent once, claimed twice")
	e.publish(j)
	first := e.nextResult()
	checkResult(t, first, j, schema.StatusSent, "")

	again := reclaim(j)
	e.publish(again)
	second := e.nextResult()
	checkResult(t, second, again, schema.StatusSent, "")
	if fmt.Sprint(second.References) != fmt.Sprint(first.References) || !second.SentAt.Equal(first.SentAt) {
		t.Errorf("second claim reported %+v, want the first outcome %+v", second, first)
	}
	e.waitAcked()
	if n := len(e.sim.Submits()); n != 1 {
		t.Fatalf("%d PDUs submitted for one SMS claimed twice", n)
	}
}

// A claim of an SMS whose earlier claim was interrupted mid-send (a crash
// between "attempting" and the outcome) is Unknown, never a second send.
func TestReclaimAfterAnInterruptedSendIsUnknown(t *testing.T) {
	e := newEnv(t, envOpt{})
	j := newJob(to, "maybe sent by the first claim")
	if err := e.led.Attempting(j, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.start(defaultConfig())
	again := reclaim(j)
	e.publish(again)
	checkResult(t, e.nextResult(), again, schema.StatusUnknown, schema.CodeOutcomeUnknown)
	e.waitAcked()
	if n := len(e.sim.Submits()); n != 0 {
		t.Fatalf("%d PDUs submitted for an SMS that may have been sent", n)
	}
}

// The same SMS id in another tenant is another SMS.
func TestSameIDInAnotherTenantIsAnotherSMS(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.start(defaultConfig())
	a := newJob(to, "tenant a")
	b := a
	b.Tenant, b.Message = "globex", "tenant b"
	e.publish(a)
	checkResult(t, e.nextResult(), a, schema.StatusSent, "")
	b.ID = schema.JobID(b.SmsID, 7) // a distinct claim on the broker
	e.publish(b)
	checkResult(t, e.nextResult(), b, schema.StatusSent, "")
	if n := len(e.sim.Submits()); n != 2 {
		t.Fatalf("%d PDUs submitted, want one per tenant's SMS", n)
	}
}

// "attempting" is durable before AT+CMGS: at the moment the PDU is handed
// to the modem the ledger already says so, so a crash there cannot resend.
func TestAttemptingIsRecordedBeforeCMGS(t *testing.T) {
	e := newEnv(t, envOpt{})
	j := newJob(to, "recorded first")
	seen := make(chan ledger.Entry, 1)
	m := &scripted{Modem: e.modem, submit: func(int) error {
		entry, err := e.led.Get(j.Tenant, j.SmsID)
		if err != nil {
			entry = ledger.Entry{}
		}
		seen <- entry
		return nil
	}}
	e.startWith(defaultConfig(), m)
	e.publish(j)
	checkResult(t, e.nextResult(), j, schema.StatusSent, "")
	if entry := <-seen; entry.State != ledger.Attempting || entry.JobID != j.ID {
		t.Fatalf("ledger at AT+CMGS: %+v, want attempting for %s", entry, j.ID)
	}
}

// The TTL is checked again right before AT+CMGS: a job valid when pulled
// whose TTL passes while the sender waits for the modem is Expired.
func TestTTLRecheckedRightBeforeCMGS(t *testing.T) {
	e := newEnv(t, envOpt{})
	j := newJob(to, "valid when pulled")
	m := &scripted{Modem: e.modem, afterReady: func(n int) {
		if n == 2 { // the wait before the first part: an hour passes
			e.clk.Observe(time.Now().Add(time.Hour), time.Now())
		}
	}}
	e.startWith(defaultConfig(), m)
	e.publish(j)
	checkResult(t, e.nextResult(), j, schema.StatusExpired, schema.CodeExpired)
	e.waitAcked()
	if n := len(e.sim.Submits()); n != 0 {
		t.Fatalf("%d PDUs submitted after the TTL passed", n)
	}
}

// A modem that went away between the readiness check and AT+CMGS wrote
// nothing: waiting for it again must not spend the retry budget meant for
// network refusals.
func TestModemNotReadyIsNotARetry(t *testing.T) {
	e := newEnv(t, envOpt{})
	m := &scripted{Modem: e.modem, submit: func(n int) error {
		switch {
		case n <= 5: // more than the budget of 3
			return fmt.Errorf("%w: registering", gsm.ErrNotReady)
		case n == 6: // then one refusal the budget must still cover
			return &at.CMSError{Code: 42}
		}
		return nil
	}}
	e.startWith(defaultConfig(), m)
	j := newJob(to, "modem flapped")
	e.publish(j)
	checkResult(t, e.nextResult(), j, schema.StatusSent, "")
	if n := len(e.sim.Submits()); n != 1 {
		t.Fatalf("%d PDUs reached the modem, want 1", n)
	}
}

// A multipart SMS whose later part is refused after part 1 went out reached
// the phone in part: Unknown with the references that left, not Failed.
func TestLaterPartRefusedIsUnknown(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"permanent", &at.CMSError{Code: 21}},
		{"retries exhausted", &at.CMSError{Code: 42}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpt{})
			m := &scripted{Modem: e.modem, submit: func(n int) error {
				if n >= 2 {
					return tc.err
				}
				return nil
			}}
			e.startWith(defaultConfig(), m)
			j := newJob(to, strings.Repeat("two parts ", 20))
			e.publish(j)
			r := e.nextResult()
			checkResult(t, r, j, schema.StatusUnknown, schema.CodePartial)
			if len(r.References) != 1 || r.Parts != 2 {
				t.Errorf("refs %v parts %d, want the one that left of 2", r.References, r.Parts)
			}
			e.checkLedger(r)
		})
	}
}

// TTL decisions use the trusted clock, whatever the local wall clock says.
func TestTTLOnTheTrustedClock(t *testing.T) {
	for _, tc := range []struct {
		name string
		skew time.Duration // reference minus the local clock
		left time.Duration // TTL left on the reference clock
		want schema.Status
	}{
		{"api ahead, expired there", 2 * time.Hour, -time.Minute, schema.StatusExpired},
		{"api ahead, valid there", 2 * time.Hour, 10 * time.Minute, schema.StatusSent},
		{"api behind, valid there", -2 * time.Hour, 10 * time.Minute, schema.StatusSent},
		{"api behind, expired there", -2 * time.Hour, -time.Minute, schema.StatusExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpt{noTime: true})
			ref := time.Now().Add(tc.skew)
			e.clk.Observe(ref, time.Now())
			e.start(defaultConfig())
			j := newJob(to, tc.name)
			j.CreatedAt, j.ClaimedAt = ref.Add(-20*time.Minute), ref
			j.ExpiresAt = ref.Add(tc.left)
			e.publish(j)
			r := e.nextResult()
			if r.Status != tc.want {
				t.Fatalf("status %s (%s), want %s", r.Status, r.Reason, tc.want)
			}
			want := 0
			if tc.want == schema.StatusSent {
				want = 1
				// The validity period is the TTL left on the reference clock.
				if vp := e.sim.Received()[0].ValidityPeriod; vp < tc.left || vp > tc.left+10*time.Minute {
					t.Errorf("validity period %s for %s left", vp, tc.left)
				}
			}
			if n := len(e.sim.Submits()); n != want {
				t.Fatalf("%d PDUs submitted, want %d", n, want)
			}
		})
	}
}

// Without any trustworthy time the sender takes no job; once the poller's
// reference arrives, it sends.
func TestNoTrustedTimeNoSend(t *testing.T) {
	e := newEnv(t, envOpt{noTime: true})
	e.start(defaultConfig())
	j := newJob(to, "waits for the time")
	e.publish(j)
	if err := e.sim.WaitConnected(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	// The modem is up; give the sender every chance to (wrongly) take the job.
	if err := e.modem.WaitReady(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		ci, err := e.jobs.Info(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if ci.Delivered.Consumer != 0 {
			t.Fatalf("a job was taken without a trustworthy time")
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.clk.Observe(time.Now(), time.Now())
	checkResult(t, e.nextResult(), j, schema.StatusSent, "")
}
