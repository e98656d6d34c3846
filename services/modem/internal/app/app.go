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
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/attempts"
	"github.com/sensorsreport/smsgw/services/modem/internal/device"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/ledger"
	"github.com/sensorsreport/smsgw/services/modem/internal/ratelimit"
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
		return config.Missing("NATS_PASSWORD", "the broker password the poller was given in its NATS_PASSWORD (or NATS_PASSWORD_FILE)")
	}
	if _, err := os.Stat(cfg.Device); errors.Is(err, fs.ErrNotExist) && !strings.HasPrefix(cfg.Device, "tcp://") {
		// Not fatal: a modem unplugged or still enumerating at start is
		// waited for. But say which setting names it.
		log.Warn("MODEM_DEVICE does not exist (yet); waiting for it. Check the path: ls -l /dev/serial/by-id/",
			zap.String("MODEM_DEVICE", cfg.Device))
	}
	hs := health.New(log)
	modem := NewModem(cfg, log, hs)
	l := newLink(cfg, log.Named("nats"), hs.Registry)
	clk := clock.New(nil)
	countries, cerr := cfg.CountryCodes()
	if cerr != nil {
		return cerr
	}
	id := newIdentity(cfg.ModemID, log, hs.Registry)
	id.countries = countries
	windows, err := ratelimit.Parse(cfg.RateLimit)
	if err != nil {
		return config.Invalid("MODEM_RATE_LIMIT", cfg.RateLimit, err.Error())
	}
	lim, err := ratelimit.Open(cfg.DataDir, windows)
	if err != nil {
		return err
	}
	limNow := func() time.Time {
		if t, _, err := clk.Now(); err == nil {
			return t
		}
		return time.Now()
	}
	gate := gatedModem{Modem: modem, id: id, lim: lim, now: limNow, log: log.Named("ratelimit")}
	// Ready means an SMS could be sent now: the modem can send, the broker
	// that brings the jobs and takes the results is reachable, there is a
	// time every TTL can be checked against, no other modem uses our
	// MODEM_ID, and MODEM_RATE_LIMIT leaves room for a part.
	ready := func() error {
		if err := l.Ready(); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		if err := modem.Ready(); err != nil {
			return err
		}
		if err := id.Ready(); err != nil {
			return err
		}
		if err := timeReady(clk); err != nil {
			return err
		}
		return gate.limitErr()
	}
	hs.SetReady(ready)
	hs.SetLive(func() error {
		if err := l.Healthy(cfg.UnreadyGrace.D()); err != nil {
			return err
		}
		return modem.Healthy(cfg.UnreadyGrace.D())
	})
	hs.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sms_modem_ready", Help: "1 when an SMS can be sent now: modem ready, broker connected, time trusted (/readyz).",
	}, func() float64 {
		if ready() == nil {
			return 1
		}
		return 0
	}))
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

	// The modem's own lifecycle stops only after the sender has finished:
	// a send in flight at SIGTERM still needs the port. It starts before
	// the broker is reached, so the modem is ready by the time jobs come.
	modemCtx, stopModem := context.WithCancel(context.WithoutCancel(ctx))
	defer stopModem()
	modemDone := make(chan struct{})
	go func() {
		defer close(modemDone)
		if err := modem.Run(modemCtx); err != nil {
			log.Error("modem parked", zap.Error(err))
		}
	}()
	defer func() { stopModem(); <-modemDone }()

	nc, err := l.dial(ctx, false)
	if err != nil {
		return nil // stopped before the broker was ever reached
	}
	defer l.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// The receive path publishes on whatever connection the link holds.
	pub := &currentJS{js: js}
	stopReceive, err := startReceive(ctx, cfg, pub, modem, log, hs.Registry)
	if err != nil {
		return err
	}
	defer stopReceive()
	att := attempts.New(js, func() string { return id.resolve("") })
	// A job taken is named in a heartbeat at once, and the broker has it
	// before the job is touched: if this process dies now, the poller
	// knows which job to hand to another modem.
	id.onTake = func() {
		if nc := beat(l, gate, clk); nc != nil {
			_ = nc.FlushTimeout(time.Second)
		}
	}
	s := sender.New(sender.Config{
		Region: cfg.Country, Countries: countries, MaxParts: cfg.MaxParts, SendTimeout: cfg.SendTimeout.D(),
		Clock: clk, Attempts: att, Holding: id.hold, Log: log.Named("sender"), Reg: hs.Registry,
	}, js, gate, led)

	// Heartbeats stop with ctx, not with the modem: a "ready" beat sent
	// after the "shutting down" one below would let the poller claim work
	// for a modem that is going away.
	hbDone := make(chan struct{})
	timeSet := make(chan struct{}, 1)
	go func() { defer close(hbDone); heartbeat(ctx, l, gate, clk, timeSet) }()
	redialDone := make(chan struct{})
	go func() {
		defer close(redialDone)
		redial(ctx, l, func(js jetstream.JetStream) { s.Use(js); pub.Use(js); att.Use(js) }, log)
	}()
	bgDone := make(chan struct{}, 2)
	go func() { syncClock(ctx, l, clk, timeSet, log.Named("clock")); bgDone <- struct{}{} }()
	go func() { pruneLedger(ctx, led, clk, cfg.LedgerRetention.D(), log.Named("ledger")); bgDone <- struct{}{} }()

	err = s.Run(ctx)
	log.Info("sender stopped; closing")
	<-hbDone
	<-redialDone
	<-bgDone
	<-bgDone
	// Tell the poller at once so it stops claiming for us. Without a
	// connection there is no one to tell (and a flush would only wait).
	if nc := l.Conn(); nc != nil && nc.IsConnected() && id.resolve("") != "" {
		publishStatus(nc, schema.ModemStatus{V: schema.Version, ID: id.resolve(""), Instance: id.instance,
			Ready: false, Reason: "shutting down", At: time.Now(), ValidFor: schema.Duration(heartbeatEvery)})
		_ = nc.FlushTimeout(2 * time.Second)
	}
	return err
}

// redial replaces a connection that closed for good (nats.go gives up on
// some server errors whatever its options say) and hands the new
// connection's JetStream to use, until ctx ends.
func redial(ctx context.Context, l *link, use func(jetstream.JetStream), log *zap.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.closed:
		}
		nc, err := l.dial(ctx, true)
		if err != nil {
			return
		}
		js, err := jetstream.New(nc)
		if err != nil { // only for invalid options, which are fixed
			log.Error("jetstream on the new connection", zap.Error(err))
			continue
		}
		use(js)
	}
}

// heartbeat tells the poller whether it may claim work for us: at once on
// every state change and broker (re)connect, and every heartbeatEvery
// otherwise. While the broker is unreachable the beats are buffered by the
// client and the poller's view of us expires on its own.
func heartbeat(ctx context.Context, l *link, g gatedModem, clk *clock.Clock, timeSet <-chan struct{}) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		changed := g.Changed()
		beat(l, g, clk)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		case <-l.reconnected:
		case <-timeSet:
		}
	}
}

// beat publishes the modem's status now. Without an id (no MODEM_ID, IMEI
// not read yet) there is no subject to beat on; the modem cannot send yet
// anyway.
func beat(l *link, g gatedModem, clk *clock.Clock) *nats.Conn {
	id := g.id
	st := g.Status()
	hb := schema.ModemStatus{
		V: schema.Version, ID: id.resolve(st.IMEI), Instance: id.instance, Holding: id.holding(), Countries: id.countries,
		Ready: st.State == gsm.StateReady, Reason: string(st.State),
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
	if err := id.Ready(); hb.Ready && err != nil {
		hb.Ready, hb.Reason = false, err.Error()
	}
	hb.RateLimit = g.lim.States(g.now())
	if err := g.limitErr(); err != nil {
		hb.Limited = true
		if hb.Ready {
			hb.Ready, hb.Reason = false, err.Error()
		}
	}
	nc := l.Conn()
	if nc == nil || hb.ID == "" {
		return nil
	}
	id.watch(nc)
	publishStatus(nc, hb)
	return nc
}

func publishStatus(nc *nats.Conn, st schema.ModemStatus) {
	b, err := json.Marshal(st)
	if err == nil {
		_ = nc.Publish(schema.StatusSubjectFor(st.ID), b)
	}
}

// currentJS publishes through the JetStream of the link's current
// connection, which a re-dial replaces.
type currentJS struct {
	mu sync.Mutex
	js jetstream.JetStream
}

func (c *currentJS) Use(js jetstream.JetStream) { c.mu.Lock(); c.js = js; c.mu.Unlock() }

func (c *currentJS) get() jetstream.JetStream { c.mu.Lock(); defer c.mu.Unlock(); return c.js }

func (c *currentJS) Publish(ctx context.Context, subject string, payload []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return c.get().Publish(ctx, subject, payload, opts...)
}

func (c *currentJS) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return c.get().PublishMsg(ctx, msg, opts...)
}

func (c *currentJS) PublishAsync(subject string, payload []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return c.get().PublishAsync(subject, payload, opts...)
}

func (c *currentJS) PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return c.get().PublishMsgAsync(msg, opts...)
}

func (c *currentJS) PublishAsyncPending() int { return c.get().PublishAsyncPending() }

func (c *currentJS) PublishAsyncComplete() <-chan struct{} { return c.get().PublishAsyncComplete() }

func (c *currentJS) CleanupPublisher() { c.get().CleanupPublisher() }
