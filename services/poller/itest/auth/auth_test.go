package auth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sensorsreport/smsgw/services/devstack/oidc"
	"github.com/sensorsreport/smsgw/services/poller/internal/auth"
)

// Distinctive values so a leak into the logs cannot be a coincidence.
const (
	clientID     = "sms-gateway"
	clientSecret = "cs-2b8e41+/=never-log"
	user         = "gateway-pi"
	password     = "pw-7f3c9a-never-log"
)

// idp is the fosite-based Keycloak stand-in behind a recording middleware.
type idp struct {
	p      *oidc.Provider
	srv    *httptest.Server
	issuer string

	arrived      chan struct{} // one send per gated token request
	failPassword atomic.Bool   // answer password grants 503, as in a partial outage

	mu          sync.Mutex
	tokenReqs   []tokenReq
	discoveries int
	inflight    int
	maxInflight int
	gate        chan struct{} // token requests block on it while non-nil
}

type tokenReq struct {
	form  url.Values
	basic bool
}

func newIDP(t *testing.T, accessTTL, refreshTTL time.Duration, mod ...func(*oidc.Config)) *idp {
	t.Helper()
	cfg := oidc.Config{
		Realm:      "sr",
		Clients:    map[string]string{clientID: clientSecret, "public-cli": ""},
		Users:      map[string]string{user: password},
		AccessTTL:  accessTTL,
		RefreshTTL: refreshTTL,
	}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := oidc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := &idp{p: p, arrived: make(chan struct{}, 100)}
	h := p.Handler()
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/openid-configuration"):
			d.mu.Lock()
			d.discoveries++
			d.mu.Unlock()
		case strings.HasSuffix(r.URL.Path, "/token"):
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			_, _, basic := r.BasicAuth()
			d.mu.Lock()
			d.tokenReqs = append(d.tokenReqs, tokenReq{form: form, basic: basic})
			d.inflight++
			d.maxInflight = max(d.maxInflight, d.inflight)
			gate := d.gate
			d.mu.Unlock()
			defer func() {
				d.mu.Lock()
				d.inflight--
				d.mu.Unlock()
			}()
			if gate != nil {
				d.arrived <- struct{}{}
				<-gate
			}
			if form.Get("grant_type") == "password" && d.failPassword.Load() {
				http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(d.srv.Close)
	d.issuer = p.Issuer(d.srv.URL)
	return d
}

// hold makes token requests block until the returned release is called.
func (d *idp) hold(t *testing.T) (release func()) {
	gate := make(chan struct{})
	d.mu.Lock()
	d.gate = gate
	d.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			d.mu.Lock()
			d.gate = nil
			d.mu.Unlock()
			close(gate)
		})
	}
	t.Cleanup(release)
	return release
}

func (d *idp) requests() []tokenReq {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]tokenReq(nil), d.tokenReqs...)
}

func (d *idp) maxConcurrent() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.maxInflight
}

type harness struct {
	src  *auth.Source
	logs *observer.ObservedLogs
	reg  *prometheus.Registry
}

func newSource(t *testing.T, d *idp, mod func(*auth.Config)) harness {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	reg := prometheus.NewRegistry()
	cfg := auth.Config{
		IssuerURL:    d.issuer,
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Username:     user,
		Password:     password,
		HTTPClient:   &http.Client{Timeout: 5 * time.Second},
		Log:          zap.New(core),
		Registerer:   reg,
		MinBackoff:   20 * time.Millisecond,
		MaxBackoff:   100 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	src, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { assertNoSecrets(t, logs, cfg.Password, cfg.ClientSecret) })
	return harness{src: src, logs: logs, reg: reg}
}

// assertNoSecrets fails if a password, client secret or JWT reached the log.
func assertNoSecrets(t *testing.T, logs *observer.ObservedLogs, secrets ...string) {
	t.Helper()
	for _, e := range logs.All() {
		line := fmt.Sprintf("%s %v", e.Message, e.ContextMap())
		for _, s := range append(secrets, "eyJ") {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("log entry leaks %q: %s", s, line)
			}
		}
	}
}

func counter(t *testing.T, reg *prometheus.Registry, grant, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sms_poller_token_refreshes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["grant"] == grant && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func mustToken(t *testing.T, d *idp, s *auth.Source) string {
	t.Helper()
	tok, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.p.Verify(tok); err != nil {
		t.Fatalf("Token returned a token the provider rejects: %v", err)
	}
	return tok
}

func TestIssuerFrom(t *testing.T) {
	cases := []struct {
		issuer, kc, realm string
		want              string
		wantErr           error
	}{
		{"https://kc.example.net/realms/sr/", "https://ignored", "x", "https://kc.example.net/realms/sr", nil},
		{"", "https://kc.example.net/", "sr", "https://kc.example.net/realms/sr", nil},
		{"", "http://keycloak:8080/auth", "sr", "http://keycloak:8080/auth/realms/sr", nil},
		{"", "", "sr", "", auth.ErrNoIssuer},
		{"", "https://kc.example.net", "", "", auth.ErrConfig},
		{"", "kc.example.net", "sr", "", auth.ErrConfig},
		{"ftp://kc/realms/sr", "", "", "", auth.ErrConfig},
	}
	for _, c := range cases {
		got, err := auth.IssuerFrom(c.issuer, c.kc, c.realm)
		if got != c.want || !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
			t.Errorf("IssuerFrom(%q, %q, %q) = %q, %v; want %q, %v", c.issuer, c.kc, c.realm, got, err, c.want, c.wantErr)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := auth.Config{IssuerURL: "https://kc/realms/sr", ClientID: clientID}
	for name, mod := range map[string]func(*auth.Config){
		"no issuer":            func(c *auth.Config) { c.IssuerURL = "" },
		"no client":            func(c *auth.Config) { c.ClientID = "" },
		"user without pass":    func(c *auth.Config) { c.Username = user },
		"issuer not absolute":  func(c *auth.Config) { c.IssuerURL = "/realms/sr" },
		"issuer not http(s)":   func(c *auth.Config) { c.IssuerURL = "file:///realms/sr" },
		"duplicate registerer": nil,
	} {
		c := good
		if mod == nil {
			c.Registerer = prometheus.NewRegistry()
			if _, err := auth.New(c); err != nil {
				t.Fatal(err)
			}
			if _, err := auth.New(c); err == nil {
				t.Errorf("%s: registering the metrics twice succeeded", name)
			}
			continue
		}
		mod(&c)
		if _, err := auth.New(c); !errors.Is(err, auth.ErrConfig) {
			t.Errorf("%s: err %v, want ErrConfig", name, err)
		}
	}
}

func TestPasswordGrant(t *testing.T) {
	d := newIDP(t, 2*time.Second, 5*time.Second)
	h := newSource(t, d, nil)
	if err := h.src.Ready(); !errors.Is(err, auth.ErrNoToken) {
		t.Fatalf("Ready before login = %v", err)
	}
	tok := mustToken(t, d, h.src)
	if sub, _ := d.p.Verify(tok); sub != user {
		t.Fatalf("subject %q", sub)
	}
	if again := mustToken(t, d, h.src); again != tok {
		t.Fatal("a still-fresh token was not reused")
	}
	if err := h.src.Ready(); err != nil {
		t.Fatalf("Ready = %v", err)
	}

	reqs := d.requests()
	if len(reqs) != 1 || d.discoveries != 1 {
		t.Fatalf("%d token requests, %d discoveries; want 1 and 1", len(reqs), d.discoveries)
	}
	f := reqs[0].form
	// Client credentials travel as form parameters, never Basic (§3.5).
	if reqs[0].basic || f.Get("grant_type") != "password" || f.Get("client_id") != clientID ||
		f.Get("client_secret") != clientSecret || f.Get("username") != user {
		t.Fatalf("token request basic=%v form=%v", reqs[0].basic, f.Encode())
	}
	if got := counter(t, h.reg, "password", "success"); got != 1 {
		t.Fatalf("password/success = %v", got)
	}
}

func TestPublicClientSendsNoSecret(t *testing.T) {
	d := newIDP(t, 2*time.Second, 5*time.Second)
	h := newSource(t, d, func(c *auth.Config) { c.ClientID, c.ClientSecret = "public-cli", "" })
	mustToken(t, d, h.src)
	r := d.requests()[0]
	if _, has := r.form["client_secret"]; has || r.basic || r.form.Get("client_id") != "public-cli" {
		t.Fatalf("basic=%v form=%v", r.basic, r.form.Encode())
	}
}

func TestClientCredentials(t *testing.T) {
	d := newIDP(t, 2*time.Second, 5*time.Second)
	h := newSource(t, d, func(c *auth.Config) { c.Username, c.Password = "", "" })
	tok := mustToken(t, d, h.src)
	if sub, _ := d.p.Verify(tok); sub != "service-account-"+clientID {
		t.Fatalf("subject %q", sub)
	}
	r := d.requests()[0]
	if r.basic || r.form.Get("grant_type") != "client_credentials" || r.form.Get("client_secret") != clientSecret {
		t.Fatalf("basic=%v form=%v", r.basic, r.form.Encode())
	}
	if st := d.p.Stats(); st.ClientCredentialsGrants != 1 || st.PasswordGrants != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got := counter(t, h.reg, "client_credentials", "success"); got != 1 {
		t.Fatalf("client_credentials/success = %v", got)
	}
}

// Many goroutines use the source while several 2 s tokens come and go; each
// token they get must still be valid, refreshes must come from the refresh
// token (one login only), and never two at a time. With rotation on, a
// duplicated refresh would also show up as a provider failure.
func TestRefreshesAheadOfExpiryUnderLoad(t *testing.T) {
	d := newIDP(t, 2*time.Second, 5*time.Second)
	h := newSource(t, d, nil)

	const workers = 8
	var stop atomic.Bool
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond) // pacing, not waiting
			defer tick.Stop()
			for !stop.Load() {
				tok, err := h.src.Token(context.Background())
				if err != nil {
					errs <- err
					return
				}
				if _, err := d.p.Verify(tok); err != nil {
					errs <- fmt.Errorf("Token returned a token the provider rejects: %w", err)
					return
				}
				<-tick.C
			}
		})
	}
	eventually(t, 30*time.Second, "three refreshes", func() bool {
		return d.p.Stats().RefreshGrants >= 3 || len(errs) > 0
	})
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := d.p.Stats()
	if st.PasswordGrants != 1 || st.Failures != 0 || st.RefreshGrants < 3 {
		t.Fatalf("stats %+v", st)
	}
	if n := d.maxConcurrent(); n != 1 {
		t.Fatalf("%d token requests ran concurrently", n)
	}
	// A background refresh may still be on its way back from the provider
	// when the workers stop: wait for the source to account for it.
	eventually(t, 10*time.Second, "the refresh metric to match the provider", func() bool {
		return counter(t, h.reg, "refresh_token", "success") == float64(d.p.Stats().RefreshGrants)
	})
}

// The refresh starts while the held token is still valid, and callers keep
// getting that token without waiting while the refresh is in flight. The
// provider parks the refresh request so the window can be inspected; a source
// that refreshed only at expiry would make the Token calls below block.
func TestRefreshStartsBeforeExpiry(t *testing.T) {
	d := newIDP(t, 3*time.Second, 10*time.Second)
	h := newSource(t, d, nil)
	tok1 := mustToken(t, d, h.src)
	release := d.hold(t)

	quickToken := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		tok, err := h.src.Token(ctx)
		if err != nil {
			t.Fatalf("Token had to wait for the refresh: %v", err)
		}
		if tok != tok1 {
			t.Fatal("token changed while its refresh was parked")
		}
		return tok
	}
	deadline := time.Now().Add(10 * time.Second)
parked:
	for {
		select {
		case <-d.arrived:
			break parked
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no refresh started within 10s")
		}
		quickToken()
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if _, err := d.p.Verify(quickToken()); err != nil {
		t.Fatalf("held token invalid while its refresh is in flight: %v", err)
	}
	if g := d.requests()[1].form.Get("grant_type"); g != "refresh_token" {
		t.Fatalf("grant %q", g)
	}

	release()
	eventually(t, 10*time.Second, "the refreshed token", func() bool {
		tok, err := h.src.Token(context.Background())
		return err == nil && tok != tok1
	})
	if st := d.p.Stats(); st.PasswordGrants != 1 || st.RefreshGrants != 1 || st.Failures != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Callers arriving while a fetch is in flight share it; nothing blocks
// behind the network call (the legacy gateway deadlocked there).
func TestConcurrentCallersShareOneFetch(t *testing.T) {
	d := newIDP(t, 2*time.Second, 5*time.Second)
	h := newSource(t, d, nil)

	round := func(t *testing.T) string {
		release := d.hold(t)
		const n = 32
		start := make(chan struct{})
		type result struct {
			tok string
			err error
		}
		results := make(chan result, n)
		for range n {
			go func() {
				<-start
				tok, err := h.src.Token(context.Background())
				results <- result{tok, err}
			}()
		}
		close(start)
		select {
		case <-d.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("no token request reached the provider")
		}

		// The fetch is parked inside the provider now.
		ready := make(chan error, 1)
		go func() { ready <- h.src.Ready() }()
		select {
		case err := <-ready:
			if !errors.Is(err, auth.ErrNoToken) {
				t.Fatalf("Ready during fetch = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Ready blocked behind the in-flight fetch")
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := h.src.Token(ctx); !errors.Is(err, auth.ErrNoToken) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Token with a cancelled context = %v", err)
		}

		release()
		var first string
		for range n {
			r := <-results
			if r.err != nil {
				t.Fatal(r.err)
			}
			if first == "" {
				first = r.tok
			} else if r.tok != first {
				t.Fatal("callers got different tokens from one window")
			}
		}
		return first
	}

	tok1 := round(t)
	if st := d.p.Stats(); st.PasswordGrants != 1 || st.RefreshGrants != 0 {
		t.Fatalf("after login: stats %+v", st)
	}
	h.src.Invalidate(tok1)
	tok2 := round(t)
	if st := d.p.Stats(); st.PasswordGrants != 1 || st.RefreshGrants != 1 || st.Failures != 0 {
		t.Fatalf("after refresh: stats %+v", st)
	}
	if tok1 == tok2 {
		t.Fatal("Invalidate did not lead to a new token")
	}
	if n := d.maxConcurrent(); n != 1 {
		t.Fatalf("%d token requests ran concurrently", n)
	}
}

// When the provider no longer accepts the refresh token (sessions revoked,
// or idle past the refresh lifetime) the source logs in again.
func TestLoginAgainWhenSessionEnds(t *testing.T) {
	cases := map[string]struct {
		accessTTL, refreshTTL time.Duration
		end                   func(t *testing.T, d *idp, h harness, tok string)
	}{
		"sessions revoked": {2 * time.Second, 5 * time.Second, func(t *testing.T, d *idp, h harness, tok string) {
			d.p.RevokeAll()
			h.src.Invalidate(tok) // as after a 401 from the API
		}},
		"refresh token idle-expired": {2 * time.Second, 2 * time.Second, func(t *testing.T, d *idp, _ harness, tok string) {
			// Nobody calls Token meanwhile, so nothing refreshes. Both
			// lifetimes are 2 s from the same request and the JWT's whole-
			// second exp gives it ≥1 s of grace, so once it stops verifying
			// the refresh token has expired too.
			eventually(t, 10*time.Second, "the access token to expire", func() bool {
				_, err := d.p.Verify(tok)
				return err != nil
			})
		}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := newIDP(t, c.accessTTL, c.refreshTTL)
			h := newSource(t, d, nil)
			tok := mustToken(t, d, h.src)
			c.end(t, d, h, tok)
			if again := mustToken(t, d, h.src); again == tok {
				t.Fatal("got the old token back")
			}
			st := d.p.Stats()
			if st.PasswordGrants != 2 || st.RefreshGrants != 0 || st.Failures != 1 {
				t.Fatalf("stats %+v; want 2 logins and 1 refused refresh", st)
			}
			reqs := d.requests()
			if g := reqs[1].form.Get("grant_type"); g != "refresh_token" {
				t.Fatalf("second request grant %q, want refresh_token first", g)
			}
			if got := counter(t, h.reg, "refresh_token", "invalid_grant"); got != 1 {
				t.Fatalf("refresh_token/invalid_grant = %v", got)
			}
		})
	}
}

// An outage longer than the token's life: the held token is served while
// valid, then calls fail transiently, and the source recovers by itself.
func TestOutageRiddenOut(t *testing.T) {
	d := newIDP(t, 2*time.Second, 10*time.Second)
	h := newSource(t, d, nil)
	tok1 := mustToken(t, d, h.src)

	d.p.SetDown(true)
	var outageErr error
	eventually(t, 15*time.Second, "the held token to run out", func() bool {
		tok, err := h.src.Token(context.Background())
		if err == nil && tok != tok1 {
			t.Fatal("a new token appeared while the provider was down")
		}
		outageErr = err
		return err != nil
	})
	if !errors.Is(outageErr, auth.ErrNoToken) || errors.Is(outageErr, auth.ErrRejected) {
		t.Fatalf("error during outage = %v; want transient ErrNoToken", outageErr)
	}
	if err := h.src.Ready(); err == nil {
		t.Fatal("Ready without a valid token")
	}

	d.p.SetDown(false)
	var tok2 string
	eventually(t, 15*time.Second, "recovery after the outage", func() bool {
		var err error
		tok2, err = h.src.Token(context.Background())
		return err == nil
	})
	if _, err := d.p.Verify(tok2); err != nil || tok2 == tok1 {
		t.Fatalf("token after recovery: new=%v, verify error %v", tok2 != tok1, err)
	}
	// The refresh token outlived the outage: no new session was needed.
	if st := d.p.Stats(); st.PasswordGrants != 1 || st.RefreshGrants < 1 || st.Failures != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got := counter(t, h.reg, "refresh_token", "error"); got < 1 {
		t.Fatalf("refresh_token/error = %v, want failed attempts counted", got)
	}
	if err := h.src.Ready(); err != nil {
		t.Fatalf("Ready after recovery = %v", err)
	}
}

// Rejected credentials are a permanent error and are not retried until a
// long back-off has passed, so Keycloak's brute-force lockout never trips.
func TestRejectedCredentialsBackOff(t *testing.T) {
	cases := map[string]struct {
		mod            func(*auth.Config)
		grant, outcome string
	}{
		"wrong client secret": {func(c *auth.Config) { c.ClientSecret = "cs-wrong-never-log" }, "password", "rejected"},
		"wrong password":      {func(c *auth.Config) { c.Password = "pw-wrong-never-log" }, "password", "invalid_grant"},
		"wrong client secret, client credentials": {func(c *auth.Config) {
			c.Username, c.Password, c.ClientSecret = "", "", "cs-wrong-never-log"
		}, "client_credentials", "rejected"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := newIDP(t, 2*time.Second, 5*time.Second)
			h := newSource(t, d, c.mod)
			for range 3 {
				_, err := h.src.Token(context.Background())
				if !errors.Is(err, auth.ErrNoToken) || !errors.Is(err, auth.ErrRejected) {
					t.Fatalf("Token = %v; want ErrNoToken wrapping ErrRejected", err)
				}
			}
			// One attempt, sent once (no Basic-then-params auto-detect retry).
			if n := len(d.requests()); n != 1 {
				t.Fatalf("%d token requests; want 1", n)
			}
			if got := counter(t, h.reg, c.grant, c.outcome); got != 1 {
				t.Fatalf("%s/%s = %v", c.grant, c.outcome, got)
			}
			if h.logs.FilterMessage("cannot obtain access token").Len() != 1 {
				t.Fatal("the failure was not logged")
			}
		})
	}
}

// Invalidate renews only the token it names: a refusal that arrives after
// the token was replaced leaves the successor alone.
func TestInvalidateOnlyTheCurrentToken(t *testing.T) {
	d := newIDP(t, 10*time.Second, 30*time.Second)
	h := newSource(t, d, nil)
	tok1 := mustToken(t, d, h.src)
	h.src.Invalidate("not-the-current-token")
	if tok := mustToken(t, d, h.src); tok != tok1 {
		t.Fatal("invalidating another token replaced the current one")
	}
	h.src.Invalidate(tok1)
	if err := h.src.Ready(); !errors.Is(err, auth.ErrNoToken) {
		t.Fatalf("Ready after Invalidate = %v", err)
	}
	tok2 := mustToken(t, d, h.src)
	if tok2 == tok1 {
		t.Fatal("Invalidate did not lead to a new token")
	}
	h.src.Invalidate(tok1) // a late 401 for the old token
	if tok := mustToken(t, d, h.src); tok != tok2 {
		t.Fatal("a late refusal of the old token discarded its successor")
	}
	if st := d.p.Stats(); st.PasswordGrants != 1 || st.RefreshGrants != 1 {
		t.Fatalf("stats %+v; want one login and one refresh", st)
	}
}

func TestParseScopes(t *testing.T) {
	for in, want := range map[string][]string{
		"openid":                     {"openid"},
		"openid profile,email":       {"openid", "profile", "email"},
		" openid,, openid\tprofile ": {"openid", "profile"},
		"urn:x:api/read":             {"urn:x:api/read"},
	} {
		got, err := auth.ParseScopes(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseScopes(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", " , ", `open"id`, `a\b`, "ópenid", "openid\x00"} {
		if got, err := auth.ParseScopes(bad); !errors.Is(err, auth.ErrConfig) {
			t.Errorf("ParseScopes(%q) = %q, %v; want ErrConfig", bad, got, err)
		}
	}
	if _, err := auth.New(auth.Config{IssuerURL: "https://kc/realms/sr", ClientID: clientID, Scopes: []string{"a b"}}); !errors.Is(err, auth.ErrConfig) {
		t.Errorf("New accepted a scope with a space: %v", err)
	}
}

// A provider that requires openid (dex) accepts both grants with the
// default scope and refuses them, clearly, without it.
func TestScopeIsSent(t *testing.T) {
	grants := map[string]func(*auth.Config){
		"password":           nil,
		"client_credentials": func(c *auth.Config) { c.Username, c.Password = "", "" },
	}
	for grant, mod := range grants {
		t.Run(grant, func(t *testing.T) {
			d := newIDP(t, 10*time.Second, 30*time.Second, func(c *oidc.Config) { c.RequireScope = "openid" })
			scopes, err := auth.ParseScopes("openid") // OIDC_SCOPES' default
			if err != nil {
				t.Fatal(err)
			}
			h := newSource(t, d, func(c *auth.Config) {
				if mod != nil {
					mod(c)
				}
				c.Scopes = scopes
			})
			mustToken(t, d, h.src)
			if f := d.requests()[0].form; f.Get("grant_type") != grant || f.Get("scope") != "openid" {
				t.Fatalf("form %v", f.Encode())
			}

			without := newSource(t, d, func(c *auth.Config) {
				if mod != nil {
					mod(c)
				}
				c.Registerer = nil
			})
			_, err = without.src.Token(t.Context())
			if !errors.Is(err, auth.ErrRejected) || !strings.Contains(err.Error(), "invalid_request") ||
				!strings.Contains(err.Error(), `\"openid\"`) {
				t.Fatalf("without the scope: %v; want a rejection naming the missing scope", err)
			}
			if f := d.requests()[1].form; f.Has("scope") {
				t.Fatalf("a source without scopes sent scope=%q", f.Get("scope"))
			}
		})
	}
}

// A refresh refused with any OAuth error drops the refresh token and logs
// in afresh, at once; the refresh token is not offered again even when that
// login fails.
func TestRefreshRefusedLogsInAgain(t *testing.T) {
	for _, code := range []string{"invalid_request", "invalid_grant", "unauthorized_client", "server_error"} {
		t.Run(code, func(t *testing.T) {
			d := newIDP(t, 10*time.Second, 30*time.Second)
			h := newSource(t, d, nil)
			tok1 := mustToken(t, d, h.src)
			d.p.RefuseRefresh(code) // as dex after a restart
			h.src.Invalidate(tok1)
			tok2 := mustToken(t, d, h.src)
			if tok2 == tok1 {
				t.Fatal("got the refused token back")
			}
			if g := grants(d); !slices.Equal(g, []string{"password", "refresh_token", "password"}) {
				t.Fatalf("grants %v", g)
			}

			// Refused again, and this time the login fails too (503).
			d.failPassword.Store(true)
			h.src.Invalidate(tok2)
			if _, err := h.src.Token(t.Context()); !errors.Is(err, auth.ErrNoToken) || errors.Is(err, auth.ErrRejected) {
				t.Fatalf("Token = %v; want a transient ErrNoToken", err)
			}
			d.failPassword.Store(false)
			d.p.RefuseRefresh("")
			var tok3 string
			eventually(t, 10*time.Second, "a token after the back-off", func() bool {
				var err error
				tok3, err = h.src.Token(t.Context())
				return err == nil
			})
			if _, err := d.p.Verify(tok3); err != nil {
				t.Fatal(err)
			}
			want := []string{"password", "refresh_token", "password", "refresh_token", "password", "password"}
			if g := grants(d); !slices.Equal(g, want) {
				t.Fatalf("grants %v, want %v: the refused refresh token was offered again", g, want)
			}
		})
	}
}

func grants(d *idp) []string {
	var out []string
	for _, r := range d.requests() {
		out = append(out, r.form.Get("grant_type"))
	}
	return out
}
