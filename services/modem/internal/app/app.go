// Package app wires the modem service together: the modem lifecycle, the
// ledger, the JetStream sender, the heartbeat the poller uses for
// back-pressure, and the health server. Run is what main calls and what
// tests drive.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/device"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/ledger"
	"github.com/sensorsreport/smsgw/services/modem/internal/sender"
	"github.com/sensorsreport/smsgw/shared/clock"
	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/health"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// heartbeatEvery paces the modem's status beat when nothing changes; a
// state change or a broker reconnect sends one at once. Each beat is valid
// for three periods. Fewer beats mean fewer wake-ups on an idle Pi.
const heartbeatEvery = 10 * time.Second

// NewModem builds the modem lifecycle from the configuration.
func NewModem(cfg Config, log *zap.Logger, hs *health.Server) *gsm.Modem {
	var reg = hs.Registry
	opener := device.NewOpener(device.Config{Path: cfg.Device, Baud: cfg.Baud, Log: log.Named("device")})
	return gsm.New(gsm.Config{
		PIN: cfg.PIN, CommandTimeout: cfg.Timeout.D(), SendTimeout: cfg.SendTimeout.D(),
		KeepAlive: cfg.KeepAlive.D(), Log: log.Named("modem"), Reg: reg,
		DeliveryReports: cfg.DeliveryReports && cfg.Receive, // reports are read by the receive path
	}, opener)
}

// Run runs the service until ctx ends. A send in flight at that moment is
// finished, reported and acked first.
func Run(ctx context.Context, cfg Config, log *zap.Logger) error {
	if cfg.NATSUser == "" {
		return config.Missing("NATS_USER", "the broker user the poller was given in its NATS_USER")
	}
	if cfg.NATSPass == "" {
		return config.Missing("NATS_PASSWORD", "the broker password the poller was given in its NATS_PASSWORD")
	}
	if _, err := os.Stat(cfg.Device); errors.Is(err, fs.ErrNotExist) && !strings.HasPrefix(cfg.Device, "tcp://") {
		// Not fatal: a modem unplugged or still enumerating at start is
		// waited for. But say which setting names it.
		log.Warn("MODEM_DEVICE does not exist (yet); waiting for it. Check the path: ls -l /dev/serial/by-id/",
			zap.String("MODEM_DEVICE", cfg.Device))
	}
	hs := health.New(log)
	modem := NewModem(cfg, log, hs)
	clk := clock.New(nil)
	hs.SetLive(func() error { return modem.Healthy(cfg.UnreadyGrace.D()) })
	hs.SetReady(func() error {
		if err := modem.Ready(); err != nil {
			return err
		}
		return timeReady(clk)
	})
	if err := hs.Start(cfg.HTTPAddr); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()

	led, err := ledger.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	defer led.Close()

	reconnected := make(chan struct{}, 1)
	clockReconnected := make(chan struct{}, 1)
	nc, err := connect(cfg, log, reconnected, clockReconnected)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	stopReceive, err := startReceive(ctx, cfg, js, modem, log, hs.Registry)
	if err != nil {
		return err
	}
	defer stopReceive()

	// The modem's own lifecycle stops only after the sender has finished:
	// a send in flight at SIGTERM still needs the port.
	modemCtx, stopModem := context.WithCancel(context.WithoutCancel(ctx))
	defer stopModem()
	modemDone := make(chan struct{})
	go func() {
		defer close(modemDone)
		if err := modem.Run(modemCtx); err != nil {
			log.Error("modem parked", zap.Error(err))
		}
	}()
	// Heartbeats stop with ctx, not with the modem: a "ready" beat sent
	// after the "shutting down" one below would let the poller claim work
	// for a modem that is going away.
	hbDone := make(chan struct{})
	timeSet := make(chan struct{}, 1)
	go func() { defer close(hbDone); heartbeat(ctx, nc, modem, clk, reconnected, timeSet) }()
	bgDone := make(chan struct{}, 2)
	go func() { syncClock(ctx, nc, clk, clockReconnected, timeSet, log.Named("clock")); bgDone <- struct{}{} }()
	go func() { pruneLedger(ctx, led, clk, cfg.LedgerRetention.D(), log.Named("ledger")); bgDone <- struct{}{} }()

	s := sender.New(sender.Config{
		Region: cfg.Country, MaxParts: cfg.MaxParts, SendTimeout: cfg.SendTimeout.D(),
		Clock: clk, Log: log.Named("sender"), Reg: hs.Registry,
	}, js, modem, led)
	err = s.Run(ctx)
	log.Info("sender stopped; closing")
	<-hbDone
	<-bgDone
	<-bgDone
	// Tell the poller at once so it stops claiming for us.
	publishStatus(nc, schema.ModemStatus{V: schema.Version, Ready: false, Reason: "shutting down", At: time.Now(), ValidFor: schema.Duration(heartbeatEvery)})
	_ = nc.Flush()
	stopModem()
	<-modemDone
	_ = nc.Drain()
	return err
}

func connect(cfg Config, log *zap.Logger, reconnected ...chan<- struct{}) (*nats.Conn, error) {
	nlog := log.Named("nats")
	nc, err := nats.Connect(cfg.NATSURL,
		nats.Name("sms-modem"),
		nats.UserInfo(cfg.NATSUser, cfg.NATSPass),
		// The poller may be down for any length of time: never give up.
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, time.Second),
		nats.PingInterval(20*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			nlog.Warn("broker connection lost; reconnecting", zap.Error(err))
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			nlog.Info("broker reconnected", zap.String("url", c.ConnectedUrlRedacted()))
			for _, ch := range reconnected { // a restarted poller learns our state at once
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { nlog.Info("broker connection closed") }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", cfg.NATSURL, err)
	}
	return nc, nil
}

// heartbeat tells the poller whether it may claim work for us: at once on
// every state change and reconnect, and every heartbeatEvery otherwise.
func heartbeat(ctx context.Context, nc *nats.Conn, m *gsm.Modem, clk *clock.Clock, reconnected, timeSet <-chan struct{}) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		changed := m.Changed()
		st := m.Status()
		hb := schema.ModemStatus{
			V: schema.Version, Ready: st.State == gsm.StateReady, Reason: string(st.State),
			Operator: st.Operator, Signal: st.Signal, IMEI: st.IMEI, At: time.Now().UTC(),
			ValidFor: schema.Duration(3 * heartbeatEvery),
		}
		if st.Reason != "" {
			hb.Reason += ": " + st.Reason
		}
		// A modem that cannot check a TTL takes no job: no claims for it.
		if err := timeReady(clk); hb.Ready && err != nil {
			hb.Ready, hb.Reason = false, err.Error()
		}
		publishStatus(nc, hb)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		case <-reconnected:
		case <-timeSet:
		}
	}
}

func publishStatus(nc *nats.Conn, st schema.ModemStatus) {
	b, err := json.Marshal(st)
	if err == nil {
		_ = nc.Publish(schema.StatusSubject, b)
	}
}
