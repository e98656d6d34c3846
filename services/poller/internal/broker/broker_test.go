package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sensorsreport/smsgw/shared/schema"
)

const (
	testModemUser = "modem-test"
	testModemPass = "modem-secret"
	waitTimeout   = 10 * time.Second
)

func testConfig(t *testing.T) Config {
	t.Helper()
	return Config{
		Listen:        "127.0.0.1:-1",
		StoreDir:      t.TempDir(),
		ModemUser:     testModemUser,
		ModemPassword: testModemPass,
		Countries:     []string{"RO"},
		AckWait:       time.Second,
		Log:           zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	}
}

func startBroker(t *testing.T, cfg Config) *Broker {
	t.Helper()
	b, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(b.Shutdown)
	return b
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls an observable condition until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func publishJob(t *testing.T, b *Broker, id string) *jetstream.PubAck {
	t.Helper()
	ack, err := b.JetStream().Publish(testCtx(t), schema.JobsSubject+".RO", []byte("job "+id),
		jetstream.WithMsgID(id), jetstream.WithExpectStream(schema.JobsStream))
	if err != nil {
		t.Fatalf("publish job %s: %v", id, err)
	}
	return ack
}

func jobsPending(t *testing.T, b *Broker) int {
	t.Helper()
	n, err := b.JobsPending(testCtx(t))
	if err != nil {
		t.Fatalf("JobsPending: %v", err)
	}
	return n
}

// modemClient connects like the modem does: over TCP with the modem user.
type modemClient struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error // asynchronous server errors (permission violations)
}

func connectModem(t *testing.T, b *Broker) *modemClient {
	t.Helper()
	m := &modemClient{errs: make(chan error, 64)}
	nc, err := nats.Connect(b.ClientURL(),
		nats.UserInfo(testModemUser, testModemPass),
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case m.errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("modem connect: %v", err)
	}
	t.Cleanup(nc.Close)
	m.nc = nc
	if m.js, err = jetstream.New(nc); err != nil {
		t.Fatalf("modem jetstream: %v", err)
	}
	return m
}

func (m *modemClient) consumer(t *testing.T) jetstream.Consumer {
	t.Helper()
	cons, err := m.js.Consumer(testCtx(t), schema.JobsStream, schema.JobsConsumerFor("RO"))
	if err != nil {
		t.Fatalf("bind modem consumer: %v", err)
	}
	return cons
}

func next(t *testing.T, cons jetstream.Consumer) jetstream.Msg {
	t.Helper()
	msg, err := cons.Next(jetstream.FetchMaxWait(waitTimeout))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return msg
}

func numDelivered(t *testing.T, msg jetstream.Msg) uint64 {
	t.Helper()
	md, err := msg.Metadata()
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	return md.NumDelivered
}

func TestDedupAndRestartKeepsState(t *testing.T) {
	cfg := testConfig(t)
	b := startBroker(t, cfg)
	if ack := publishJob(t, b, "a.1"); ack.Duplicate || ack.Stream != schema.JobsStream {
		t.Fatalf("first publish: %+v", ack)
	}
	if ack := publishJob(t, b, "a.1"); !ack.Duplicate {
		t.Fatalf("re-publish with the same msg id was not a duplicate: %+v", ack)
	}
	publishJob(t, b, "b.1")
	if n := jobsPending(t, b); n != 2 {
		t.Fatalf("jobs pending = %d, want 2", n)
	}

	m := connectModem(t, b)
	cons := m.consumer(t)
	first := next(t, cons)
	if string(first.Data()) != "job a.1" {
		t.Fatalf("first job = %q", first.Data())
	}
	if err := first.DoubleAck(testCtx(t)); err != nil {
		t.Fatalf("DoubleAck: %v", err)
	}
	if second := next(t, cons); string(second.Data()) != "job b.1" {
		t.Fatalf("second job = %q", second.Data())
	} // left un-acked across the restart

	m.nc.Close()
	b.Shutdown()

	b = startBroker(t, cfg)
	if n := jobsPending(t, b); n != 1 {
		t.Fatalf("after restart jobs pending = %d, want 1 (the un-acked one)", n)
	}
	cons = connectModem(t, b).consumer(t)
	again := next(t, cons)
	if string(again.Data()) != "job b.1" {
		t.Fatalf("redelivered job = %q, want the un-acked b.1", again.Data())
	}
	if n := numDelivered(t, again); n < 2 {
		t.Fatalf("redelivered job NumDelivered = %d, want >= 2 (consumer state lost)", n)
	}
	if err := again.DoubleAck(testCtx(t)); err != nil {
		t.Fatalf("DoubleAck: %v", err)
	}
	if n := jobsPending(t, b); n != 0 {
		t.Fatalf("jobs pending after acking everything = %d", n)
	}
	info, err := cons.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 2 || info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("consumer state after restart: ack floor %d, pending %d, ack pending %d",
			info.AckFloor.Stream, info.NumPending, info.NumAckPending)
	}
}

func TestTopologyIsCreatedThenUpdatedInPlace(t *testing.T) {
	cfg := testConfig(t)
	cfg.JobsMaxMsgs = 10
	cfg.MaxDeliver = 3
	b := startBroker(t, cfg)
	ctx := testCtx(t)
	js := b.JetStream()

	jobs, err := js.Stream(ctx, schema.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	sc := jobs.CachedInfo().Config
	if sc.Retention != jetstream.WorkQueuePolicy || sc.Discard != jetstream.DiscardNew ||
		sc.Storage != jetstream.FileStorage || sc.MaxMsgs != 10 || sc.MaxBytes != 64<<20 ||
		sc.MaxMsgSize != 64<<10 || sc.Duplicates != 24*time.Hour || sc.Replicas != 1 ||
		len(sc.Subjects) != 1 || sc.Subjects[0] != schema.JobsFilter {
		t.Fatalf("jobs stream config: %+v", sc)
	}
	results, err := js.Stream(ctx, schema.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	rc := results.CachedInfo().Config
	if rc.Retention != jetstream.WorkQueuePolicy || rc.Discard != jetstream.DiscardNew ||
		rc.Storage != jetstream.FileStorage || rc.MaxMsgs != 10000 || rc.MaxBytes != 64<<20 ||
		rc.Duplicates != 24*time.Hour || len(rc.Subjects) != 1 || rc.Subjects[0] != schema.ResultsFilter {
		t.Fatalf("results stream config: %+v", rc)
	}
	events, err := js.Stream(ctx, schema.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	// Events stay after they are forwarded (limits, not a work queue), and a
	// repeat with the same id within a day is dropped.
	ec := events.CachedInfo().Config
	if ec.Retention != jetstream.LimitsPolicy || ec.Discard != jetstream.DiscardOld || ec.Storage != jetstream.FileStorage ||
		ec.MaxBytes != 16<<20 || ec.Duplicates != 24*time.Hour || len(ec.Subjects) != 1 || ec.Subjects[0] != schema.EventsFilter {
		t.Fatalf("events stream config: %+v", ec)
	}
	hook, err := js.Consumer(ctx, schema.EventsStream, schema.EventsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if hc := hook.CachedInfo().Config; hc.MaxAckPending != 1 || hc.MaxDeliver != -1 || hc.AckPolicy != jetstream.AckExplicitPolicy {
		t.Fatalf("webhook consumer config: %+v", hc)
	}
	modem, err := js.Consumer(ctx, schema.JobsStream, schema.JobsConsumerFor("RO"))
	if err != nil {
		t.Fatal(err)
	}
	mc := modem.CachedInfo().Config
	if mc.Durable != schema.JobsConsumerFor("RO") || mc.AckPolicy != jetstream.AckExplicitPolicy ||
		mc.AckWait != time.Second || mc.MaxDeliver != 3 || mc.MaxAckPending != maxModems ||
		mc.FilterSubject != schema.JobSubject("RO") || mc.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Fatalf("modem consumer config: %+v", mc)
	}
	poller, err := js.Consumer(ctx, schema.ResultsStream, schema.ResultsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	pc := poller.CachedInfo().Config
	if pc.Durable != schema.ResultsConsumer || pc.AckPolicy != jetstream.AckExplicitPolicy ||
		pc.AckWait != 30*time.Second || pc.MaxDeliver != -1 || pc.MaxAckPending != 256 {
		t.Fatalf("poller consumer config: %+v", pc)
	}
	created := modem.CachedInfo().Created
	publishJob(t, b, "kept.1")
	b.Shutdown()

	cfg.JobsMaxMsgs = 20
	cfg.AckWait = 2 * time.Second
	b = startBroker(t, cfg)
	ctx = testCtx(t)
	jobs, err = b.JetStream().Stream(ctx, schema.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := jobs.CachedInfo(); got.Config.MaxMsgs != 20 || got.State.Msgs != 1 {
		t.Fatalf("after update: max msgs %d, msgs %d; want 20 and the kept job", got.Config.MaxMsgs, got.State.Msgs)
	}
	modem, err = b.JetStream().Consumer(ctx, schema.JobsStream, schema.JobsConsumerFor("RO"))
	if err != nil {
		t.Fatal(err)
	}
	if got := modem.CachedInfo(); got.Config.AckWait != 2*time.Second || !got.Created.Equal(created) {
		t.Fatalf("modem consumer after update: ack wait %s, created %s (was %s); want updated in place",
			got.Config.AckWait, got.Created, created)
	}
}

func TestDiscardNewRefusesJobsWhenFull(t *testing.T) {
	cfg := testConfig(t)
	cfg.JobsMaxMsgs = 3
	b := startBroker(t, cfg)
	for i := range 3 {
		publishJob(t, b, fmt.Sprintf("full.%d", i))
	}
	_, err := b.JetStream().Publish(testCtx(t), schema.JobsSubject+".RO", []byte("one too many"),
		jetstream.WithMsgID("full.3"))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || !strings.Contains(apiErr.Description, "maximum messages") {
		t.Fatalf("publish into a full stream: err = %v, want a maximum messages API error", err)
	}
	if n := jobsPending(t, b); n != 3 {
		t.Fatalf("jobs pending = %d, want 3", n)
	}
	// The oldest jobs were kept, not evicted.
	info, err := b.JetStream().Stream(testCtx(t), schema.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if st := info.CachedInfo().State; st.FirstSeq != 1 || st.LastSeq != 3 {
		t.Fatalf("stream holds seqs %d..%d, want 1..3", st.FirstSeq, st.LastSeq)
	}
}

// TestPowerCutLosingBlocksDoesNotStarveTheConsumer is the end-to-end
// guard: whichever of the server or checkConsumerAhead repairs the state,
// a job published after the loss must reach the modem.
func TestPowerCutLosingBlocksDoesNotStarveTheConsumer(t *testing.T) {
	cfg := testConfig(t)
	b := startBroker(t, cfg)
	cons := connectModem(t, b).consumer(t)
	for i := range 3 {
		publishJob(t, b, fmt.Sprintf("before.%d", i))
		if err := next(t, cons).DoubleAck(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	b.Shutdown()

	// Lose the message blocks but keep the consumer state, as a power cut
	// on an SD card can: the consumer's ack floor (3) is then ahead of the
	// stream's last sequence (0).
	msgs := filepath.Join(cfg.StoreDir, "jetstream", "$G", "streams", schema.JobsStream, "msgs")
	entries, err := os.ReadDir(msgs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(msgs, e.Name())); err != nil {
			t.Fatal(err)
		}
	}

	b = startBroker(t, cfg)
	info, err := b.JetStream().Stream(testCtx(t), schema.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if last := info.CachedInfo().State.LastSeq; last != 0 {
		t.Fatalf("stream last seq after losing its blocks = %d; the simulation did not work", last)
	}
	publishJob(t, b, "after.0")
	msg := next(t, connectModem(t, b).consumer(t))
	if string(msg.Data()) != "job after.0" {
		t.Fatalf("job after reset = %q", msg.Data())
	}
}

// TestConsumerAheadOfStreamIsRewound drives checkConsumerAhead directly: a
// restart cannot produce the state on nats-server 2.15, whose recovery
// already rewinds the consumer, so the state is made with a reset beyond
// the stream's last sequence.
func TestConsumerAheadOfStreamIsRewound(t *testing.T) {
	b := startBroker(t, testConfig(t))
	ctx := testCtx(t)
	js := b.JetStream()
	publishJob(t, b, "stuck.1")
	if _, err := js.ResetConsumerToSequence(ctx, schema.JobsStream, schema.JobsConsumerFor("RO"), 100); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, schema.JobsStream, schema.JobsConsumerFor("RO"))
	if err != nil {
		t.Fatal(err)
	}
	if info := cons.CachedInfo(); info.NumPending != 0 || info.AckFloor.Stream != 99 {
		t.Fatalf("setup: pending %d, ack floor %d; want a starving consumer", info.NumPending, info.AckFloor.Stream)
	}

	if err := b.checkConsumerAhead(ctx, b.jobs, cons); err != nil {
		t.Fatalf("checkConsumerAhead: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 1 || info.AckFloor.Stream != 0 {
		t.Fatalf("after the check: pending %d, ack floor %d; want the stored job pending again",
			info.NumPending, info.AckFloor.Stream)
	}
	if msg := next(t, connectModem(t, b).consumer(t)); string(msg.Data()) != "job stuck.1" {
		t.Fatalf("job after rewind = %q", msg.Data())
	}
}

func TestShutdownIsCleanAndIdempotent(t *testing.T) {
	b := startBroker(t, testConfig(t))
	if err := b.Healthy(); err != nil {
		t.Fatalf("Healthy while running: %v", err)
	}
	select {
	case <-b.Done():
		t.Fatal("Done closed while running")
	default:
	}
	m := connectModem(t, b)
	closed := make(chan struct{})
	m.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })

	b.Shutdown()
	b.Shutdown()
	if err := b.Healthy(); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Healthy after Shutdown = %v, want ErrShutdown", err)
	}
	if !b.Conn().IsClosed() {
		t.Fatal("in-process client still open after Shutdown")
	}
	select {
	case <-b.Done():
	default:
		t.Fatal("Done not closed after Shutdown")
	}
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("modem connection not closed by Shutdown")
	}
}

// JetStream shut down under a running broker (the server does that itself
// on a full disk or a store it can no longer write) is unhealthy at once
// and, within WatchEvery, a fatal error that closes Done.
func TestJetStreamStoppingAtRunTimeIsFatal(t *testing.T) {
	cfg := testConfig(t)
	cfg.WatchEvery = 50 * time.Millisecond
	b := startBroker(t, cfg)
	select {
	case <-b.Done():
		t.Fatal("Done closed on a healthy broker")
	case <-time.After(3 * cfg.WatchEvery):
	}
	if err := b.Err(); err != nil {
		t.Fatalf("Err on a healthy broker = %v", err)
	}
	if err := b.srv.ShutdownJetStream(); err != nil {
		t.Fatal(err)
	}
	// The watcher may have noticed first: then it is already fatal.
	if err := b.Healthy(); !errors.Is(err, ErrJetStreamDisabled) && !errors.Is(err, ErrFatal) {
		t.Fatalf("Healthy without JetStream = %v, want ErrJetStreamDisabled or ErrFatal", err)
	}
	select {
	case <-b.Done():
	case <-time.After(waitTimeout):
		t.Fatal("Done not closed after JetStream stopped")
	}
	if err := b.Err(); !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "JetStream") {
		t.Fatalf("Err = %v, want ErrFatal naming JetStream", err)
	}
}

// A clean Shutdown closes Done without an error.
func TestShutdownIsNotAnError(t *testing.T) {
	b := startBroker(t, testConfig(t))
	b.Shutdown()
	<-b.Done()
	if err := b.Err(); err != nil {
		t.Fatalf("Err after Shutdown = %v", err)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"empty password":   func(c *Config) { c.ModemPassword = "" },
		"empty user":       func(c *Config) { c.ModemUser = "" },
		"reserved user":    func(c *Config) { c.ModemUser = "poller" },
		"empty store":      func(c *Config) { c.StoreDir = "" },
		"listen no port":   func(c *Config) { c.Listen = "127.0.0.1" },
		"listen bad port":  func(c *Config) { c.Listen = "127.0.0.1:http" },
		"password too big": func(c *Config) { c.ModemPassword = strings.Repeat("x", 73) },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			mutate(&cfg)
			b, err := Start(t.Context(), cfg)
			if !errors.Is(err, ErrConfig) {
				if b != nil {
					b.Shutdown()
				}
				t.Fatalf("Start = %v, want ErrConfig", err)
			}
		})
	}
}

func TestStartFailsWithoutExitingOnFatalServerErrors(t *testing.T) {
	t.Run("port in use", func(t *testing.T) {
		first := startBroker(t, testConfig(t))
		cfg := testConfig(t)
		cfg.Listen = first.srv.Addr().String()
		b, err := Start(t.Context(), cfg)
		if !errors.Is(err, ErrFatal) {
			if b != nil {
				b.Shutdown()
			}
			t.Fatalf("Start on a used port = %v, want ErrFatal", err)
		}
	})
	t.Run("store not writable", func(t *testing.T) {
		cfg := testConfig(t)
		// A regular file where the store directory should be makes
		// JetStream fail to start while the server itself runs on.
		cfg.StoreDir = filepath.Join(cfg.StoreDir, "file")
		if err := os.WriteFile(cfg.StoreDir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := Start(t.Context(), cfg)
		if !errors.Is(err, ErrFatal) && !errors.Is(err, ErrJetStreamDisabled) {
			if b != nil {
				b.Shutdown()
			}
			t.Fatalf("Start with a broken store = %v, want ErrFatal or ErrJetStreamDisabled", err)
		}
	})
}

func TestClientURLForUnspecifiedHost(t *testing.T) {
	cfg := testConfig(t)
	cfg.Listen = "0.0.0.0:-1"
	b := startBroker(t, cfg)
	if !strings.HasPrefix(b.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("ClientURL = %q", b.ClientURL())
	}
	connectModem(t, b)
}
