// Package canary proves end to end that the gateway can deliver: every
// CANARY_INTERVAL the modem sends a short SMS with a nonce to CANARY_NUMBER
// (by default its own number) and waits up to CANARY_TIMEOUT for it to come
// back through the receive path. Canary messages are consumed by the inbox
// and never forwarded as sms.received. The last result is kept in
// MODEM_DATA_DIR/canary.json for `sms-modem diag`.
package canary

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/durable"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
	"github.com/sensorsreport/smsgw/shared/logging"
)

// Prefix starts every canary text; anything received that starts with it
// is a canary and is never forwarded.
const Prefix = "smsgw canary "

// ErrTimeout means the canary did not come back in time.
var ErrTimeout = errors.New("canary did not come back in time")

// Modem is what the canary needs to send.
type Modem interface {
	WaitReady(ctx context.Context) error
	Submit(ctx context.Context, tpduLen int, hexPDU string) (int, error)
}

// Config configures the canary.
type Config struct {
	Interval time.Duration // CANARY_INTERVAL; 0 is off (Run returns at once)
	Timeout  time.Duration // CANARY_TIMEOUT
	Number   pdu.Number    // CANARY_NUMBER, else MODEM_NUMBER
	Dir      string        // MODEM_DATA_DIR
	Log      *zap.Logger
	Reg      prometheus.Registerer
}

// Result is the outcome of the last round trip.
type Result struct {
	At        time.Time     `json:"at"`
	OK        bool          `json:"ok"`
	RoundTrip time.Duration `json:"round_trip,omitempty"`
	Error     string        `json:"error,omitempty"`
}

// Canary sends canaries and recognises them coming back.
type Canary struct {
	cfg   Config
	modem Modem
	log   *zap.Logger

	mu      sync.Mutex
	pending map[string]chan struct{} // nonce -> closed when it came back

	roundtrip prometheus.Histogram
	failures  prometheus.Counter
}

// New builds a canary.
func New(cfg Config, m Modem) *Canary {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	c := &Canary{cfg: cfg, modem: m, log: cfg.Log, pending: map[string]chan struct{}{},
		roundtrip: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sms_modem_canary_roundtrip_seconds", Help: "Time from sending a canary SMS to receiving it back.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600},
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sms_modem_canary_failures_total", Help: "Canary round trips that failed or timed out.",
		}),
	}
	if cfg.Reg != nil {
		cfg.Reg.MustRegister(c.roundtrip, c.failures)
	}
	return c
}

// Take is the inbox's hook: it reports whether an incoming text is a
// canary (then it is consumed, never forwarded) and completes the round
// trip waiting for it. A canary that comes back late is still consumed.
func (c *Canary) Take(from, text string) bool {
	nonce, ok := strings.CutPrefix(text, Prefix)
	if !ok {
		return false
	}
	c.mu.Lock()
	ch, waiting := c.pending[nonce]
	if waiting {
		close(ch)
		delete(c.pending, nonce)
	}
	c.mu.Unlock()
	if !waiting {
		c.log.Info("late or foreign canary consumed", logging.Phone(from))
	}
	return true
}

// Once sends one canary and waits for it to come back.
func (c *Canary) Once(ctx context.Context) (time.Duration, error) {
	raw := make([]byte, 6)
	if _, err := rand.Read(raw); err != nil {
		return 0, err
	}
	nonce := hex.EncodeToString(raw)
	parts, err := pdu.Encode(c.cfg.Number, Prefix+nonce, nil, pdu.Options{ValidityPeriod: c.cfg.Timeout})
	if err != nil {
		return 0, fmt.Errorf("canary: %w", err)
	}
	ch := make(chan struct{})
	c.mu.Lock()
	c.pending[nonce] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, nonce)
		c.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if err := c.modem.WaitReady(ctx); err != nil {
		return 0, fmt.Errorf("canary: modem not ready: %w", err)
	}
	start := time.Now()
	if _, err := c.modem.Submit(ctx, parts[0].TPDULen, parts[0].Hex); err != nil {
		return 0, fmt.Errorf("canary: send: %w", err)
	}
	select {
	case <-ch:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("%w (%s)", ErrTimeout, c.cfg.Timeout)
	}
}

// Check runs one round trip and records it: metrics, log, canary.json.
func (c *Canary) Check(ctx context.Context) Result {
	d, err := c.Once(ctx)
	r := Result{At: time.Now().UTC(), OK: err == nil, RoundTrip: d}
	if err != nil {
		if ctx.Err() != nil {
			return r // shutting down: not a failure of the gateway
		}
		r.Error = err.Error()
		c.failures.Inc()
		c.log.Error("canary round trip failed", zap.Error(err), logging.Phone(c.cfg.Number.String()))
	} else {
		c.roundtrip.Observe(d.Seconds())
		c.log.Info("canary round trip", zap.Duration("took", d))
	}
	if b, jerr := json.Marshal(r); jerr == nil {
		if werr := durable.WriteFile(filepath.Join(c.cfg.Dir, "canary.json"), b); werr != nil {
			c.log.Warn("canary result not saved", zap.Error(werr))
		}
	}
	return r
}

// Run checks every Interval until ctx ends; it returns at once when the
// canary is off.
func (c *Canary) Run(ctx context.Context) {
	if c.cfg.Interval <= 0 {
		return
	}
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Check(ctx)
		}
	}
}

// Last reads the last recorded result from dir; ok is false when there is none.
func Last(dir string) (r Result, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "canary.json"))
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, false, fmt.Errorf("canary.json: %w", err)
	}
	return r, true, nil
}
