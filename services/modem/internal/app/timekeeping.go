package app

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/ledger"
	"github.com/sensorsreport/smsgw/shared/backoff"
	"github.com/sensorsreport/smsgw/shared/clock"
	"github.com/sensorsreport/smsgw/shared/schema"
)

const (
	// clockRefresh is how often the modem asks the poller for the time once
	// it has a reference; the monotonic clock carries it in between.
	clockRefresh = 10 * time.Minute
	// pruneEvery paces the ledger's clean-up while the process runs.
	pruneEvery = 10 * time.Minute
)

// syncClock keeps clk referenced to the poller's trusted time (the SMS API's
// clock): at once, again after every reconnect, and every clockRefresh. A
// restarted modem on a Pi whose wall clock is wrong therefore takes no job
// until the poller has answered, unless the kernel says its clock is synced.
func syncClock(ctx context.Context, nc *nats.Conn, clk *clock.Clock, reconnected <-chan struct{}, timeSet chan<- struct{}, log *zap.Logger) {
	retry := backoff.New(time.Second, 30*time.Second)
	for ctx.Err() == nil {
		wait := clockRefresh
		if err := askTime(ctx, nc, clk, log); err != nil {
			log.Debug("no time from the poller yet", zap.Error(err))
			wait = retry.Next()
		} else {
			retry.Reset()
			select { // the heartbeat says ready at once
			case timeSet <- struct{}{}:
			default:
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-reconnected:
		}
		t.Stop()
	}
}

func askTime(ctx context.Context, nc *nats.Conn, clk *clock.Clock, log *zap.Logger) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sent := time.Now()
	msg, err := nc.RequestWithContext(rctx, schema.ClockSubject, nil)
	if err != nil {
		return err
	}
	received := time.Now()
	r, err := schema.Decode[schema.ClockReading](msg.Data)
	if err != nil {
		return err
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	// The poller read its clock somewhere in the round trip: the midpoint.
	mid := sent.Add(received.Sub(sent) / 2)
	if clk.Observe(r.Now, mid) {
		log.Info("time reference from the poller", zap.Time("now", r.Now), zap.String("source", r.Source))
	}
	if skew, ok := clk.Skew(); ok && (skew > 5*time.Second || skew < -5*time.Second) {
		log.Warn("the local clock is off; TTL decisions use the poller's time", zap.Duration("skew", skew.Round(time.Second)))
	}
	return nil
}

// timeReady is the readiness view of the clock.
func timeReady(clk *clock.Clock) error {
	_, _, err := clk.Now()
	return err
}

// pruneLedger removes ledger entries no claim can need any more, while the
// process runs; without a trustworthy time it waits.
func pruneLedger(ctx context.Context, led *ledger.Ledger, clk *clock.Clock, retention time.Duration, log *zap.Logger) {
	for {
		if now, _, err := clk.Now(); err == nil {
			n, err := led.Prune(now, retention)
			switch {
			case err != nil:
				log.Error("ledger prune failed", zap.Error(err))
			case n > 0:
				log.Info("pruned old ledger entries", zap.Int("count", n))
			}
		}
		if !backoff.Sleep(ctx, pruneEvery) {
			return
		}
	}
}
