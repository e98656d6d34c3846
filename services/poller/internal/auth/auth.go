// Package auth is the poller's OAuth 2.0 token source for Keycloak or any
// standards-compliant OIDC provider. It finds the token endpoint through the
// issuer's discovery document, logs in with the password grant (or client
// credentials when no user is configured), sending the configured scopes,
// refreshes ahead of expiry, drops the refresh token and logs in afresh when
// the provider refuses a refresh with any OAuth error, rides out provider
// outages on the token it still holds, and backs off on rejected credentials
// (from seconds up to 5 minutes) so Keycloak's brute-force lockout is not
// provoked. Fetches are single-flight and no lock is held across network
// calls: the legacy gateway deadlocked exactly there (sms-api-contract §4.4).
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/sensorsreport/smsgw/shared/backoff"
)

// Defaults; see Config.
const (
	defaultHTTPTimeout      = 30 * time.Second
	defaultMinBackoff       = time.Second
	defaultMaxBackoff       = time.Minute
	rejectedMinBackoff      = 5 * time.Second
	rejectedMaxBackoff      = 5 * time.Minute
	maxEarlyRefresh         = 30 * time.Second
	maxDiscoveryDocumentLen = 1 << 20
)

var (
	// ErrNoToken is returned (wrapping the cause) whenever no valid access
	// token is available. It is transient for callers: the API request is
	// not sent and should be retried later.
	ErrNoToken = errors.New("auth: no valid access token")
	// ErrRejected marks a permanent refusal by the provider: bad client
	// credentials, a wrong password, a grant the client may not use, a
	// missing scope. The source retries after a back-off that grows from 5 s
	// to 5 min.
	ErrRejected = errors.New("auth: credentials rejected")
	// ErrNoIssuer means neither OIDC_ISSUER_URL nor KEYCLOAK_URL is set.
	ErrNoIssuer = errors.New("auth: no issuer configured")
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("auth: invalid config")
)

// Config configures a Source.
type Config struct {
	IssuerURL    string
	ClientID     string
	ClientSecret string
	// Username selects the password grant; empty means client credentials.
	Username string
	Password string
	// Scopes are sent as "scope" with the password and client-credentials
	// grants (OIDC_SCOPES; dex refuses a password grant without openid).
	// Nil sends none. See ParseScopes.
	Scopes []string
	// HTTPClient carries every call to the provider; nil means a client
	// with a 30 s timeout. Set a timeout on any client passed in.
	HTTPClient *http.Client
	Log        *zap.Logger
	// Registerer receives sms_poller_token_refreshes_total; nil skips it.
	Registerer prometheus.Registerer
	// MinBackoff and MaxBackoff bound the back-off after transient failures
	// (defaults 1 s and 1 min). Rejections back off from 5 s to 5 min.
	MinBackoff, MaxBackoff time.Duration
}

// ParseScopes reads OIDC_SCOPES: scope tokens separated by spaces or commas,
// duplicates dropped. Each must be an RFC 6749 scope token (printable
// ASCII without space, '"' or a backslash), and there must be at least one.
func ParseScopes(s string) ([]string, error) {
	var out []string
	for _, sc := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		for _, r := range sc {
			if r < 0x21 || r > 0x7e || r == '"' || r == '\\' {
				return nil, fmt.Errorf("%w: scope %q: want printable ASCII without quotes or backslashes", ErrConfig, sc)
			}
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no scope in %q", ErrConfig, s)
	}
	return out, nil
}

// IssuerFrom picks the issuer: OIDC_ISSUER_URL when set, otherwise
// KEYCLOAK_URL/realms/KEYCLOAK_REALM (a legacy "/auth" prefix belongs in
// KEYCLOAK_URL).
func IssuerFrom(issuerURL, keycloakURL, realm string) (string, error) {
	iss := strings.TrimRight(issuerURL, "/")
	if iss == "" {
		if keycloakURL == "" {
			return "", ErrNoIssuer
		}
		if realm == "" {
			return "", fmt.Errorf("%w: KEYCLOAK_REALM is empty", ErrConfig)
		}
		iss = strings.TrimRight(keycloakURL, "/") + "/realms/" + url.PathEscape(realm)
	}
	if err := checkHTTPURL(iss); err != nil {
		return "", fmt.Errorf("%w: issuer: %w", ErrConfig, err)
	}
	return iss, nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// Source hands out access tokens. It is safe for concurrent use.
type Source struct {
	cfg     Config
	log     *zap.Logger
	fetches *prometheus.CounterVec
	// bg is the context every fetch derives from: never a caller's context,
	// which x/oauth2 would otherwise keep for later refreshes (§3.7).
	bg  context.Context
	now func() time.Time // time.Now; tests move it

	mu        sync.Mutex
	tokenURL  string        // from discovery, once found
	tok       *oauth2.Token // nil before the first login
	refreshAt time.Time     // zero: the token has no expiry
	invalid   bool          // the API rejected tok
	inflight  chan struct{} // closed when the running fetch ends
	lastErr   error
	failures  int
	nextTry   time.Time
	transient *backoff.Backoff // after network errors and 5xx
	rejected  *backoff.Backoff // after the provider refused the login
}

// New validates cfg and returns a Source. Nothing is fetched until the first
// Token call.
func New(cfg Config) (*Source, error) {
	if err := checkHTTPURL(cfg.IssuerURL); err != nil {
		return nil, fmt.Errorf("%w: issuer: %w", ErrConfig, err)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("%w: client id is empty", ErrConfig)
	}
	if cfg.Username != "" && cfg.Password == "" {
		return nil, fmt.Errorf("%w: password is empty for user %q", ErrConfig, cfg.Username)
	}
	for _, sc := range cfg.Scopes {
		if got, err := ParseScopes(sc); err != nil || len(got) != 1 || got[0] != sc {
			return nil, fmt.Errorf("%w: scope %q is not one scope token", ErrConfig, sc)
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(defaultMaxBackoff, cfg.MinBackoff)
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	fetches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sms_poller_token_refreshes_total",
		Help: "Token endpoint calls by grant and outcome (success, invalid_grant, rejected, error).",
	}, []string{"grant", "outcome"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(fetches); err != nil {
			return nil, fmt.Errorf("auth: register metrics: %w", err)
		}
	}
	return &Source{
		cfg:       cfg,
		log:       log.With(zap.String("issuer", cfg.IssuerURL), zap.String("client_id", cfg.ClientID)),
		fetches:   fetches,
		bg:        context.WithValue(context.Background(), oauth2.HTTPClient, cfg.HTTPClient),
		now:       time.Now,
		transient: backoff.New(cfg.MinBackoff, cfg.MaxBackoff),
		rejected:  backoff.New(rejectedMinBackoff, rejectedMaxBackoff),
	}, nil
}

// Token returns a valid access token. A token inside its early-refresh
// window is still returned while one caller's refresh runs in the
// background; callers without a valid token wait for that one fetch (or ctx).
// Errors wrap ErrNoToken.
func (s *Source) Token(ctx context.Context) (string, error) {
	waited := false
	for {
		s.mu.Lock()
		now := s.now()
		usable := s.usableLocked(now)
		if usable && (s.refreshAt.IsZero() || now.Before(s.refreshAt)) {
			tok := s.tok.AccessToken
			s.mu.Unlock()
			return tok, nil
		}
		done := s.inflight
		if done == nil && !waited && !now.Before(s.nextTry) {
			done = make(chan struct{})
			s.inflight = done
			go s.fetch(done)
		}
		if usable {
			tok := s.tok.AccessToken
			s.mu.Unlock()
			return tok, nil
		}
		if done == nil {
			err := s.noTokenLocked()
			s.mu.Unlock()
			return "", err
		}
		s.mu.Unlock()

		select {
		case <-done:
			waited = true
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %w", ErrNoToken, ctx.Err())
		}
	}
}

// Invalidate tells the source that the API refused tok (a 401 or 403), so
// the next Token call fetches a new one: a refresh, or a fresh login when
// the refresh is refused. A tok that is no longer current changes nothing,
// so a late refusal cannot discard its successor. Like every fetch, the new
// one is single-flight and waits out a running back-off.
func (s *Source) Invalidate(tok string) {
	s.mu.Lock()
	if s.tok != nil && s.tok.AccessToken == tok {
		s.invalid = true
	}
	s.mu.Unlock()
}

// Ready reports nil while a valid access token is held.
func (s *Source) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usableLocked(s.now()) {
		return nil
	}
	return s.noTokenLocked()
}

func (s *Source) usableLocked(now time.Time) bool {
	return s.tok != nil && !s.invalid && (s.tok.Expiry.IsZero() || now.Before(s.tok.Expiry))
}

func (s *Source) noTokenLocked() error {
	switch {
	case s.lastErr != nil:
		return fmt.Errorf("%w: %w", ErrNoToken, s.lastErr)
	case s.tok == nil:
		return fmt.Errorf("%w: not logged in yet", ErrNoToken)
	case s.invalid:
		return fmt.Errorf("%w: token rejected by the API", ErrNoToken)
	default:
		return fmt.Errorf("%w: token expired", ErrNoToken)
	}
}

// fetch runs one discovery+token round without holding s.mu, then publishes
// the outcome and wakes the waiters.
func (s *Source) fetch(done chan struct{}) {
	s.mu.Lock()
	tokenURL := s.tokenURL
	var refresh string
	if s.tok != nil {
		refresh = s.tok.RefreshToken
	}
	s.mu.Unlock()

	// Bounds the round even with an HTTPClient that has no timeout.
	ctx, cancel := context.WithTimeout(s.bg, 2*defaultHTTPTimeout)
	defer cancel()
	var tok *oauth2.Token
	var err error
	refused := false
	if tokenURL == "" {
		tokenURL, err = s.discover(ctx)
	}
	if err == nil {
		tok, refused, err = s.obtain(ctx, tokenURL, refresh)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(done)
	s.inflight = nil
	s.tokenURL = tokenURL
	now := s.now()
	if refused && s.tok != nil && s.tok.RefreshToken == refresh {
		// Never offer it again, even if the login after it failed.
		t := *s.tok
		t.RefreshToken = ""
		s.tok = &t
	}
	if err != nil {
		s.lastErr = err
		s.failures++
		b := s.transient
		if errors.Is(err, ErrRejected) {
			b = s.rejected
		}
		wait := b.Next()
		s.nextTry = now.Add(wait)
		s.log.Warn("cannot obtain access token", zap.Error(err),
			zap.Int("consecutive_failures", s.failures), zap.Duration("retry_in", wait),
			zap.Bool("holding_valid_token", s.usableLocked(now)))
		return
	}
	s.tok, s.invalid, s.lastErr, s.failures, s.nextTry = tok, false, nil, 0, time.Time{}
	s.transient.Reset()
	s.rejected.Reset()
	s.refreshAt = time.Time{}
	if !tok.Expiry.IsZero() {
		// Refresh early: 30 s before expiry, or a third of the lifetime
		// for short-lived tokens, so callers never meet an expired token.
		life := tok.Expiry.Sub(now)
		s.refreshAt = tok.Expiry.Add(-min(maxEarlyRefresh, life/3))
	}
	s.log.Debug("access token obtained", zap.Time("expiry", tok.Expiry),
		zap.Any("refresh_expires_in", tok.Extra("refresh_expires_in")))
}

// obtain gets a token: client credentials, or a refresh that falls back to a
// password login when the provider refuses it. refused reports that the
// refresh token was refused and must not be used again.
func (s *Source) obtain(ctx context.Context, tokenURL, refresh string) (_ *oauth2.Token, refused bool, _ error) {
	if s.cfg.Username == "" {
		cc := clientcredentials.Config{ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret,
			TokenURL: tokenURL, Scopes: s.cfg.Scopes, AuthStyle: oauth2.AuthStyleInParams}
		tok, err := cc.Token(ctx)
		return tok, false, s.outcome("client_credentials", err)
	}
	// Params style: auto-detection would send a bad password twice and
	// Keycloak < 20 mis-decodes Basic credentials (platform-notes §3.5).
	oc := oauth2.Config{ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret, Scopes: s.cfg.Scopes,
		Endpoint: oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	if refresh != "" {
		// A one-shot source owned by this fetch: no stored request context
		// and no second owner of the rotating refresh token (§3.7).
		tok, err := oc.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}).Token()
		err = s.outcome("refresh_token", err)
		if err == nil || !refusedByProvider(err) {
			return tok, false, err
		}
		refused = true
		s.log.Info("refresh token refused; logging in again", zap.Error(err))
	}
	tok, err := oc.PasswordCredentialsToken(ctx, s.cfg.Username, s.cfg.Password)
	if err == nil {
		s.log.Info("logged in", zap.String("user", s.cfg.Username))
	}
	return tok, refused, s.outcome("password", err)
}

// outcome counts a token call and classifies its error: OAuth error
// responses are permanent (ErrRejected), everything else (network, 5xx,
// undecodable answers) is transient.
func (s *Source) outcome(grant string, err error) error {
	var re *oauth2.RetrieveError
	switch {
	case err == nil:
		s.fetches.WithLabelValues(grant, "success").Inc()
		return nil
	case errors.As(err, &re) && re.ErrorCode == "invalid_grant":
		s.fetches.WithLabelValues(grant, "invalid_grant").Inc()
	case errors.As(err, &re) && re.ErrorCode != "" && re.Response != nil && re.Response.StatusCode < 500:
		s.fetches.WithLabelValues(grant, "rejected").Inc()
	default:
		s.fetches.WithLabelValues(grant, "error").Inc()
		return fmt.Errorf("%s grant: %w", grant, err)
	}
	return fmt.Errorf("%s grant: %w: %w", grant, ErrRejected, err)
}

// refusedByProvider tells a refresh the provider refused, whatever the
// OAuth error (Keycloak says invalid_grant when the session ended, dex
// invalid_request for a token it lost in a restart), from an outage: any
// answer with an OAuth error code, or any 4xx. A 5xx without one (a proxy
// in front of a provider that is down) keeps the refresh token.
func refusedByProvider(err error) bool {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return false
	}
	return re.ErrorCode != "" || re.Response == nil || re.Response.StatusCode < 500
}

// discover reads token_endpoint from the issuer's discovery document. The
// document's issuer is deliberately not compared with ours: Keycloak
// advertises its public hostname even when reached under an internal one.
func (s *Source) discover(ctx context.Context) (string, error) {
	u := s.cfg.IssuerURL + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryDocumentLen))
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery: GET %s: %s", u, resp.Status)
	}
	tokenURL, err := parseDiscovery(body)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	s.log.Info("discovered token endpoint", zap.String("token_endpoint", tokenURL))
	return tokenURL, nil
}

func parseDiscovery(body []byte) (string, error) {
	var doc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", err
	}
	if err := checkHTTPURL(doc.TokenEndpoint); err != nil {
		return "", fmt.Errorf("token_endpoint: %w", err)
	}
	return doc.TokenEndpoint, nil
}
