package app

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/delivery"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/inbox"
)

// deliverySweep is how often final delivery events a broker outage left
// unpublished are retried. Each sweep reads every part record kept (up to
// 72 h of them), so it runs rarely: every 10 s it cost an idle modem that
// had sent 1,000 SMS about 0.4 s of CPU a minute.
const deliverySweep = 2 * time.Minute

// startReceive wires the receive path (MODEM_RECEIVE), delivery reports
// (MODEM_DELIVERY_REPORTS) and the canary (CANARY_INTERVAL) before the modem runs: the inbox becomes the
// modem's Receiver and the tracker records what the sender submits. The
// returned stop ends their goroutines and waits for them.
func startReceive(ctx context.Context, cfg Config, js jetstream.Publisher, modem *gsm.Modem, log *zap.Logger, reg prometheus.Registerer) (stop func(), err error) {
	if errs := cfg.receiveErrors(); len(errs) > 0 {
		return nil, errs
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait(); delivery.Install(nil) }
	var tracker *delivery.Tracker
	if cfg.DeliveryReports && cfg.Receive {
		tracker, err = delivery.Open(cfg.DataDir, js, log.Named("delivery"), reg)
		if err != nil {
			stop()
			return nil, err
		}
		delivery.Install(tracker)
		wg.Add(1)
		go func() { defer wg.Done(); tracker.Run(ctx, deliverySweep) }()
	}
	if !cfg.Receive {
		if cfg.DeliveryReports {
			log.Warn("MODEM_RECEIVE is off, so no delivery reports are requested (MODEM_DELIVERY_REPORTS needs it)")
		}
		return stop, nil
	}
	c, err := newCanary(cfg, modem, log, reg, false)
	if err != nil {
		stop()
		return nil, err
	}
	icfg := inbox.Config{
		Dir: cfg.DataDir, Timeout: cfg.ReassemblyTimeout.D(),
		IMEI: func() string { return modem.Status().IMEI },
		Log:  log.Named("inbox"), Reg: reg,
	}
	if tracker != nil {
		icfg.Reports = tracker.Report
	}
	if c != nil {
		icfg.Canary = c.Take
	}
	in, err := inbox.New(icfg, js)
	if err != nil {
		stop()
		return nil, err
	}
	modem.SetReceiver(in)
	wg.Add(1)
	go func() { defer wg.Done(); in.Run(ctx) }()
	if c != nil {
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(ctx) }()
	}
	return stop, nil
}
