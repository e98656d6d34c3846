// Package smsapi is an in-memory stand-in for the SensorsReport SMS API that
// reproduces the real service's wire behaviour, quirks included
// (sms-api-contract.md): PascalCase output with nulls omitted, integer enums,
// case-sensitive PATCH keys that are silently ignored when mis-cased, tenant
// headers that only by-id calls need, a destructive cross-tenant "next", 404
// instead of empty lists and the background task that expires and fails
// entrusted records. It also records what a client did (requests, status
// transitions and every mistake the real API would swallow or reject) so
// contract tests and the demo can assert on it without reading logs.
package smsapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// DevPrefix is where the optional test/demo hooks live (Options.DevEndpoints).
const DevPrefix = "/_devstack/"

// Version is what GET /version answers, like an image built without version.txt.
const Version = "1.0.0-unknown"

// maxBody bounds request bodies; nothing legitimate comes close.
const maxBody = 1 << 20

// Options configure a Server. The zero value is the HEAD behaviour under /api.
type Options struct {
	// Prefix is the API path prefix: "/api" (default) or "/gateway/sms" to
	// look like the Ocelot route. /health and /version are never prefixed.
	Prefix string
	// LegacyTenant400 answers a missing tenant header on every SMS endpoint
	// with 400 {"Errors":["Tenant header is missing."]}, like images built
	// before c1cd56f; HEAD answers 500 on by-id calls instead.
	LegacyTenant400 bool
	// Verify checks a bearer token; requests are served either way and
	// recorded as Authorized or not.
	Verify func(token string) error
	// RequireToken answers 401 with an empty body and WWW-Authenticate:
	// Bearer to every API request (not /health or /version) whose bearer
	// token Verify does not accept, like the API behind a gateway that
	// enforces authentication. The real API itself enforces none (§1.2).
	RequireToken bool
	// ResetWhenDown makes an outage (SetDown) reset connections instead of
	// answering 503 with an empty body.
	ResetWhenDown bool
	// DevEndpoints serves the hooks under DevPrefix over HTTP for the demo.
	DevEndpoints bool
	// TaskInterval is the background task's period for Run (default 1 min).
	TaskInterval time.Duration
	// SmsOptions: trust timeout (default 30 min), retry limit (default 3)
	// and the TTL for records without Ttl (default 30 min).
	TrustTimeout  time.Duration
	MaxRetryCount int
	DefaultTTL    time.Duration
	// ClockOffset runs the stand-in on a clock this far from the host's
	// (negative: behind), like an API server whose clock is off or a
	// gateway that boots with a wrong one: the Date header of every
	// response, default Timestamps of seeded and created SMS, SentAt set by
	// next, provider LastSeen and the background task's trust-timeout and TTL
	// decisions all read it. Recorded Request.At and Transition.At stay on
	// the host's clock, for tests to compare with their own.
	ClockOffset time.Duration
	Logger      *zap.Logger
}

// Server is the stand-in. It is an http.Handler; the background task runs
// only under Run, or one pass at a time via Tick.
type Server struct {
	opts   Options
	prefix string
	log    *zap.Logger
	routes []route

	mu        sync.Mutex
	sms       []SMS // natural order, like a Mongo collection without sort
	providers []Provider
	history   map[string][]Transition
	requests  []Request
	mistakes  []string
	down      bool
	changed   chan struct{}
}

// New returns a stand-in with no records.
func New(opts Options) *Server {
	if opts.Prefix == "" {
		opts.Prefix = "/api"
	}
	if opts.TaskInterval <= 0 {
		opts.TaskInterval = time.Minute
	}
	if opts.TrustTimeout <= 0 {
		opts.TrustTimeout = 1800 * time.Second
	}
	if opts.MaxRetryCount <= 0 {
		opts.MaxRetryCount = 3
	}
	if opts.DefaultTTL <= 0 {
		opts.DefaultTTL = schema.DefaultTTL
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	s := &Server{
		opts:    opts,
		prefix:  "/" + strings.Trim(opts.Prefix, "/"),
		log:     opts.Logger,
		history: map[string][]Transition{},
		changed: make(chan struct{}),
	}
	s.routes = s.table()
	return s
}

// call is one request being served; it holds Server.mu.
type call struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	body   []byte
	tenant string
}

// mistake records a client error the real API would swallow or reject.
func (c *call) mistake(format string, args ...any) {
	m := c.r.Method + " " + c.r.URL.Path + ": " + fmt.Sprintf(format, args...)
	c.s.mistakes = append(c.s.mistakes, m)
	c.s.log.Warn("sms api client mistake", zap.String("mistake", m))
}

// result writes a 2xx body, shaped when the query asks for ?fields=.
func (c *call) result(status int, v any) {
	if f := c.r.URL.Query().Get("fields"); f != "" {
		v = shape(v, f)
	}
	writeJSON(c.w, status, v)
}

// tenantOf mirrors TenantRetriever: NGSILD-Tenant, then Fiware-Service.
func tenantOf(h http.Header) string {
	if t := h.Get("NGSILD-Tenant"); t != "" {
		return t
	}
	return h.Get("Fiware-Service")
}

func (s *Server) authorized(r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && token != "" && s.opts.Verify != nil && s.opts.Verify(token) == nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// now is the stand-in's clock: the host's plus Options.ClockOffset.
func (s *Server) now() time.Time { return time.Now().Add(s.opts.ClockOffset) }

// now100 is DateTime.UtcNow on the stand-in's clock: 100 ns ticks.
func (s *Server) now100() time.Time { return s.now().UTC().Truncate(100 * time.Nanosecond) }

// ServeHTTP serves the API (and the dev hooks when enabled).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Set before anything is written, so net/http does not add the host's.
	w.Header().Set("Date", s.now().UTC().Format(http.TimeFormat))
	if s.opts.DevEndpoints && strings.HasPrefix(r.URL.Path, DevPrefix) {
		s.serveDev(w, r)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	authorized := s.authorized(r) // outside the lock: Verify may be slow
	sw := &statusWriter{ResponseWriter: w}

	s.mu.Lock()
	defer s.mu.Unlock()
	req := Request{Method: r.Method, Path: r.URL.Path, Tenant: tenantOf(r.Header), Authorized: authorized, At: time.Now()}
	defer func() {
		req.Status = sw.status
		s.requests = append(s.requests, req)
		s.log.Debug("sms api request", zap.String("method", req.Method), zap.String("path", req.Path), zap.Int("status", req.Status))
		s.notify()
	}()
	if s.down {
		if s.opts.ResetWhenDown {
			resetConn(w)
			return
		}
		sw.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if s.opts.RequireToken && !authorized && !open(r.URL.Path) {
		sw.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		sw.WriteHeader(http.StatusUnauthorized)
		return
	}
	c := &call{s: s, w: sw, r: r, body: body, tenant: req.Tenant}
	for _, h := range []string{"X-Tenant", "X-Tenant-Id"} {
		if r.Header.Get(h) != "" {
			c.mistake("%s header is ignored; the tenant comes from NGSILD-Tenant or Fiware-Service", h)
		}
	}
	s.route(c)
}

// open reports the paths served without a token under RequireToken.
func open(path string) bool {
	path = strings.TrimSuffix(path, "/")
	return strings.EqualFold(path, "/health") || strings.EqualFold(path, "/health/ready") || strings.EqualFold(path, "/version")
}

// resetConn drops the connection without a response, as a crashed pod or
// a dead link does.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

type route struct {
	method string
	tmpl   []string // literal segments, or "{}" for a parameter
	handle func(c *call, params []string)
}

func (s *Server) table() []route {
	r := func(method, tmpl string, h func(*call, []string)) route {
		return route{method: method, tmpl: strings.Split(tmpl, "/"), handle: h}
	}
	return []route{
		r(http.MethodPost, "provider/register", func(c *call, _ []string) { c.register() }),
		r(http.MethodGet, "provider/{}", func(c *call, p []string) { c.getProvider(p[0]) }),
		r(http.MethodGet, "provider/status/{}", func(c *call, p []string) { c.providerByStatus(p[0]) }),
		r(http.MethodGet, "provider/next/{}", func(c *call, p []string) { c.next(p[0], "", false) }),
		r(http.MethodGet, "provider/next/{}/{}", func(c *call, p []string) { c.next(p[0], p[1], true) }),
		r(http.MethodGet, "sms", func(c *call, _ []string) { c.list() }),
		r(http.MethodPost, "sms", func(c *call, _ []string) { c.create() }),
		r(http.MethodGet, "sms/{}", func(c *call, p []string) { c.get(p[0]) }),
		r(http.MethodPut, "sms/{}", func(c *call, p []string) { c.put(p[0]) }),
		r(http.MethodPatch, "sms/{}", func(c *call, p []string) { c.patch(p[0]) }),
		r(http.MethodDelete, "sms/{}", func(c *call, p []string) { c.delete(p[0]) }),
	}
}

// route dispatches like ASP.NET endpoint routing: case-insensitive
// literals, a literal beats a parameter, a path that matches only other
// methods' templates is 405 with an empty body, anything else 404.
func (s *Server) route(c *call) {
	path := strings.TrimSuffix(c.r.URL.EscapedPath(), "/")
	switch {
	case strings.EqualFold(path, "/health"), strings.EqualFold(path, "/health/ready"):
		c.w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(c.w, "Healthy")
		return
	case strings.EqualFold(path, "/version"):
		c.w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(c.w, Version)
		return
	}
	rest, ok := cutPrefixFold(path, s.prefix+"/")
	if !ok {
		writeMessage(c.w, http.StatusNotFound, "The requested resource was not found.")
		return
	}
	segs := strings.Split(rest, "/")
	var best *route
	var bestParams []string
	bestLiterals, pathMatched := -1, false
	for i := range s.routes {
		rt := &s.routes[i]
		params, literals, ok := rt.match(segs)
		if !ok {
			continue
		}
		pathMatched = true
		if rt.method == c.r.Method && literals > bestLiterals {
			best, bestParams, bestLiterals = rt, params, literals
		}
	}
	switch {
	case best != nil:
		best.handle(c, bestParams)
	case pathMatched:
		c.w.WriteHeader(http.StatusMethodNotAllowed)
	default:
		writeMessage(c.w, http.StatusNotFound, "The requested resource was not found.")
	}
}

func (rt *route) match(segs []string) (params []string, literals int, ok bool) {
	if len(segs) != len(rt.tmpl) {
		return nil, 0, false
	}
	for i, t := range rt.tmpl {
		if t == "{}" {
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" {
				return nil, 0, false
			}
			params = append(params, v)
			continue
		}
		if !strings.EqualFold(t, segs[i]) {
			return nil, 0, false
		}
		literals++
	}
	return params, literals, true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// notify wakes WaitFor callers; it must be called with mu held after every
// state change.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) index(id string) int {
	id = strings.ToLower(id)
	return slices.IndexFunc(s.sms, func(m SMS) bool { return m.ID == id })
}

// setStatus changes a record's status and records the transition.
func (s *Server) setStatus(i int, to schema.Status, by string) {
	from := s.sms[i].Status
	s.sms[i].Status = to
	if from != to {
		s.history[s.sms[i].ID] = append(s.history[s.sms[i].ID], Transition{At: time.Now(), From: from, To: to, By: by})
	}
}

// Seed inserts a record directly, bypassing every API rule, and returns its
// id. Empty ID and zero Timestamp are filled in, a nil CountryCode is
// computed from the phone number (as the MassTransit consumer does), times
// are stored as Mongo would (UTC milliseconds). A nil TTL means the default
// TTL applies, like alarm SMS.
func (s *Server) Seed(m SMS) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.ID = strings.ToLower(m.ID)
	if m.ID == "" {
		m.ID = newObjectID()
	}
	if m.Timestamp.IsZero() {
		m.Timestamp = s.now()
	}
	m.Timestamp = utc(m.Timestamp).stored()
	if m.SentAt != nil {
		t := utc(*m.SentAt).stored()
		m.SentAt = &t
	}
	if m.CountryCode == nil {
		cc := countryCode(m.PhoneNumber)
		m.CountryCode = &cc
	}
	s.sms = append(s.sms, m)
	s.history[m.ID] = append(s.history[m.ID], Transition{At: time.Now(), From: m.Status, To: m.Status, By: "seed"})
	s.notify()
	return m.ID
}

// SetDown starts or ends an outage: every API request (health included)
// answers 503 with an empty body, or has its connection reset when
// Options.ResetWhenDown is set. The dev hooks stay up.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	s.notify()
}

// View is read access to the state inside WaitFor; it must not be kept.
type View struct{ s *Server }

// Get returns the stored record with this id.
func (v *View) Get(id string) (SMS, bool) {
	if i := v.s.index(id); i >= 0 {
		return v.s.sms[i], true
	}
	return SMS{}, false
}

// All returns every record in natural order.
func (v *View) All() []SMS { return slices.Clone(v.s.sms) }

// History returns the status transitions of one record, oldest first.
func (v *View) History(id string) []Transition {
	return slices.Clone(v.s.history[strings.ToLower(id)])
}

// Requests returns every API request served so far.
func (v *View) Requests() []Request { return slices.Clone(v.s.requests) }

// Mistakes returns every client mistake recorded so far.
func (v *View) Mistakes() []string { return slices.Clone(v.s.mistakes) }

// Provider returns the first provider with this exact name.
func (v *View) Provider(name string) (Provider, bool) {
	i := slices.IndexFunc(v.s.providers, func(p Provider) bool { return p.Name == name })
	if i < 0 {
		return Provider{}, false
	}
	p := v.s.providers[i]
	p.SupportedCountryCodes = slices.Clone(p.SupportedCountryCodes)
	return p, true
}

func (s *Server) view() (*View, func()) {
	s.mu.Lock()
	return &View{s}, s.mu.Unlock
}

// Get returns the stored record with this id.
func (s *Server) Get(id string) (SMS, bool) {
	v, done := s.view()
	defer done()
	return v.Get(id)
}

// All returns every record in natural order.
func (s *Server) All() []SMS {
	v, done := s.view()
	defer done()
	return v.All()
}

// History returns the status transitions of one record, oldest first.
func (s *Server) History(id string) []Transition {
	v, done := s.view()
	defer done()
	return v.History(id)
}

// Requests returns every API request served so far.
func (s *Server) Requests() []Request {
	v, done := s.view()
	defer done()
	return v.Requests()
}

// Mistakes returns every client mistake recorded so far.
func (s *Server) Mistakes() []string {
	v, done := s.view()
	defer done()
	return v.Mistakes()
}

// Provider returns the first provider with this exact name.
func (s *Server) Provider(name string) (Provider, bool) {
	v, done := s.view()
	defer done()
	return v.Provider(name)
}

// WaitFor blocks until cond holds, re-evaluating it after every state change
// (including every request served), or until ctx ends. cond runs under the
// server's lock and must not call the Server's methods.
func (s *Server) WaitFor(ctx context.Context, cond func(*View) bool) error {
	for {
		s.mu.Lock()
		ok := cond(&View{s})
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("smsapi: wait: %w", context.Cause(ctx))
		}
	}
}
