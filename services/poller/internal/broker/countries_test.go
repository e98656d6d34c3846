package broker

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sensorsreport/smsgw/shared/schema"
)

func consumerNames(t *testing.T, b *Broker) []string {
	t.Helper()
	jobs, err := b.JetStream().Stream(testCtx(t), schema.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	l := jobs.ConsumerNames(testCtx(t))
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// The single jobs consumer of earlier releases is replaced by one per
// country at start, and a job it had handed out but never got an ack for
// is delivered again by the new consumer: no job is lost in the move.
func TestLegacyJobsConsumerIsMigrated(t *testing.T) {
	cfg := testConfig(t)
	b := startBroker(t, cfg)
	ctx := testCtx(t)
	js := b.JetStream()
	// The store as the previous release left it.
	if err := js.DeleteConsumer(ctx, schema.JobsStream, schema.JobsConsumerFor("RO")); err != nil {
		t.Fatal(err)
	}
	legacy, err := js.CreateConsumer(ctx, schema.JobsStream, jetstream.ConsumerConfig{
		Durable: legacyJobsConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour,
		FilterSubject: schema.JobsFilter, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	publishJob(t, b, "held.1")
	publishJob(t, b, "queued.1")
	held := next(t, legacy) // in flight when the old poller stopped
	if string(held.Data()) != "job held.1" {
		t.Fatalf("held %q", held.Data())
	}
	b.Shutdown()

	b = startBroker(t, cfg)
	if got := consumerNames(t, b); !slices.Equal(got, []string{"modem-RO"}) {
		t.Fatalf("jobs consumers after the move: %v", got)
	}
	m := connectModem(t, b)
	cons, err := m.js.Consumer(testCtx(t), schema.JobsStream, schema.JobsConsumerFor("RO"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		msg := next(t, cons)
		got = append(got, string(msg.Data()))
		if err := msg.DoubleAck(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, []string{"job held.1", "job queued.1"}) {
		t.Fatalf("delivered after the move: %v", got)
	}
	waitFor(t, "the stream to empty", func() bool { return jobsPending(t, b) == 0 })
}

// Every configured country gets a consumer; a country whose jobs are still
// queued keeps its consumer after it left SMS_COUNTRIES, and loses it once
// none is left.
func TestJobsConsumersFollowTheCountries(t *testing.T) {
	cfg := testConfig(t)
	cfg.Countries = []string{"RO", "MD"}
	b := startBroker(t, cfg)
	if got := consumerNames(t, b); !slices.Equal(got, []string{"modem-MD", "modem-RO"}) {
		t.Fatalf("consumers %v", got)
	}
	if _, err := b.JetStream().Publish(testCtx(t), schema.JobSubject("MD"), []byte("job md.1"), jetstream.WithMsgID("md.1")); err != nil {
		t.Fatal(err)
	}
	b.Shutdown()

	cfg.Countries = []string{"RO"}
	b = startBroker(t, cfg)
	if got := consumerNames(t, b); !slices.Equal(got, []string{"modem-MD", "modem-RO"}) {
		t.Fatalf("consumers with an MD job queued: %v", got)
	}
	m := connectModem(t, b)
	cons, err := m.js.Consumer(testCtx(t), schema.JobsStream, schema.JobsConsumerFor("MD"))
	if err != nil {
		t.Fatal(err)
	}
	msg := next(t, cons)
	if err := msg.DoubleAck(testCtx(t)); err != nil || string(msg.Data()) != "job md.1" {
		t.Fatalf("%q %v", msg.Data(), err)
	}
	b.Shutdown()

	b = startBroker(t, cfg)
	if got := consumerNames(t, b); !slices.Equal(got, []string{"modem-RO"}) {
		t.Fatalf("consumers with nothing queued for MD: %v", got)
	}
}

// The modem user lists the jobs consumers, pulls from and acks any of
// them, and hears and sends wake-ups; it cannot read the jobs themselves
// outside a pull.
func TestModemUsesEveryJobsConsumer(t *testing.T) {
	cfg := testConfig(t)
	cfg.Countries = []string{"RO", "MD"}
	b := startBroker(t, cfg)
	m := connectModem(t, b)
	ctx := testCtx(t)

	resp, err := m.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.NAMES."+schema.JobsStream, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	var names struct{ Consumers []string }
	if err := json.Unmarshal(resp.Data, &names); err != nil || len(names.Consumers) != 2 {
		t.Fatalf("consumer names %s: %v", resp.Data, err)
	}
	wake, err := m.nc.SubscribeSync(schema.WakeFilter)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, cc := range []string{"RO", "MD"} {
		if _, err := b.JetStream().Publish(ctx, schema.JobSubject(cc), []byte("job "+cc), jetstream.WithMsgID(cc)); err != nil {
			t.Fatal(err)
		}
		cons, err := m.js.Consumer(ctx, schema.JobsStream, schema.JobsConsumerFor(cc))
		if err != nil {
			t.Fatal(err)
		}
		msg := next(t, cons)
		if err := msg.DoubleAck(ctx); err != nil || string(msg.Data()) != "job "+cc {
			t.Fatalf("%s: %q %v", cc, msg.Data(), err)
		}
		if err := m.nc.Publish(schema.WakeSubjectFor(cc), nil); err != nil {
			t.Fatal(err)
		}
		if w, err := wake.NextMsg(waitTimeout); err != nil || w.Subject != "sms.wake."+cc {
			t.Fatalf("wake-up: %v %v", w, err)
		}
	}
	if errs := m.barrier(t); len(errs) > 0 {
		t.Fatalf("modem operations raised errors: %v", errs)
	}
	if _, err := m.nc.SubscribeSync(schema.JobsFilter); err != nil {
		t.Fatal(err)
	}
	m.expectDenied(t, schema.JobsFilter)
}

// A job of any country's consumer that exhausts its deliveries is handed
// over; the scans of each consumer never take another country's queued job.
func TestDeadJobOfAnyCountry(t *testing.T) {
	cfg := deadJobConfig(t)
	cfg.Countries = []string{"RO", "MD"}
	cfg.DeadJobScan = 50 * time.Millisecond
	b := startBroker(t, cfg)
	rec := newDeadJobRecorder()
	watch(t, b, rec.handle)
	m := connectModem(t, b)
	md, err := m.js.Consumer(testCtx(t), schema.JobsStream, schema.JobsConsumerFor("MD"))
	if err != nil {
		t.Fatal(err)
	}
	// Queued for RO before the MD job, never pulled: below MD's floor.
	publishJob(t, b, "ro.waiting")
	if _, err := b.JetStream().Publish(testCtx(t), schema.JobSubject("MD"), []byte("job md.dead"), jetstream.WithMsgID("md.dead")); err != nil {
		t.Fatal(err)
	}
	exhaust(t, md, cfg.MaxDeliver)
	if got := rec.wait(t); got != "job md.dead" {
		t.Fatalf("dead job handler got %q", got)
	}
	time.Sleep(300 * time.Millisecond) // several scans; asserting that nothing happens
	if got := rec.handled(); len(got) != 1 {
		t.Fatalf("dead job handler calls = %q, want the MD job only", got)
	}
	msg := next(t, m.consumer(t))
	if string(msg.Data()) != "job ro.waiting" {
		t.Fatalf("RO job = %q", msg.Data())
	}
}
