package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sensorsreport/smsgw/services/poller/internal/broker"
	"github.com/sensorsreport/smsgw/services/poller/internal/webhook"
	"github.com/sensorsreport/smsgw/shared/schema"
)

const secret = "s3cret"

type hit struct {
	header http.Header
	body   []byte
}

// receiver is a webhook endpoint that can be switched to failing.
type receiver struct {
	mu     sync.Mutex
	status int
	hits   []hit
	got    chan struct{}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	st := r.status
	r.hits = append(r.hits, hit{req.Header.Clone(), b})
	r.mu.Unlock()
	if req.Method != http.MethodPost {
		st = http.StatusMethodNotAllowed
	}
	w.WriteHeader(st)
	r.got <- struct{}{}
}

func (r *receiver) set(st int) { r.mu.Lock(); r.status = st; r.mu.Unlock() }

func start(t *testing.T, url string) (*broker.Broker, jetstream.JetStream, func()) {
	t.Helper()
	dir := t.TempDir()
	b, err := broker.Start(t.Context(), broker.Config{Listen: "127.0.0.1:-1", StoreDir: dir, ModemUser: "modem", ModemPassword: "pw", Countries: []string{"RO"},
		Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	f, err := webhook.New(t.Context(), webhook.Config{URL: url, Secret: secret, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}, b.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return b, b.JetStream(), stop
}

func publish(t *testing.T, js jetstream.JetStream, subject, id string, body []byte) {
	t.Helper()
	if _, err := js.Publish(t.Context(), subject, body, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
}

func await(t *testing.T, r *receiver, n int) []hit {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		h := append([]hit(nil), r.hits...)
		r.mu.Unlock()
		if len(h) >= n {
			return h
		}
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("%d webhook calls, want %d", len(h), n)
		}
	}
}

func TestForwardsSignedEventsAndRetriesUntil2xx(t *testing.T) {
	r := &receiver{status: http.StatusServiceUnavailable, got: make(chan struct{}, 100)}
	srv := httptest.NewServer(r)
	defer srv.Close()
	_, js, _ := start(t, srv.URL+"/hook")

	ev := schema.Received{Event: schema.EventReceived, ID: "rcv_abc", From: "+40711111111", Text: "ACK ✓",
		ReceivedAt: time.Date(2026, 12, 1, 10, 0, 0, 0, time.FixedZone("", 7200)), Parts: 1, Complete: true, Modem: "490154203237518"}
	body, _ := json.Marshal(ev)
	publish(t, js, ev.Subject(), ev.ID, body)
	await(t, r, 3) // two 503s and the webhook is still retried
	r.set(http.StatusNoContent)
	hits := await(t, r, 4)
	for _, h := range hits {
		if string(h.body) != string(body) {
			t.Fatalf("body %s, want the event verbatim %s", h.body, body)
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(h.body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		for k, v := range map[string]string{
			"Content-Type": "application/json", "X-Smsgw-Event": "sms.received",
			"Idempotency-Key": "rcv_abc", "X-Smsgw-Signature": want,
		} {
			if got := h.header.Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
	}
	// The next event flows once the first is acked; a malformed one is dropped.
	publish(t, js, "sms.events.received", "junk", []byte(`{"event":"sms.bogus","id":"x"}`))
	d := schema.Delivery{Event: schema.EventDelivery, ID: "dlv_1", SmsID: "42", Status: schema.DeliveryFailed, Parts: 2, Reason: "incompatible destination"}
	body2, _ := json.Marshal(d)
	publish(t, js, d.Subject(), d.ID, body2)
	hits = await(t, r, 5)
	if h := hits[4]; h.header.Get("X-Smsgw-Event") != "sms.delivery" || string(h.body) != string(body2) {
		t.Errorf("second event: %v %s", h.header, h.body)
	}
}

func TestUnackedEventIsForwardedAgainAfterRestart(t *testing.T) {
	r := &receiver{status: http.StatusInternalServerError, got: make(chan struct{}, 100)}
	srv := httptest.NewServer(r)
	defer srv.Close()
	b, js, stop := start(t, srv.URL)
	body := []byte(`{"event":"sms.received","id":"rcv_restart"}`)
	publish(t, js, "sms.events.received", "rcv_restart", body)
	await(t, r, 1)
	stop() // the poller goes away while the webhook is down

	r.set(http.StatusOK)
	f, err := webhook.New(t.Context(), webhook.Config{URL: srv.URL, Secret: secret, Log: zap.NewNop()}, b.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	hits := await(t, r, 2)
	if got := hits[len(hits)-1].header.Get("Idempotency-Key"); got != "rcv_restart" {
		t.Errorf("redelivered with id %q", got)
	}
}

func TestSignMatchesAReceiverCheck(t *testing.T) {
	body := []byte(`{"event":"sms.received","id":"x"}`)
	// The README's verification, in Go.
	mac := hmac.New(sha256.New, []byte("k"))
	mac.Write(body)
	if webhook.Sign("k", body) != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
		t.Fatal("signature mismatch")
	}
	// The same vector through Python's hmac and `openssl dgst -sha256 -hmac k`.
	if got := webhook.Sign("k", body); got != "sha256=c8336759d9c8a203a77926d60a5406a44b83a45693128fde432328014380e595" {
		t.Fatalf("known answer: %s", got)
	}
	if webhook.Sign("k", body) == webhook.Sign("other", body) {
		t.Fatal("the secret does not matter")
	}
}
