package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/canary"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/health"
)

// newCanary builds the canary from CANARY_* (number: CANARY_NUMBER, else
// MODEM_NUMBER), or returns nil when CANARY_INTERVAL is 0 and manual is false.
func newCanary(cfg Config, m canary.Modem, log *zap.Logger, reg prometheus.Registerer, manual bool) (*canary.Canary, error) {
	if cfg.CanaryInterval.D() <= 0 && !manual {
		return nil, nil
	}
	if cfg.CanaryTimeout.D() <= 0 { // with CANARY_INTERVAL set, Validate said so already
		return nil, config.Invalid("CANARY_TIMEOUT", cfg.CanaryTimeout.String(), "a positive duration such as 5m")
	}
	num, cerr := cfg.canaryNumber()
	if cerr != nil {
		return nil, cerr
	}
	return canary.New(canary.Config{
		Interval: cfg.CanaryInterval.D(), Timeout: cfg.CanaryTimeout.D(), Number: num, Dir: cfg.DataDir,
		Log: log.Named("canary"), Reg: reg,
	}, m), nil
}

// canaryReceiver takes only canary messages, for `sms-modem canary`:
// everything else stays on the SIM for the service.
type canaryReceiver struct{ c *canary.Canary }

func (r canaryReceiver) Receive(_ context.Context, tpdu []byte) error {
	if len(tpdu) > 0 && tpdu[0]&0x03 == 0 {
		if d, err := pdu.DecodeDeliver(tpdu); err == nil && d.Concat == nil && r.c.Take(d.From.Value, d.Text) {
			return nil
		}
	}
	return gsm.ErrLeave
}

// Canary runs one round trip by hand on the modem's port (stop the service
// first) and prints how long it took.
func Canary(ctx context.Context, cfg Config, log *zap.Logger, w io.Writer) error {
	hs := health.New(log)
	m := NewModem(cfg, log, hs)
	defer m.Close()
	c, err := newCanary(cfg, m, log, nil, true)
	if err != nil {
		return err
	}
	m.SetReceiver(canaryReceiver{c})
	pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if _, err := m.Probe(pctx); err != nil {
		return fmt.Errorf("modem not usable: %w", err)
	}
	done := make(chan canary.Result, 1)
	go func() { done <- c.Check(ctx) }()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if !r.OK {
				return errors.New(r.Error)
			}
			fmt.Fprintf(w, "canary came back after %s\n", r.RoundTrip.Round(time.Millisecond))
			return nil
		case <-tick.C:
			if err := m.ReadInbox(ctx); err != nil {
				log.Warn("reading the SIM store failed", zap.Error(err))
			}
		}
	}
}

// printCanary adds the last canary result to diag's table.
func printCanary(w io.Writer, cfg Config) {
	r, ok, err := canary.Last(cfg.DataDir)
	switch {
	case err != nil:
		fmt.Fprintf(w, "Canary        unreadable: %v\n", err)
	case !ok:
		fmt.Fprintf(w, "Canary        no round trip yet\n")
	case r.OK:
		fmt.Fprintf(w, "Canary        came back after %s (%s)\n", r.RoundTrip.Round(time.Millisecond), r.At.Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "Canary        FAILED: %s (%s)\n", r.Error, r.At.Format(time.RFC3339))
	}
}
