package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// deniedTimeout bounds requests the server drops for lack of permission:
// the client sees no reply, only an asynchronous permissions error.
const deniedTimeout = 300 * time.Millisecond

// barrier publishes to a subject the modem may not use and returns every
// asynchronous error that arrived before the barrier's own. The server
// answers in order, so a violation by anything sent earlier shows up here.
func (m *modemClient) barrier(t *testing.T) []error {
	t.Helper()
	const subject = "barrier.denied"
	if err := m.nc.Publish(subject, nil); err != nil {
		t.Fatal(err)
	}
	var before []error
	for {
		select {
		case err := <-m.errs:
			if strings.Contains(err.Error(), subject) {
				return before
			}
			before = append(before, err)
		case <-time.After(waitTimeout):
			t.Fatal("barrier: no permissions error for the barrier publish")
		}
	}
}

// expectDenied waits for the permissions violation naming subject.
func (m *modemClient) expectDenied(t *testing.T, subject string) {
	t.Helper()
	want := `"` + subject + `"`
	for {
		select {
		case err := <-m.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				return
			}
			t.Logf("other async error: %v", err)
		case <-time.After(waitTimeout):
			t.Fatalf("no permissions violation for %s", subject)
		}
	}
}

func TestModemCanDoItsJob(t *testing.T) {
	b := startBroker(t, testConfig(t))
	m := connectModem(t, b)
	ctx := testCtx(t)

	status := make(chan []byte, 1)
	if _, err := b.Conn().Subscribe(schema.StatusFilter, func(msg *nats.Msg) { status <- msg.Data }); err != nil {
		t.Fatal(err)
	}
	if err := b.Conn().Flush(); err != nil {
		t.Fatal(err)
	}

	cons := m.consumer(t)
	publishJob(t, b, "nak.1")
	msg := next(t, cons)
	if err := msg.InProgress(); err != nil {
		t.Fatal(err)
	}
	if err := msg.NakWithDelay(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	msg = next(t, cons)
	if n := numDelivered(t, msg); n != 2 {
		t.Fatalf("after NakWithDelay NumDelivered = %d, want 2", n)
	}
	if err := msg.TermWithReason("invalid_number"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "terminated job to leave the stream", func() bool { return jobsPending(t, b) == 0 })

	publishJob(t, b, "ack.1")
	if err := next(t, cons).DoubleAck(ctx); err != nil {
		t.Fatalf("DoubleAck: %v", err)
	}
	if _, err := cons.Info(ctx); err != nil {
		t.Fatalf("consumer info: %v", err)
	}

	// The attempting record every modem sees: bind, create, read back.
	kv, err := m.js.KeyValue(ctx, schema.AttemptsBucket)
	if err != nil {
		t.Fatalf("bind %s: %v", schema.AttemptsBucket, err)
	}
	if _, err := kv.Create(ctx, "dGVuYW50.c21zLTE", []byte("pi1")); err != nil {
		t.Fatalf("create attempt: %v", err)
	}
	if _, err := kv.Create(ctx, "dGVuYW50.c21zLTE", []byte("pi2")); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("second create of an attempt = %v, want ErrKeyExists", err)
	}
	if e, err := kv.Get(ctx, "dGVuYW50.c21zLTE"); err != nil || string(e.Value()) != "pi1" {
		t.Fatalf("read attempt: %v", err)
	}

	r := schema.Result{V: schema.Version, JobID: "ack.1", Status: schema.StatusSent}
	ack, err := m.js.Publish(ctx, r.Subject(), []byte(`{}`), jetstream.WithMsgID(r.MsgID()))
	if err != nil {
		t.Fatalf("publish result: %v", err)
	}
	if ack.Stream != schema.ResultsStream || ack.Duplicate {
		t.Fatalf("result PubAck = %+v", ack)
	}

	ev := schema.Received{Event: schema.EventReceived, ID: "rcv_1"}
	ack, err = m.js.Publish(ctx, ev.Subject(), []byte(`{}`), jetstream.WithMsgID(ev.ID))
	if err != nil {
		t.Fatalf("publish event: %v", err)
	}
	if ack.Stream != schema.EventsStream || ack.Duplicate {
		t.Fatalf("event PubAck = %+v", ack)
	}
	if ack, err = m.js.Publish(ctx, ev.Subject(), []byte(`{}`), jetstream.WithMsgID(ev.ID)); err != nil || !ack.Duplicate {
		t.Fatalf("repeat of an event id: %+v, %v; want a duplicate", ack, err)
	}

	if err := m.nc.Publish(schema.StatusSubjectFor("m1"), []byte("ready")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-status:
		if string(got) != "ready" {
			t.Fatalf("status = %q", got)
		}
	case <-time.After(waitTimeout):
		t.Fatal("modem status not received by the poller")
	}

	if errs := m.barrier(t); len(errs) > 0 {
		t.Fatalf("modem operations raised errors: %v", errs)
	}
}

func TestModemIsRefusedEverythingElse(t *testing.T) {
	b := startBroker(t, testConfig(t))
	m := connectModem(t, b)
	denied := func() context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), deniedTimeout)
		t.Cleanup(cancel)
		return ctx
	}

	for _, tc := range []struct {
		name, subject string
		do            func() error
	}{
		{"publish a job", "sms.jobs.RO", func() error {
			_, err := m.js.Publish(denied(), "sms.jobs.RO", []byte("forged"))
			return err
		}},
		{"bind the results consumer", "$JS.API.CONSUMER.INFO.SMS_RESULTS.poller", func() error {
			_, err := m.js.Consumer(denied(), schema.ResultsStream, schema.ResultsConsumer)
			return err
		}},
		{"pull results", "$JS.API.CONSUMER.MSG.NEXT.SMS_RESULTS.poller", func() error {
			_, err := m.nc.RequestWithContext(denied(), "$JS.API.CONSUMER.MSG.NEXT.SMS_RESULTS.poller", []byte(`{"batch":1}`))
			return err
		}},
		{"stream info", "$JS.API.STREAM.INFO.SMS_JOBS", func() error {
			_, err := m.js.Stream(denied(), schema.JobsStream)
			return err
		}},
		{"create a stream", "$JS.API.STREAM.CREATE.EVIL", func() error {
			_, err := m.js.CreateStream(denied(), jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}})
			return err
		}},
		// Creating a bucket starts with an account info request.
		{"create a KV bucket", "$JS.API.INFO", func() error {
			_, err := m.js.CreateKeyValue(denied(), jetstream.KeyValueConfig{Bucket: "ledger"})
			return err
		}},
		{"bind a KV bucket", "$JS.API.STREAM.INFO.KV_ledger", func() error {
			_, err := m.js.KeyValue(denied(), "ledger")
			return err
		}},
		{"create a consumer", "$JS.API.CONSUMER.CREATE.SMS_JOBS.evil.sms.jobs.>", func() error {
			_, err := m.js.CreateOrUpdateConsumer(denied(), schema.JobsStream,
				jetstream.ConsumerConfig{Durable: "evil", FilterSubject: schema.JobsFilter})
			return err
		}},
		{"update a jobs consumer", "$JS.API.CONSUMER.CREATE.SMS_JOBS.modem-RO.sms.jobs.RO", func() error {
			_, err := m.js.UpdateConsumer(denied(), schema.JobsStream,
				jetstream.ConsumerConfig{Durable: schema.JobsConsumerFor("RO"), FilterSubject: schema.JobSubject("RO"), MaxDeliver: 100})
			return err
		}},
		{"delete a jobs consumer", "$JS.API.CONSUMER.DELETE.SMS_JOBS.modem-RO", func() error {
			return m.js.DeleteConsumer(denied(), schema.JobsStream, schema.JobsConsumerFor("RO"))
		}},
		{"beat outside the per-modem subjects", "sms.modem.status.a.b", func() error {
			return m.nc.Publish("sms.modem.status.a.b", []byte("{}"))
		}},
		{"purge the attempts bucket", "$JS.API.STREAM.PURGE.KV_SMS_ATTEMPTS", func() error {
			_, err := m.nc.RequestWithContext(denied(), "$JS.API.STREAM.PURGE.KV_SMS_ATTEMPTS", nil)
			return err
		}},
		{"ack results", "$JS.ACK.SMS_RESULTS.poller.1.1.1.1.0", func() error {
			return m.nc.Publish("$JS.ACK.SMS_RESULTS.poller.1.1.1.1.0", []byte("+ACK"))
		}},
		{"bind the webhook consumer", "$JS.API.CONSUMER.INFO.SMS_EVENTS.webhook", func() error {
			_, err := m.js.Consumer(denied(), schema.EventsStream, schema.EventsConsumer)
			return err
		}},
		{"ack events", "$JS.ACK.SMS_EVENTS.webhook.1.1.1.1.0", func() error {
			return m.nc.Publish("$JS.ACK.SMS_EVENTS.webhook.1.1.1.1.0", []byte("+ACK"))
		}},
		{"subscribe to events", "sms.events.>", func() error {
			_, err := m.nc.SubscribeSync("sms.events.>")
			return err
		}},
		{"subscribe to jobs", "sms.jobs.>", func() error {
			_, err := m.nc.SubscribeSync("sms.jobs.>")
			return err
		}},
		{"subscribe to advisories", "$JS.EVENT.>", func() error {
			_, err := m.nc.SubscribeSync("$JS.EVENT.>")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = tc.do() // the server drops the request; the client only times out
			m.expectDenied(t, tc.subject)
		})
	}
	if n := jobsPending(t, b); n != 0 {
		t.Fatalf("forged job reached the stream: %d jobs pending", n)
	}
	if _, err := b.JetStream().Stream(testCtx(t), "EVIL"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream created by the modem: %v", err)
	}
}

func TestConnectionsWithoutValidCredentialsAreRefused(t *testing.T) {
	b := startBroker(t, testConfig(t))
	for name, opts := range map[string][]nats.Option{
		"no credentials": nil,
		"wrong password": {nats.UserInfo(testModemUser, "wrong")},
		"internal user":  {nats.UserInfo(internalUser, testModemPass)},
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := nats.Connect(b.ClientURL(), append(opts, nats.NoReconnect())...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("connect error = %v, want an authorization violation", err)
			}
		})
	}
}
