// Package app wires the poller together: the embedded broker, the OIDC
// token source, the SMS API client, the dispatcher and the health server.
// Run is what main calls and what tests drive.
package app

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/poller/internal/broker"
	"github.com/sensorsreport/smsgw/services/poller/internal/claims"
	"github.com/sensorsreport/smsgw/services/poller/internal/dispatch"
	"github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
	"github.com/sensorsreport/smsgw/services/poller/internal/upstream"
	"github.com/sensorsreport/smsgw/services/poller/internal/webhook"
	"github.com/sensorsreport/smsgw/shared/backoff"
	"github.com/sensorsreport/smsgw/shared/health"
)

// drainTimeout bounds how long shutdown keeps reporting waiting results.
const drainTimeout = 10 * time.Second

// Run runs the poller until ctx ends, then stops claiming, reports the
// results already waiting and shuts the broker down cleanly. A broker that
// fails for good ends Run the same way, early, with the broker's error:
// the process exits non-zero and its supervisor restarts it.
func Run(ctx context.Context, cfg Config, log *zap.Logger) error { return run(ctx, cfg, log, nil) }

// run is Run; started, when set, sees the broker once it runs (tests break it).
func run(ctx context.Context, cfg Config, log *zap.Logger, started func(*broker.Broker)) error {
	countries := cfg.CountryCodes()
	hs := health.New(log)

	tokens, err := newTokens(cfg, log, hs.Registry)
	if err != nil {
		return err
	}
	if tokens == nil {
		log.Warn("no KEYCLOAK_URL or OIDC_ISSUER_URL: calling the SMS API without a token")
	}
	clk := newAPIClock(log.Named("clock"), hs.Registry)
	api, err := newAPI(cfg, tokens, log, hs.Registry, 0, clk.observe)
	if err != nil {
		return err
	}

	brokerTLS, leaf, err := cfg.brokerTLS()
	if err != nil {
		return err
	}
	logBrokerTLS(log.Named("broker"), cfg, leaf)
	if leaf != nil {
		hs.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sms_poller_broker_tls_cert_expiry_timestamp_seconds",
			Help: "When the broker listener's certificate (NATS_TLS_CERT) expires, in Unix seconds.",
		}, func() float64 { return float64(leaf.NotAfter.Unix()) }))
	}
	b, err := broker.Start(ctx, broker.Config{
		Listen: cfg.NATSListen, TLS: brokerTLS, StoreDir: cfg.StoreDir,
		ModemUser: cfg.NATSUser, ModemPassword: cfg.NATSPass, Countries: countries,
		MaxStore: cfg.MaxStoreMB << 20, AckWait: cfg.AckWait.D(), MaxDeliver: cfg.MaxDeliver,
		Log: log.Named("broker"),
	})
	if err != nil {
		return err
	}
	defer b.Shutdown()
	if started != nil {
		started(b)
	}
	runCtx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	go func() {
		select {
		case <-b.Done():
			if err := b.Err(); err != nil {
				log.Error("broker failed; stopping so the poller is restarted", zap.Error(err))
				stopRun(err)
			}
		case <-runCtx.Done():
		}
	}()
	// fatal is why Run ends early: the cause runCtx was cancelled with,
	// unless ctx (a signal) ended it.
	fatal := func() error {
		if ctx.Err() != nil {
			return nil
		}
		return context.Cause(runCtx)
	}

	provider := cfg.ProviderName()
	up := &upstream.API{Client: api, Provider: provider, Log: log.Named("api")}
	d := dispatch.New(dispatch.Config{
		Countries: countries, PollInterval: cfg.PollInterval.D(), MaxQueued: cfg.MaxQueued,
		Claims: claims.New(b.Claims()), Clock: clk.clk,
		Log: log.Named("dispatch"), Reg: hs.Registry,
	}, up, b)

	hs.SetLive(b.Healthy)
	hs.SetReady(func() error {
		if err := b.Healthy(); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		if tokens != nil {
			if err := tokens.Ready(); err != nil {
				return fmt.Errorf("token: %w", err)
			}
		}
		if err := d.APIHealthy(); err != nil {
			return fmt.Errorf("api: %w", err)
		}
		if _, _, err := clk.clk.Now(); err != nil {
			return fmt.Errorf("time: %w", err)
		}
		return nil
	})
	if err := hs.Start(cfg.HTTPAddr); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()

	log.Info("poller starting", zap.String("provider", provider), zap.Strings("countries", countries),
		zap.String("api", cfg.APIURL+cfg.APIPrefix), zap.String("broker", cfg.NATSListen))
	if err := registerProvider(runCtx, api, provider, countries, log); err != nil {
		return fatal() // stopped while the API was unreachable
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Without the watcher, jobs that exhaust their deliveries would
		// sit in the queue unreported for ever: nothing to retry here.
		if err := b.WatchDeadJobs(runCtx, d.DeadJob); err != nil && runCtx.Err() == nil {
			stopRun(err)
		}
	}()
	fwd, err := webhook.New(runCtx, webhook.Config{URL: cfg.WebhookURL, Secret: cfg.WebhookSecret, Log: log.Named("webhook"), Reg: hs.Registry}, b.JetStream())
	if err != nil {
		stopRun(err)
		wg.Wait()
		if ctx.Err() != nil {
			return nil // stopped while binding
		}
		return context.Cause(runCtx) // the broker's reason if it failed first
	}
	if cfg.WebhookURL == "" {
		log.Info("no INCOMING_WEBHOOK_URL: incoming SMS and delivery reports are kept in the broker and logged")
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = fwd.Run(runCtx) }()
	err = d.Run(runCtx, drainTimeout)
	wg.Wait()
	log.Info("poller stopped claiming; shutting the broker down")
	if f := fatal(); f != nil {
		return f // the broker's own reason beats what it broke downstream
	}
	return err
}

// registerProvider registers once, retrying until the API answers: the
// provider's country list is fixed by whichever call creates it first.
func registerProvider(ctx context.Context, api *smsapi.Client, name string, countries []string, log *zap.Logger) error {
	b := backoff.New(time.Second, time.Minute)
	for {
		err := api.Register(ctx, name, countries)
		if err == nil {
			log.Info("provider registered", zap.String("provider", name))
			return nil
		}
		log.Warn("provider registration failed; retrying", zap.Error(err))
		if !b.Wait(ctx) {
			return ctx.Err()
		}
	}
}
