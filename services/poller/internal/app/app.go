// Package app wires the poller together: the embedded broker, the OIDC
// token source, the SMS API client, the dispatcher and the health server.
// Run is what main calls and what tests drive.
package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/poller/internal/auth"
	"github.com/sensorsreport/smsgw/services/poller/internal/broker"
	"github.com/sensorsreport/smsgw/services/poller/internal/dispatch"
	"github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
	"github.com/sensorsreport/smsgw/services/poller/internal/webhook"
	"github.com/sensorsreport/smsgw/shared/health"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// drainTimeout bounds how long shutdown keeps reporting waiting results.
const drainTimeout = 10 * time.Second

// Run runs the poller until ctx ends, then stops claiming, reports the
// results already waiting and shuts the broker down cleanly.
func Run(ctx context.Context, cfg Config, log *zap.Logger) error {
	countries := cfg.CountryCodes()
	if len(countries) == 0 {
		return errors.New("SMS_COUNTRIES is empty")
	}
	hs := health.New(log)

	var tokens *auth.Source
	issuer, err := auth.IssuerFrom(cfg.IssuerURL, cfg.KeycloakURL, cfg.KeycloakRealm)
	switch {
	case err != nil:
		return err
	case issuer == "":
		log.Warn("no KEYCLOAK_URL or OIDC_ISSUER_URL: calling the SMS API without a token")
	default:
		tokens, err = auth.New(auth.Config{
			IssuerURL: issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
			Username: cfg.User, Password: cfg.Password,
			HTTPClient: &http.Client{Timeout: 30 * time.Second},
			Log:        log.Named("auth"), Registerer: hs.Registry,
		})
		if err != nil {
			return err
		}
	}
	apiCfg := smsapi.Config{BaseURL: cfg.APIURL, Prefix: cfg.APIPrefix, Logger: log.Named("api"), Registerer: hs.Registry}
	if tokens != nil {
		apiCfg.Token = tokens.Token
	}
	api, err := smsapi.New(apiCfg)
	if err != nil {
		return err
	}

	hookURL, hookSecret, err := cfg.Webhook()
	if err != nil {
		return err
	}

	b, err := broker.Start(ctx, broker.Config{
		Listen: cfg.NATSListen, StoreDir: cfg.StoreDir,
		ModemUser: cfg.NATSUser, ModemPassword: cfg.NATSPass,
		MaxStore: cfg.MaxStoreMB << 20, AckWait: cfg.AckWait.D(), MaxDeliver: cfg.MaxDeliver,
		Log: log.Named("broker"),
	})
	if err != nil {
		return err
	}
	defer b.Shutdown()

	provider := cfg.ProviderName()
	up := &upstream{api: api, provider: provider, countries: countries}
	d := dispatch.New(dispatch.Config{
		Countries: countries, PollInterval: cfg.PollInterval.D(), MaxQueued: cfg.MaxQueued,
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
	if err := registerProvider(ctx, api, provider, countries, log); err != nil {
		return nil // ctx ended while the API was unreachable
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := b.WatchDeadJobs(ctx, d.DeadJob); err != nil && ctx.Err() == nil {
			log.Error("dead-job watcher stopped", zap.Error(err))
		}
	}()
	fwd, err := webhook.New(ctx, webhook.Config{URL: hookURL, Secret: hookSecret, Log: log.Named("webhook"), Reg: hs.Registry}, b.JetStream())
	if err != nil {
		return err
	}
	if hookURL == "" {
		log.Info("no INCOMING_WEBHOOK_URL: incoming SMS and delivery reports are kept in the broker and logged")
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = fwd.Run(ctx) }()
	err = d.Run(ctx, drainTimeout)
	wg.Wait()
	log.Info("poller stopped claiming; shutting the broker down")
	return err
}

// registerProvider registers once, retrying until the API answers: the
// provider's country list is fixed by whichever call creates it first.
func registerProvider(ctx context.Context, api *smsapi.Client, name string, countries []string, log *zap.Logger) error {
	delay := time.Second
	for {
		err := api.Register(ctx, name, countries)
		if err == nil {
			log.Info("provider registered", zap.String("provider", name))
			return nil
		}
		log.Warn("provider registration failed; retrying", zap.Error(err), zap.Duration("in", delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, time.Minute)
	}
}

// upstream adapts the API client to what the dispatcher needs.
type upstream struct {
	api       *smsapi.Client
	provider  string
	countries []string
}

func (u *upstream) Claim(ctx context.Context, cc string) (*dispatch.Claim, error) {
	s, err := u.api.Next(ctx, u.provider, cc)
	if errors.Is(err, smsapi.ErrNoSMS) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c := toClaim(*s, cc)
	return &c, nil
}

// Stranded returns the Entrusted SMS that "next" could have handed to this
// provider: addressed to it or to no provider, in one of its countries.
func (u *upstream) Stranded(ctx context.Context) ([]dispatch.Claim, error) {
	list, err := u.api.Entrusted(ctx)
	if err != nil {
		return nil, err
	}
	var out []dispatch.Claim
	for _, s := range list {
		if s.Provider != nil && *s.Provider != u.provider {
			continue
		}
		if s.CountryCode == nil || !slices.Contains(u.countries, *s.CountryCode) {
			continue
		}
		out = append(out, toClaim(s, *s.CountryCode))
	}
	return out, nil
}

func toClaim(s smsapi.SMS, cc string) dispatch.Claim {
	c := dispatch.Claim{
		ID: s.ID, Tenant: s.Tenant, Phone: s.PhoneNumber, Message: s.Message, Country: cc,
		Timestamp: s.Timestamp, RetryCount: s.RetryCount,
	}
	if s.TTL != nil {
		c.TTL = time.Duration(*s.TTL) * time.Minute
	}
	if s.CountryCode != nil && *s.CountryCode != "" {
		c.Country = *s.CountryCode
	}
	return c
}

func (u *upstream) Report(ctx context.Context, r schema.Result) error {
	up := smsapi.Update{Status: r.Status, TrackingID: r.TrackingID()}
	if r.Status == schema.StatusSent {
		up.SentAt = r.SentAt
	}
	_, err := u.api.Report(ctx, r.SmsID, r.Tenant, up)
	return err
}

func (u *upstream) Transient(err error) bool { return smsapi.IsTransient(err) }
