// Package webhook forwards the modem's events (sms.received, sms.delivery)
// from JetStream to INCOMING_WEBHOOK_URL. Each event is a POST of the raw
// event JSON with X-Smsgw-Event, Idempotency-Key (the event id) and
// X-Smsgw-Signature (sha256=<hex HMAC-SHA256 of the body>). An event is
// acked only after a 2xx, so it is retried with back-off across restarts of
// either process and arrives at least once, with the same id every time.
// Without a URL the events are logged, counted and left in the stream.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/backoff"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// Config configures the forwarder.
type Config struct {
	URL    string // INCOMING_WEBHOOK_URL; "" only logs and counts
	Secret string // INCOMING_WEBHOOK_SECRET
	Client *http.Client
	// MinBackoff and MaxBackoff bound the wait between attempts.
	MinBackoff, MaxBackoff time.Duration
	Log                    *zap.Logger
	Reg                    prometheus.Registerer
}

// Forwarder pulls events and posts them.
type Forwarder struct {
	cfg  Config
	cons jetstream.Consumer
	log  *zap.Logger

	events   *prometheus.CounterVec
	attempts *prometheus.CounterVec
}

// Sign returns the X-Smsgw-Signature value for body.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// New binds to the events consumer.
func New(ctx context.Context, cfg Config, js jetstream.JetStream) (*Forwarder, error) {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 15 * time.Second
	}
	cons, err := js.Consumer(ctx, schema.EventsStream, schema.EventsConsumer)
	if err != nil {
		return nil, fmt.Errorf("bind %s/%s: %w", schema.EventsStream, schema.EventsConsumer, err)
	}
	f := &Forwarder{cfg: cfg, cons: cons, log: cfg.Log,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_poller_events_total", Help: "Modem events handled, by event and outcome (forwarded, logged, invalid).",
		}, []string{"event", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_poller_webhook_attempts_total", Help: "Webhook POSTs by result (2xx, 4xx, 5xx, error).",
		}, []string{"result"}),
	}
	if cfg.Reg != nil {
		cfg.Reg.MustRegister(f.events, f.attempts)
	}
	return f, nil
}

// Run forwards events one at a time, in order, until ctx ends.
func (f *Forwarder) Run(ctx context.Context) error {
	wait := backoff.New(f.cfg.MinBackoff, f.cfg.MaxBackoff)
	for ctx.Err() == nil {
		// An event ends the pull at once and so does ctx (SIGTERM must
		// not wait out an idle fetch); a long pull keeps an idle Pi quiet.
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		batch, err := f.cons.Fetch(1, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				break
			}
			f.log.Warn("fetching events failed", zap.Error(err))
			if !wait.Wait(ctx) {
				break
			}
			continue
		}
		for msg := range batch.Messages() {
			f.handle(ctx, msg, wait)
		}
		cancel()
		if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
			f.log.Debug("fetch ended", zap.Error(err))
		}
	}
	return nil
}

func (f *Forwarder) handle(ctx context.Context, msg jetstream.Msg, wait *backoff.Backoff) {
	body := msg.Data()
	h, err := schema.DecodeEventHeader(body)
	if err != nil {
		f.events.WithLabelValues("unknown", "invalid").Inc()
		f.log.Error("event cannot be forwarded; dropping it", zap.String("subject", msg.Subject()), zap.Error(err))
		_ = msg.Term()
		return
	}
	log := f.log.With(zap.String("event", h.Event), zap.String("id", h.ID))
	if f.cfg.URL == "" {
		f.events.WithLabelValues(h.Event, "logged").Inc()
		log.Info("event kept in the broker (no INCOMING_WEBHOOK_URL)")
		_ = msg.DoubleAck(ctx)
		return
	}
	for attempt := 1; ; attempt++ {
		err := f.post(ctx, h, body)
		if err == nil {
			break
		}
		log.Warn("webhook not accepted; retrying", zap.Int("attempt", attempt), zap.Error(err))
		_ = msg.InProgress() // keep it ours while we wait
		if !wait.Wait(ctx) {
			_ = msg.Nak() // shutting down: hand it back for the next start
			return
		}
	}
	wait.Reset()
	f.events.WithLabelValues(h.Event, "forwarded").Inc()
	log.Info("event forwarded")
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn("ack not confirmed; the event may be forwarded again with the same id", zap.Error(err))
	}
}

func (f *Forwarder) post(ctx context.Context, h schema.EventHeader, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Smsgw-Event", h.Event)
	req.Header.Set("Idempotency-Key", h.ID)
	req.Header.Set("X-Smsgw-Signature", Sign(f.cfg.Secret, body))
	resp, err := f.cfg.Client.Do(req)
	if err != nil {
		f.attempts.WithLabelValues("error").Inc()
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	f.attempts.WithLabelValues(fmt.Sprintf("%dxx", resp.StatusCode/100)).Inc()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
