package sender_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/device"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/ledger"
	"github.com/sensorsreport/smsgw/services/modem/internal/sender"
	"github.com/sensorsreport/smsgw/services/modem/itest/brokertest"
	"github.com/sensorsreport/smsgw/services/modem/itest/testlog"
	"github.com/sensorsreport/smsgw/shared/clock"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// wait bounds every blocking step; it detects hangs and is not a timing
// assertion.
const wait = 30 * time.Second

const to = "+40722000111"

func testLogger(t *testing.T) *zap.Logger { return testlog.New(t, zap.InfoLevel) }

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// env is one modem service without its wiring: a simulator on a real pty,
// the modem lifecycle, a ledger in a temp dir, and a real nats-server with
// the topology the poller creates.
type env struct {
	t       *testing.T
	log     *zap.Logger
	sim     *modemsim.Sim
	modem   *gsm.Modem
	js      jetstream.JetStream
	led     *ledger.Ledger
	clk     *clock.Clock       // the trusted time: a reference, as the poller gives it
	jobs    jetstream.Consumer // the modem's consumer, to check acks
	results jetstream.Consumer // stands in for the poller
}

type envOpt struct {
	sim       modemsim.Config
	noResults bool // leave SMS_RESULTS out, so no result can be stored
	noTime    bool // no time reference, and a system clock that is not synchronised
}

func newEnv(t *testing.T, o envOpt) *env {
	t.Helper()
	e := &env{t: t, log: testLogger(t)}

	e.js = brokertest.JetStream(t, brokertest.Start(t, &server.Options{JetStream: true}))
	ctx := ctxT(t)
	jobs, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: schema.JobsStream, Subjects: []string{schema.JobsFilter},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
		Discard: jetstream.DiscardNew, Duplicates: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.jobs, err = jobs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: schema.JobsConsumerFor("RO"), AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 3 * time.Second, MaxDeliver: 5, MaxAckPending: 1,
		FilterSubject: schema.JobSubject("RO"), DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !o.noResults {
		e.createResults()
	}

	e.sim = modemsim.New(o.sim)
	t.Cleanup(func() { _ = e.sim.Close() })
	link := filepath.Join(t.TempDir(), "usb-Quectel_EC25-if02-port0")
	if _, err := e.sim.ServePTY(link); err != nil {
		t.Fatal(err)
	}
	e.modem = gsm.New(gsm.Config{
		CommandTimeout: time.Second, SendTimeout: 2 * time.Second, KeepAlive: 200 * time.Millisecond,
		RegistrationPoll: 50 * time.Millisecond, Log: e.log.Named("modem"),
	}, device.NewOpener(device.Config{Path: link, Log: e.log}))
	mctx, stopModem := context.WithCancel(context.Background())
	modemDone := make(chan struct{})
	go func() { defer close(modemDone); _ = e.modem.Run(mctx) }()
	t.Cleanup(func() { stopModem(); <-modemDone })

	if e.led, err = ledger.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.led.Close() })
	// The kernel's word is never taken here: only the reference counts.
	e.clk = clock.New(func() bool { return false })
	if !o.noTime {
		e.clk.Observe(time.Now(), time.Now())
	}
	return e
}

// createResults makes SMS_RESULTS and the poller's consumer on it.
func (e *env) createResults() {
	e.t.Helper()
	ctx := ctxT(e.t)
	results, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: schema.ResultsStream, Subjects: []string{schema.ResultsFilter},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
		Discard: jetstream.DiscardNew, Duplicates: time.Hour,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.results, err = results.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: schema.ResultsConsumer, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 256,
		FilterSubject: schema.ResultsFilter, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func defaultConfig() sender.Config {
	return sender.Config{
		Region: "RO", MaxParts: 3, SendTimeout: 3 * time.Second,
		Backoff:   []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond},
		Heartbeat: time.Second, // AckWait/3
	}
}

// start runs a sender; stop cancels its context and waits for Run.
func (e *env) start(cfg sender.Config) (stop func()) {
	return e.startWith(cfg, e.modem)
}

// startWith runs a sender on m, which may wrap the env's modem.
func (e *env) startWith(cfg sender.Config, m sender.Modem) (stop func()) {
	e.t.Helper()
	cfg.Log = e.log.Named("sender")
	if cfg.Reg == nil {
		cfg.Reg = prometheus.NewRegistry()
	}
	cfg.Clock = e.clk
	s := sender.New(cfg, e.js, m, e.led)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run = %v", err)
				}
			case <-time.After(wait):
				e.t.Error("Run did not return after its context ended")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

var jobSeq int

func newJob(phone, text string) schema.Job {
	jobSeq++
	now := time.Now().UTC()
	sms := fmt.Sprintf("sms-%d", jobSeq)
	return schema.Job{
		V: schema.Version, ID: schema.JobID(sms, 0), SmsID: sms, Tenant: "acme",
		PhoneNumber: phone, Message: text, CountryCode: "RO",
		CreatedAt: now, ExpiresAt: now.Add(30 * time.Minute), ClaimedAt: now,
	}
}

func (e *env) publish(j schema.Job) {
	e.t.Helper()
	data, err := json.Marshal(j)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.js.Publish(ctxT(e.t), schema.JobSubject(j.CountryCode), data, jetstream.WithMsgID(j.ID)); err != nil {
		e.t.Fatal(err)
	}
}

// nextResult takes the next result as the poller would, checking that its
// subject and dedup id match it.
func (e *env) nextResult() schema.Result {
	e.t.Helper()
	msg, err := e.results.Next(jetstream.FetchMaxWait(wait))
	if err != nil {
		e.t.Fatalf("no result: %v", err)
	}
	r, err := schema.Decode[schema.Result](msg.Data())
	if err != nil {
		e.t.Fatal(err)
	}
	if msg.Subject() != r.Subject() {
		e.t.Errorf("result on %q, want %q", msg.Subject(), r.Subject())
	}
	if id := msg.Headers().Get(jetstream.MsgIDHeader); id != r.MsgID() {
		e.t.Errorf("result Msg-Id %q, want %q", id, r.MsgID())
	}
	if err := msg.Ack(); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// pending reports unacknowledged deliveries and jobs still stored.
func (e *env) pending() (ackPending int, stored uint64) {
	e.t.Helper()
	ci, err := e.jobs.Info(ctxT(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := e.js.Stream(ctxT(e.t), schema.JobsStream)
	if err != nil {
		e.t.Fatal(err)
	}
	si, err := s.Info(ctxT(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	return ci.NumAckPending, si.State.Msgs
}

// waitAcked waits until the work queue is empty: every job was acked.
func (e *env) waitAcked() {
	e.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ack, stored := e.pending()
		if ack == 0 && stored == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("jobs never acked: %d pending, %d stored", ack, stored)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func checkResult(t *testing.T, r schema.Result, j schema.Job, st schema.Status, code string) {
	t.Helper()
	if r.JobID != j.ID || r.SmsID != j.SmsID || r.Tenant != j.Tenant || r.V != schema.Version {
		t.Errorf("result %+v does not belong to job %s", r, j.ID)
	}
	if r.Status != st || r.Code != code {
		t.Errorf("job %s: result %s/%q (%s), want %s/%q", j.ID, r.Status, r.Code, r.Reason, st, code)
	}
}

func (e *env) checkLedger(r schema.Result) {
	e.t.Helper()
	entry, err := e.led.Get(r.Tenant, r.SmsID)
	if err != nil {
		e.t.Fatalf("ledger: %v", err)
	}
	if entry.State != ledger.Done || entry.Result == nil || entry.Result.Status != r.Status || entry.Result.Code != r.Code {
		e.t.Errorf("ledger entry %+v, want done with %s/%q", entry, r.Status, r.Code)
	}
}

func TestJobSentOnce(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.start(defaultConfig())
	long := strings.Repeat("Greenhouse 3: temperature above threshold. ", 5)
	single, multi := newJob("0722 000 111", "Short alarm"), newJob(to, long)
	e.publish(single)
	e.publish(multi)

	for _, j := range []schema.Job{single, multi} {
		r := e.nextResult()
		checkResult(t, r, j, schema.StatusSent, "")
		if r.SentAt.IsZero() {
			t.Error("Sent result without SentAt")
		}
		e.checkLedger(r)
	}
	e.waitAcked()
	got := e.sim.Received()
	if len(got) != 2 || got[0].Text != "Short alarm" || got[0].To != to || got[1].Text != long || got[1].Parts != 2 {
		t.Fatalf("received %+v", got)
	}
	if n := len(e.sim.Submits()); n != 3 {
		t.Fatalf("%d PDUs submitted for 1+2 parts", n)
	}
	// A validity period derived from the TTL travels with the SMS.
	if vp := got[0].ValidityPeriod; vp < 30*time.Minute || vp > 35*time.Minute {
		t.Errorf("validity period %s for a 30 min TTL", vp)
	}
}

func TestResultsCarryReferences(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.sim.SetNextMR(254) // the references wrap from 255 to 0 mid-message
	e.start(defaultConfig())
	j := newJob(to, strings.Repeat("wrap ", 70)) // 350 septets: 3 parts
	e.publish(j)
	r := e.nextResult()
	checkResult(t, r, j, schema.StatusSent, "")
	got := e.sim.Received()
	if len(got) != 1 || fmt.Sprint(got[0].Refs) != fmt.Sprint(r.References) || r.Parts != 3 {
		t.Fatalf("result refs %v parts %d; network refs %+v", r.References, r.Parts, got)
	}
	if r.TrackingID() != "mr:254,255,0" {
		t.Errorf("tracking id %q", r.TrackingID())
	}
}

func TestResultPublishedBeforeAck(t *testing.T) {
	// Without SMS_RESULTS no result can be stored; the job must stay
	// unacknowledged until it can, or its outcome would be lost.
	e := newEnv(t, envOpt{noResults: true})
	e.start(defaultConfig())
	j := newJob(to, "result first")
	e.publish(j)
	if err := e.sim.WaitReceived(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.WaitSubmits(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	// The ledger is written before the publish is attempted.
	deadline := time.Now().Add(wait)
	for {
		if entry, err := e.led.Get(j.Tenant, j.SmsID); err == nil && entry.State == ledger.Done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ledger never recorded the outcome")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ack, stored := e.pending(); stored != 1 {
		t.Fatalf("job gone (%d pending, %d stored) before its result was stored", ack, stored)
	}
	e.createResults()
	checkResult(t, e.nextResult(), j, schema.StatusSent, "")
	e.waitAcked()
	if n := len(e.sim.Submits()); n != 1 {
		t.Fatalf("%d PDUs submitted, want 1", n)
	}
}

func TestExpiredJobIsNotSent(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.start(defaultConfig())
	j := newJob(to, "too late")
	j.ExpiresAt = time.Now().Add(-time.Minute)
	e.publish(j)
	r := e.nextResult()
	checkResult(t, r, j, schema.StatusExpired, schema.CodeExpired)
	e.checkLedger(r)
	e.waitAcked()
	if n := len(e.sim.Submits()); n != 0 {
		t.Fatalf("%d PDUs submitted for an expired job", n)
	}
}

func TestInvalidJobsFailAndTheQueueFlows(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.start(defaultConfig())
	// Undecodable: terminated with no result, and it must not block the queue.
	if _, err := e.js.Publish(ctxT(t), schema.JobSubject("RO"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		job  schema.Job
		code string
	}{
		{newJob("12ab", "bad number"), schema.CodeInvalidNumber},
		{newJob("+999123", "unknown country"), schema.CodeInvalidNumber},
		{newJob(to, ""), schema.CodeEmptyMessage},
		{newJob(to, strings.Repeat("x", 153*3+1)), schema.CodeTooLong}, // 4 parts, limit 3
	}
	for _, b := range bad {
		e.publish(b.job)
	}
	good := newJob(to, "still flowing")
	e.publish(good)

	for _, b := range bad {
		r := e.nextResult()
		checkResult(t, r, b.job, schema.StatusFailed, b.code)
		e.checkLedger(r)
	}
	checkResult(t, e.nextResult(), good, schema.StatusSent, "")
	e.waitAcked()
	if got := e.sim.Received(); len(got) != 1 || got[0].Text != "still flowing" {
		t.Fatalf("received %+v, want only the valid job", got)
	}
	if n := len(e.sim.Submits()); n != 1 {
		t.Fatalf("%d PDUs submitted, want 1", n)
	}
}

func TestRedeliveryAnsweredFromLedger(t *testing.T) {
	e := newEnv(t, envOpt{})
	// A previous run sent the job and crashed before the ack.
	j := newJob(to, "sent before the crash")
	stored := schema.Result{
		V: schema.Version, JobID: j.ID, SmsID: j.SmsID, Tenant: j.Tenant, Status: schema.StatusSent,
		SentAt: time.Now().UTC().Truncate(time.Second), References: []int{17}, Parts: 1,
	}
	if err := e.led.Done(j, stored, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.start(defaultConfig())
	e.publish(j)
	r := e.nextResult()
	checkResult(t, r, j, schema.StatusSent, "")
	if fmt.Sprint(r.References) != "[17]" || !r.SentAt.Equal(stored.SentAt) {
		t.Errorf("republished %+v, want the stored %+v", r, stored)
	}
	e.waitAcked()
	if n := len(e.sim.Submits()); n != 0 {
		t.Fatalf("%d PDUs submitted for a job already sent", n)
	}
}

func TestInterruptedJobIsUnknownNotResent(t *testing.T) {
	e := newEnv(t, envOpt{})
	// A previous run crashed between "attempting" and the outcome.
	j := newJob(to, "maybe sent")
	if err := e.led.Attempting(j, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.start(defaultConfig())
	e.publish(j)
	r := e.nextResult()
	checkResult(t, r, j, schema.StatusUnknown, schema.CodeOutcomeUnknown)
	e.checkLedger(r)
	e.waitAcked()
	if n := len(e.sim.Submits()); n != 0 {
		t.Fatalf("%d PDUs submitted for a job that may have been sent", n)
	}
}

func TestTransientErrorsAreRetried(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.sim.InjectCMSErrors(42, 2) // congestion, twice
	e.start(defaultConfig())
	j := newJob(to, "try again")
	e.publish(j)
	r := e.nextResult()
	checkResult(t, r, j, schema.StatusSent, "")
	if len(r.References) != 1 {
		t.Errorf("references %v, want one", r.References)
	}
	if n := len(e.sim.Submits()); n != 3 {
		t.Fatalf("%d PDUs submitted, want 2 refused + 1 accepted", n)
	}
	if got := e.sim.Received(); len(got) != 1 {
		t.Fatalf("received %d messages, want 1", len(got))
	}
}

func TestTransientErrorsExhaustTheBudget(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.sim.InjectCMSErrors(42, 4)
	e.start(defaultConfig())
	j := newJob(to, "congested")
	e.publish(j)
	checkResult(t, e.nextResult(), j, schema.StatusFailed, schema.CodeRetriesExceeded)
	if n := len(e.sim.Submits()); n != 4 {
		t.Fatalf("%d PDUs submitted, want 1 + 3 retries", n)
	}
	next := newJob(to, "congestion over")
	e.publish(next)
	checkResult(t, e.nextResult(), next, schema.StatusSent, "")
}

func TestPermanentErrorFailsAtOnce(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.sim.InjectCMSErrors(21, 1) // short message transfer rejected
	e.start(defaultConfig())
	j := newJob(to, "rejected")
	e.publish(j)
	r := e.nextResult()
	checkResult(t, r, j, schema.StatusFailed, schema.CodeModemRejected)
	e.checkLedger(r)
	e.waitAcked()
	if n := len(e.sim.Submits()); n != 1 {
		t.Fatalf("%d PDUs submitted, want 1: a permanent error is not retried", n)
	}
}

func TestLostResultIsUnknownAndNotResent(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.start(defaultConfig())
	e.sim.HangCMGS(modemsim.HangAfterPDU)
	j := newJob(to, "did it leave?")
	e.publish(j)
	r := e.nextResult()
	checkResult(t, r, j, schema.StatusUnknown, schema.CodeOutcomeUnknown)
	e.checkLedger(r)
	e.waitAcked()
	// The modem recovers and the queue goes on; the lost part is not resent.
	e.sim.Unhang()
	next := newJob(to, "after recovery")
	e.publish(next)
	checkResult(t, e.nextResult(), next, schema.StatusSent, "")
	if n := len(e.sim.Submits()); n != 2 {
		t.Fatalf("%d PDUs submitted, want 2 (one per job)", n)
	}
}

func TestGracefulShutdownFinishesTheSend(t *testing.T) {
	e := newEnv(t, envOpt{sim: modemsim.Config{PartLatency: 1500 * time.Millisecond}})
	stop := e.start(defaultConfig())
	j, queued := newJob(to, "in flight at SIGTERM"), newJob(to, "still queued")
	e.publish(j)
	e.publish(queued)
	if err := e.sim.WaitCommand(ctxT(t), "AT+CMGS=", 1); err != nil {
		t.Fatal(err)
	}
	stop()
	// Run has returned: the send in flight was finished, reported and acked,
	// and the next job was left in the queue for the next start.
	if got := e.sim.Received(); len(got) != 1 || got[0].Text != j.Message {
		t.Fatalf("received %+v, want the job in flight only", got)
	}
	if ack, stored := e.pending(); ack != 0 || stored != 1 {
		t.Fatalf("after shutdown %d pending and %d stored, want 0 and the queued job", ack, stored)
	}
	checkResult(t, e.nextResult(), j, schema.StatusSent, "")
	if _, err := e.led.Get(queued.Tenant, queued.SmsID); err == nil {
		t.Fatal("the queued job has a ledger entry although it was never started")
	}
}

func TestUnplugMidSendIsUnknown(t *testing.T) {
	e := newEnv(t, envOpt{sim: modemsim.Config{PartLatency: time.Second}})
	e.start(defaultConfig())
	j := newJob(to, "unplugged while sending")
	e.publish(j)
	// The PDU is with the modem (Ctrl-Z arrived) when the USB cable goes.
	if err := e.sim.WaitSubmits(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	r := e.nextResult()
	checkResult(t, r, j, schema.StatusUnknown, schema.CodeOutcomeUnknown)
	e.checkLedger(r)
	e.waitAcked()
	if err := e.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	next := newJob(to, "after the replug")
	e.publish(next)
	checkResult(t, e.nextResult(), next, schema.StatusSent, "")
	if n := len(e.sim.Submits()); n != 2 {
		t.Fatalf("%d PDUs submitted, want 2: the interrupted one is never resent", n)
	}
}

func TestLongSendIsKeptAlive(t *testing.T) {
	// Three parts of 1.5 s each outlast the 3 s AckWait; the heartbeat must
	// keep the broker from handing the job out again meanwhile.
	e := newEnv(t, envOpt{sim: modemsim.Config{PartLatency: 1500 * time.Millisecond}})
	cfg := defaultConfig()
	cfg.SendTimeout = 5 * time.Second
	e.start(cfg)
	j := newJob(to, strings.Repeat("slow network ", 30)) // 390 septets: 3 parts
	e.publish(j)
	if err := e.sim.WaitCommand(ctxT(t), "AT+CMGS=", 1); err != nil {
		t.Fatal(err)
	}
	// A second puller on the same consumer gets the job only if its ack
	// wait ran out; it listens until well after the send has finished.
	batch, err := e.jobs.Fetch(1, jetstream.FetchMaxWait(6*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		t.Errorf("job redelivered during the send: %s", msg.Data())
	}
	r := e.nextResult()
	checkResult(t, r, j, schema.StatusSent, "")
	if r.Parts != 3 {
		t.Errorf("%d parts, want 3", r.Parts)
	}
	e.waitAcked()
}
