// Package smsapi is the poller's client for the SensorsReport SMS API. It
// speaks the API as it really behaves (sms-api-contract.md §5): PascalCase
// JSON with integer statuses, the SMS's own tenant in NGSILD-Tenant on every
// by-id call, exact PascalCase PATCH keys whose effect is verified in the
// response, a 404 from "next" read as an empty queue, and every error body
// shape turned into one typed *APIError. Transient failures (network, 5xx,
// 408, 429, and 401/403 after the token is renewed) are retried inside each
// call with shared/backoff; permanent ones return at once. Every answer's
// Date header is handed to Config.ServerTime.
package smsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/backoff"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// Config configures a Client. BaseURL is required; everything else has a
// default.
type Config struct {
	BaseURL string // SMS_API_URL, e.g. https://api.example.net
	// Prefix is SMS_API_PREFIX: "/api" when empty, "/gateway/sms" behind
	// Ocelot, "/" for none. /health is always requested without it.
	Prefix string
	// Token returns a bearer token for each request. A failure is logged and
	// the request goes out without Authorization: the API enforces no auth
	// (contract §1.2), so Keycloak outages must not stop delivery.
	Token func(context.Context) (string, error)
	// TokenRejected is called with the token an answer of 401 or 403
	// refused (wire it to the token source's Invalidate). The call is then
	// retried at once, once, with whatever Token returns next, and after
	// that with the normal back-off: 401 and 403 are transient.
	TokenRejected func(token string)
	// ServerTime is called for every response whose Date header parses
	// (http.ParseTime), with the instants the request was sent and its
	// answer's headers received (time.Now, monotonic reading kept).
	ServerTime func(date, sent, received time.Time)
	// Attempts bounds tries per call for transient failures (default 4).
	Attempts int
	// BaseDelay and MaxDelay shape the back-off (defaults 500 ms, 15 s).
	BaseDelay, MaxDelay time.Duration
	// Timeout bounds each attempt (default 30 s).
	Timeout    time.Duration
	HTTPClient *http.Client
	Logger     *zap.Logger
	// Registerer receives the request metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
}

// Client talks to one SMS API. It is safe for concurrent use.
type Client struct {
	cfg      Config
	base     string
	prefix   string
	log      *zap.Logger
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New validates cfg and returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sms api client: base URL %q: want http(s)://host[/path]", cfg.BaseURL)
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = "/api"
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix = "/" + prefix
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 4
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = 500 * time.Millisecond
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 15 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	c := &Client{
		cfg:    cfg,
		base:   strings.TrimSuffix(u.String(), "/"),
		prefix: prefix,
		log:    cfg.Logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_poller_api_requests_total",
			Help: "SMS API requests by route template and HTTP status (\"error\" when no response arrived).",
		}, []string{"endpoint", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sms_poller_api_request_duration_seconds",
			Help:    "SMS API request latency by route template, per attempt.",
			Buckets: prometheus.DefBuckets,
		}, []string{"endpoint"}),
	}
	if cfg.Registerer != nil {
		if c.requests, err = register(cfg.Registerer, c.requests); err != nil {
			return nil, err
		}
		if c.latency, err = register(cfg.Registerer, c.latency); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// register tolerates a second client on the same registry by sharing the
// collector already there.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("sms api client: register metrics: %w", err)
	}
	return c, nil
}

// Register registers the provider with its country codes. The server
// answers 201 even when the name exists, with the old record and the old
// codes, which it never updates (§3.5); a mismatch is only logged because
// claims always name the country.
func (c *Client) Register(ctx context.Context, name string, countries []string) error {
	codes := make([]string, len(countries))
	for i, cc := range countries {
		codes[i] = strings.ToUpper(cc)
	}
	body, err := c.do(ctx, call{
		endpoint: "register", method: http.MethodPost, path: c.prefix + "/provider/register",
		body: registerBody{Name: name, SupportedCountryCodes: codes},
	})
	if err != nil {
		return fmt.Errorf("register provider %s: %w", name, err)
	}
	var p provider
	if json.Unmarshal(body, &p) == nil && !sameSet(p.SupportedCountryCodes, codes) {
		c.log.Warn("provider was registered earlier with other country codes; the API cannot change them",
			zap.String("provider", name), zap.Strings("registered", p.SupportedCountryCodes), zap.Strings("wanted", codes))
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// Next claims the next SMS for provider in country cc through
// GET {prefix}/provider/next/{provider}/{CC}. The claim is destructive: the
// server has already marked the SMS Entrusted, set SentAt and counted a
// retry, so the caller owns it and must report it. An empty queue returns
// ErrNoSMS. An answer that is a JSON object with a readable Id but fields
// that do not decode, or no Tenant, returns a *ClaimError; any other
// unreadable answer a plain ErrBadResponse.
func (c *Client) Next(ctx context.Context, providerName, cc string) (*SMS, error) {
	body, err := c.do(ctx, call{
		endpoint: "next", method: http.MethodGet,
		path: c.prefix + "/provider/next/" + url.PathEscape(providerName) + "/" + url.PathEscape(strings.ToUpper(cc)),
		idle: emptyQueue,
	})
	if ae, ok := errors.AsType[*APIError](err); ok && emptyQueue(ae) {
		return nil, ErrNoSMS
	}
	if err != nil {
		return nil, fmt.Errorf("claim sms: %w", err)
	}
	s, err := decodeSMS(body)
	if err == nil && s.Tenant == "" {
		// Every by-id call needs the SMS's tenant (§5.4).
		err = fmt.Errorf("%w: empty Tenant", ErrBadResponse)
	}
	if err != nil {
		// The SMS is claimed upstream but unusable: hand out what can be
		// read so it can be reported Failed at once.
		if id, tenant, ok := claimKeys(body); ok {
			err = &ClaimError{ID: id, Tenant: tenant, Err: err}
		}
		return nil, fmt.Errorf("claim sms: %w", err)
	}
	c.log.Debug("claimed sms", zap.String("id", s.ID), zap.String("tenant", s.Tenant),
		logging.Phone(s.PhoneNumber), zap.Int("retry_count", s.RetryCount))
	return s, nil
}

// noRecords is the API's answer to a list with no match: a 404, not [].
func noRecords(e *APIError) bool {
	return e.Status == http.StatusNotFound && len(e.Messages) > 0 &&
		strings.HasPrefix(e.Messages[0], "No SMS records found for the specified criteria")
}

// emptyQueue tells the "nothing to do" 404 from a 404 for a wrong route,
// which means a misconfigured prefix and must not look like an idle queue.
func emptyQueue(e *APIError) bool {
	return e.Status == http.StatusNotFound && len(e.Messages) > 0 &&
		strings.HasPrefix(e.Messages[0], "No SMS records found")
}

// Report PATCHes the outcome of SMS id, which belongs to tenant (the
// SMS's own Tenant from Next), and returns the record as stored. It fails
// with ErrNotApplied when the answer does not show the update.
func (c *Client) Report(ctx context.Context, id, tenant string, u Update) (*SMS, error) {
	switch {
	case !isObjectID(id):
		return nil, fmt.Errorf("report sms %q: %w: id is not an ObjectId", id, ErrInvalid)
	case tenant == "":
		// The server throws on an empty tenant; no header makes this work.
		return nil, fmt.Errorf("report sms %s: %w: empty tenant", id, ErrInvalid)
	case u.Status == schema.StatusEntrusted || u.Status < schema.StatusPending || u.Status > schema.StatusUnknown:
		return nil, fmt.Errorf("report sms %s: %w: status %v", id, ErrInvalid, u.Status)
	}
	body, err := c.do(ctx, call{
		endpoint: "patch", method: http.MethodPatch, path: c.prefix + "/sms/" + url.PathEscape(id),
		tenant: tenant, body: u.body(),
	})
	if err != nil {
		// A 404 for the SMS's own tenant means it no longer exists:
		// ErrNotFound, unlike a 404 for a route that is not there.
		return nil, fmt.Errorf("report sms %s: %w", id, notFound(err))
	}
	got, err := decodeSMS(body)
	if err != nil {
		return nil, fmt.Errorf("report sms %s: %w", id, err)
	}
	if got.Status != u.Status ||
		(u.TrackingID != "" && (got.TrackingID == nil || *got.TrackingID != u.TrackingID)) ||
		(!u.SentAt.IsZero() && (got.SentAt == nil || !sameMilli(*got.SentAt, u.SentAt))) {
		return got, fmt.Errorf("report sms %s: %w: sent status %v, record shows %v", id, ErrNotApplied, u.Status, got.Status)
	}
	c.log.Debug("reported sms", zap.String("id", id), zap.Stringer("status", u.Status))
	return got, nil
}

// sameMilli compares at Mongo's millisecond precision.
func sameMilli(a, b time.Time) bool {
	return a.Truncate(time.Millisecond).Equal(b.Truncate(time.Millisecond))
}

func isObjectID(id string) bool {
	if len(id) != 24 {
		return false
	}
	for _, r := range id {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// Health probes GET /health, which is never prefixed and needs no auth or
// tenant. It does not retry: a probe reports the state now.
func (c *Client) Health(ctx context.Context) error {
	if _, err := c.do(ctx, call{endpoint: "health", method: http.MethodGet, path: "/health", once: true}); err != nil {
		return fmt.Errorf("sms api health: %w", err)
	}
	return nil
}

// call is one logical API call, retried as a unit.
type call struct {
	endpoint string // metric label: a route template name, never an id
	method   string
	path     string // escaped, relative to the base URL
	tenant   string
	body     any
	once     bool
	idle     func(*APIError) bool // expected non-2xx answers, logged at debug
}

// do runs a call with retries and returns the 2xx body.
func (c *Client) do(ctx context.Context, cl call) ([]byte, error) {
	var payload []byte
	if cl.body != nil {
		var err error
		if payload, err = json.Marshal(cl.body); err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
	}
	bo := backoff.New(c.cfg.BaseDelay, c.cfg.MaxDelay)
	renewed := false // the one immediate retry after a refused token
	for attempt := 1; ; attempt++ {
		body, tok, err := c.attempt(ctx, cl, payload)
		if err == nil {
			return body, nil
		}
		ae, isAPI := errors.AsType[*APIError](err)
		if isAPI && ae.tokenRefused() && tok != "" && c.cfg.TokenRejected != nil {
			c.cfg.TokenRejected(tok)
			if !renewed && !cl.once && ctx.Err() == nil {
				renewed = true
				attempt--
				c.log.Info("sms api refused the token; retrying with a fresh one", zap.String("endpoint", cl.endpoint),
					zap.Int("status", ae.Status), zap.Strings("messages", ae.Messages))
				continue
			}
		}
		if isAPI && !ae.Temporary() {
			if cl.idle != nil && cl.idle(ae) {
				c.log.Debug("sms api: nothing to do", zap.String("endpoint", cl.endpoint), zap.Strings("messages", ae.Messages))
			} else {
				c.log.Warn("sms api call rejected", zap.String("endpoint", cl.endpoint), zap.String("method", cl.method),
					zap.Int("status", ae.Status), zap.Strings("messages", ae.Messages))
			}
			return nil, err
		}
		if !IsTransient(err) || cl.once || attempt >= c.cfg.Attempts || ctx.Err() != nil {
			return nil, err
		}
		delay := bo.Next()
		c.log.Warn("sms api call failed, retrying", zap.String("endpoint", cl.endpoint), zap.Int("attempt", attempt),
			zap.Duration("delay", delay), zap.Error(err))
		if !backoff.Sleep(ctx, delay) {
			return nil, err
		}
	}
}

// attempt sends the request once and returns the 2xx body and the bearer
// token it carried ("" when none).
func (c *Client) attempt(ctx context.Context, cl call, payload []byte) (_ []byte, tok string, _ error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, c.base+cl.path, rd)
	if err != nil {
		return nil, "", fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "sms-gateway-poller")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.tenant != "" {
		req.Header.Set("NGSILD-Tenant", cl.tenant)
	}
	if c.cfg.Token != nil {
		var err error
		if tok, err = c.cfg.Token(actx); err != nil {
			c.log.Warn("no bearer token, calling the sms api without one", zap.Error(err))
			tok = ""
		} else if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	start := time.Now()
	resp, err := c.cfg.HTTPClient.Do(req)
	var body []byte
	if err == nil {
		if c.cfg.ServerTime != nil {
			received := time.Now()
			if date, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
				c.cfg.ServerTime(date, start, received)
			}
		}
		body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
	}
	c.latency.WithLabelValues(cl.endpoint).Observe(time.Since(start).Seconds())
	if err != nil {
		c.requests.WithLabelValues(cl.endpoint, "error").Inc()
		if ctx.Err() != nil {
			return nil, tok, context.Cause(ctx)
		}
		return nil, tok, fmt.Errorf("%w: %w", ErrTransport, err)
	}
	c.requests.WithLabelValues(cl.endpoint, strconv.Itoa(resp.StatusCode)).Inc()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, tok, parseError(resp.StatusCode, cl.method, req.URL.Path, body)
	}
	return body, tok, nil
}
