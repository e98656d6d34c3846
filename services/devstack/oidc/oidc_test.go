package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite/token/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const (
	clientID  = "sms-gateway"
	clientSec = "s3cr+t/=%" // characters Keycloak < 20 mishandled in Basic auth
	user      = "alice"
	pass      = "wonderland"
)

type realm struct {
	p      *Provider
	srv    *httptest.Server
	issuer string
}

func (r realm) tokenURL() string { return r.issuer + "/protocol/openid-connect/token" }

func newRealm(t *testing.T, accessTTL, refreshTTL time.Duration, mod ...func(*Config)) realm {
	t.Helper()
	cfg := Config{
		Realm:      "sr",
		Clients:    map[string]string{clientID: clientSec, "cli": ""},
		Users:      map[string]string{user: pass},
		AccessTTL:  accessTTL,
		RefreshTTL: refreshTTL,
	}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return realm{p: p, srv: srv, issuer: p.Issuer(srv.URL)}
}

// postToken sends a raw token request so tests see status and body exactly.
func postToken(t *testing.T, r realm, form url.Values, basicID, basicSecret string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.tokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode token response (status %d): %v", resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

func passwordForm() url.Values {
	return url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass},
		"client_id": {clientID}, "client_secret": {clientSec}}
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt},
		"client_id": {clientID}, "client_secret": {clientSec}}
}

func wantOAuthError(t *testing.T, status int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || body["error"] != wantCode {
		t.Fatalf("got %d %v, want %d error=%s", status, body, wantStatus, wantCode)
	}
	if d, _ := body["error_description"].(string); d == "" {
		t.Fatalf("error_description missing: %v", body)
	}
}

func TestDiscovery(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second)
	resp, err := http.Get(r.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer        string   `json:"issuer"`
		TokenEndpoint string   `json:"token_endpoint"`
		JWKSURI       string   `json:"jwks_uri"`
		Grants        []string `json:"grant_types_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != r.srv.URL+"/realms/sr" || doc.TokenEndpoint != r.tokenURL() ||
		doc.JWKSURI != r.issuer+"/protocol/openid-connect/certs" {
		t.Fatalf("discovery %+v, issuer %s", doc, r.issuer)
	}
	for _, g := range []string{"password", "refresh_token", "client_credentials"} {
		if !slices.Contains(doc.Grants, g) {
			t.Errorf("grant_types_supported %v lacks %s", doc.Grants, g)
		}
	}
	// Another realm's paths do not exist.
	resp2, err := http.Get(r.srv.URL + "/realms/other/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotFound {
		t.Fatalf("other realm: status %d", resp2.StatusCode)
	}
}

// jwksClaims verifies raw against the published JWKS only, as a resource
// server would, and returns its header key id and claims.
func jwksClaims(t *testing.T, r realm, raw string) (string, map[string]any) {
	t.Helper()
	resp, err := http.Get(r.issuer + "/protocol/openid-connect/certs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.ParseSigned(raw)
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Headers[0]
	if h.Algorithm != string(jose.RS256) {
		t.Fatalf("alg %s", h.Algorithm)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 || keys[0].Use != "sig" {
		t.Fatalf("kid %q: keys %+v", h.KeyID, keys)
	}
	var claims map[string]any
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("signature does not verify with the JWKS: %v", err)
	}
	return h.KeyID, claims
}

func TestPasswordGrant(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second)
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cfg := oauth2.Config{ClientID: clientID, ClientSecret: clientSec,
			Endpoint: oauth2.Endpoint{TokenURL: r.tokenURL(), AuthStyle: style}}
		tok, err := cfg.PasswordCredentialsToken(context.Background(), user, pass)
		if err != nil {
			t.Fatalf("auth style %d: %v", style, err)
		}
		if tok.RefreshToken == "" || tok.TokenType != "Bearer" {
			t.Fatalf("token %+v", tok)
		}
		if in := tok.Extra("refresh_expires_in").(float64); in < 4 || in > 5 {
			t.Errorf("refresh_expires_in %v, want ~5", in)
		}
		if in := tok.ExpiresIn; in < 1 || in > 2 {
			t.Errorf("expires_in %d, want ~2", in)
		}
		sub, err := r.p.Verify(tok.AccessToken)
		if err != nil || sub != user {
			t.Fatalf("Verify = %q, %v", sub, err)
		}
		kid, c := jwksClaims(t, r, tok.AccessToken)
		if kid == "" || c["iss"] != r.issuer || c["sub"] != user || c["azp"] != clientID ||
			c["preferred_username"] != user || c["typ"] != "Bearer" {
			t.Fatalf("claims %v", c)
		}
		if aud, _ := c["aud"].([]any); !slices.Contains(aud, any("account")) {
			t.Errorf("aud %v lacks account", c["aud"])
		}
		if life := c["exp"].(float64) - c["iat"].(float64); life < 1 || life > 3 {
			t.Errorf("exp-iat = %v s, want ~2", life)
		}
		roles := c["realm_access"].(map[string]any)["roles"].([]any)
		if !slices.Contains(roles, any("default-roles-sr")) {
			t.Errorf("roles %v", roles)
		}
	}
	if s := r.p.Stats(); s.PasswordGrants != 2 || s.Failures != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPublicClient(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second)
	cfg := oauth2.Config{ClientID: "cli",
		Endpoint: oauth2.Endpoint{TokenURL: r.tokenURL(), AuthStyle: oauth2.AuthStyleInParams}}
	tok, err := cfg.PasswordCredentialsToken(context.Background(), user, pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.p.Verify(tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	// A public client has no service account.
	status, body := postToken(t, r, url.Values{"grant_type": {"client_credentials"}, "client_id": {"cli"}}, "", "")
	if status/100 != 4 || body["error"] == nil {
		t.Fatalf("public client_credentials: %d %v", status, body)
	}
}

func TestErrors(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second)
	form := func(mod func(url.Values)) url.Values {
		f := passwordForm()
		mod(f)
		return f
	}
	cases := []struct {
		name       string
		form       url.Values
		basic      [2]string
		wantStatus int
		wantCode   string
	}{
		{"wrong password", form(func(f url.Values) { f.Set("password", "nope") }), [2]string{}, 400, "invalid_grant"},
		{"unknown user", form(func(f url.Values) { f.Set("username", "bob") }), [2]string{}, 400, "invalid_grant"},
		{"wrong secret in params", form(func(f url.Values) { f.Set("client_secret", "nope") }), [2]string{}, 401, "invalid_client"},
		{"wrong secret in header", form(func(f url.Values) { f.Del("client_id"); f.Del("client_secret") }),
			[2]string{clientID, "nope"}, 401, "invalid_client"},
		{"unknown client", form(func(f url.Values) { f.Set("client_id", "ghost") }), [2]string{}, 401, "invalid_client"},
		{"dead refresh token", refreshForm("not-a-token"), [2]string{}, 400, "invalid_grant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postToken(t, r, tc.form, tc.basic[0], tc.basic[1])
			wantOAuthError(t, status, body, tc.wantStatus, tc.wantCode)
		})
	}
	if s := r.p.Stats(); s.Failures != len(cases) || s.PasswordGrants != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestClientCredentials(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second)
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cfg := clientcredentials.Config{ClientID: clientID, ClientSecret: clientSec, TokenURL: r.tokenURL(), AuthStyle: style}
		tok, err := cfg.Token(context.Background())
		if err != nil {
			t.Fatalf("auth style %d: %v", style, err)
		}
		if tok.RefreshToken != "" || tok.Extra("refresh_expires_in") != float64(0) {
			t.Fatalf("client credentials issued a refresh token: %+v", tok)
		}
		sub, err := r.p.Verify(tok.AccessToken)
		if err != nil || sub != "service-account-"+clientID {
			t.Fatalf("Verify = %q, %v", sub, err)
		}
	}
	if s := r.p.Stats(); s.ClientCredentialsGrants != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRefreshRotation(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second)
	status, first := postToken(t, r, passwordForm(), "", "")
	if status != 200 {
		t.Fatalf("login: %d %v", status, first)
	}
	rt1 := first["refresh_token"].(string)

	status, second := postToken(t, r, refreshForm(rt1), "", "")
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, second)
	}
	rt2 := second["refresh_token"].(string)
	if rt2 == "" || rt2 == rt1 || second["access_token"] == first["access_token"] {
		t.Fatal("refresh did not rotate the tokens")
	}
	if second["session_state"] != first["session_state"] {
		t.Errorf("refresh changed the session: %v -> %v", first["session_state"], second["session_state"])
	}
	sub, err := r.p.Verify(second["access_token"].(string))
	if err != nil || sub != user {
		t.Fatalf("refreshed token: Verify = %q, %v", sub, err)
	}

	status, body := postToken(t, r, refreshForm(rt1), "", "")
	wantOAuthError(t, status, body, 400, "invalid_grant")
	if s := r.p.Stats(); s.PasswordGrants != 1 || s.RefreshGrants != 1 || s.Failures != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// Like dex, a realm with RequireScope refuses logins that do not ask for it.
func TestRequireScope(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second, func(c *Config) { c.RequireScope = "openid" })
	cc := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {clientSec}}
	for _, f := range []url.Values{passwordForm(), cc} {
		status, body := postToken(t, r, f, "", "")
		wantOAuthError(t, status, body, 400, "invalid_request")
		if d := body["error_description"].(string); !strings.Contains(d, `"openid"`) {
			t.Errorf("description %q does not name the scope", d)
		}
		f.Set("scope", "profile")
		status, body = postToken(t, r, f, "", "")
		wantOAuthError(t, status, body, 400, "invalid_request")
		f.Set("scope", "profile openid")
		if status, body = postToken(t, r, f, "", ""); status != 200 {
			t.Fatalf("%s with openid: %d %v", f.Get("grant_type"), status, body)
		}
	}
	_, tok := postToken(t, r, passwordForm(), "", "") // refused: no scope
	if tok["refresh_token"] != nil {
		t.Fatal("a refused login issued tokens")
	}
	f := passwordForm()
	f.Set("scope", "openid")
	_, tok = postToken(t, r, f, "", "")
	if status, body := postToken(t, r, refreshForm(tok["refresh_token"].(string)), "", ""); status != 200 {
		t.Fatalf("a refresh needs no scope parameter: %d %v", status, body)
	}
	if s := r.p.Stats(); s.Failures != 5 || s.PasswordGrants != 2 || s.ClientCredentialsGrants != 1 || s.RefreshGrants != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// RefuseRefresh answers every refresh with the given OAuth error, like dex
// after a restart, until it is switched off.
func TestRefuseRefresh(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second)
	_, tok := postToken(t, r, passwordForm(), "", "")
	rt := tok["refresh_token"].(string)
	r.p.RefuseRefresh("invalid_request")
	status, body := postToken(t, r, refreshForm(rt), "", "")
	wantOAuthError(t, status, body, 400, "invalid_request")
	if status, _ := postToken(t, r, passwordForm(), "", ""); status != 200 {
		t.Fatalf("login while refreshes are refused: %d", status)
	}
	r.p.RefuseRefresh("")
	if status, body := postToken(t, r, refreshForm(rt), "", ""); status != 200 {
		t.Fatalf("refresh after RefuseRefresh(\"\"): %d %v", status, body)
	}
	if s := r.p.Stats(); s.Failures != 1 || s.RefreshGrants != 1 || s.PasswordGrants != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRevokeAll(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second)
	_, tok := postToken(t, r, passwordForm(), "", "")
	r.p.RevokeAll()
	status, body := postToken(t, r, refreshForm(tok["refresh_token"].(string)), "", "")
	wantOAuthError(t, status, body, 400, "invalid_grant")
	// Issued JWTs stay verifiable until they expire, as with Keycloak.
	if _, err := r.p.Verify(tok["access_token"].(string)); err != nil {
		t.Fatal(err)
	}
	if status, _ := postToken(t, r, passwordForm(), "", ""); status != 200 {
		t.Fatalf("login after RevokeAll: %d", status)
	}
}

func TestLifetimesExpire(t *testing.T) {
	r := newRealm(t, 2*time.Second, 2*time.Second)
	_, tok := postToken(t, r, passwordForm(), "", "")
	at := tok["access_token"].(string)

	// Both lifetimes are equal and were set in the same request; once
	// the JWT stops verifying (its exp has whole-second granularity, so that
	// happens at least a second after its expiry) the refresh token is dead too.
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err == nil {
		if time.Now().After(deadline) {
			t.Fatal("access token still valid after 10s")
		}
		_, err = r.p.Verify(at)
		if err == nil {
			time.Sleep(50 * time.Millisecond) // poll interval
		}
	}
	var ve *jwt.ValidationError
	if !errors.Is(err, ErrInvalidToken) || !errors.As(err, &ve) || !ve.Has(jwt.ValidationErrorExpired) {
		t.Fatalf("Verify error %v, want expiry", err)
	}
	status, body := postToken(t, r, refreshForm(tok["refresh_token"].(string)), "", "")
	wantOAuthError(t, status, body, 400, "invalid_grant")
}

func TestOutage(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second)
	r.p.SetDown(true)
	for _, u := range []string{"/.well-known/openid-configuration", "/protocol/openid-connect/certs"} {
		resp, err := http.Get(r.issuer + u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s while down: %d", u, resp.StatusCode)
		}
	}
	resp, err := http.PostForm(r.tokenURL(), passwordForm())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("token while down: %d", resp.StatusCode)
	}

	r.p.SetDown(false)
	if status, body := postToken(t, r, passwordForm(), "", ""); status != 200 {
		t.Fatalf("token after outage: %d %v", status, body)
	}
	if s := r.p.Stats(); s.PasswordGrants != 1 || s.Failures != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestVerifyRejects(t *testing.T) {
	r := newRealm(t, 2*time.Second, 5*time.Second)
	other := newRealm(t, 2*time.Second, 5*time.Second)
	_, foreign := postToken(t, other, passwordForm(), "", "")
	_, own := postToken(t, r, passwordForm(), "", "")
	ownAT := own["access_token"].(string)

	// Signed with our key but naming an issuer we never announced.
	forged, _, err := r.p.signer.Generate(context.Background(), jwt.MapClaims{
		"iss": "http://evil.example/realms/sr", "sub": user, "exp": time.Now().Add(time.Minute).Unix(),
	}, &jwt.Headers{})
	if err != nil {
		t.Fatal(err)
	}
	noExp, _, err := r.p.signer.Generate(context.Background(), jwt.MapClaims{"iss": r.issuer, "sub": user}, &jwt.Headers{})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(ownAT, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]

	for name, raw := range map[string]string{
		"other provider's key": foreign["access_token"].(string),
		"unknown issuer":       forged,
		"no exp":               noExp,
		"tampered payload":     tampered,
		"garbage":              "not.a.jwt",
		"empty":                "",
	} {
		if sub, err := r.p.Verify(raw); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: Verify = %q, %v; want ErrInvalidToken", name, sub, err)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := Config{Realm: "sr", Clients: map[string]string{"c": "s"}}
	for name, mod := range map[string]func(*Config){
		"empty realm":      func(c *Config) { c.Realm = "" },
		"realm with slash": func(c *Config) { c.Realm = "a/b" },
		"no clients":       func(c *Config) { c.Clients = nil },
		"TTL under 2s":     func(c *Config) { c.AccessTTL = time.Second },
	} {
		c := good
		mod(&c)
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err %v, want ErrConfig", name, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	p, err := New(Config{Realm: "sr", Clients: map[string]string{clientID: clientSec}, Users: map[string]string{user: pass}})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	resp, err := http.PostForm(p.Issuer(srv.URL)+"/protocol/openid-connect/token", passwordForm())
	if err != nil {
		f.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.AccessToken == "" {
		f.Fatalf("login: %v", err)
	}
	f.Add(tok.AccessToken)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.")
	f.Fuzz(func(t *testing.T, raw string) {
		if sub, err := p.Verify(raw); err == nil && sub != user {
			t.Fatalf("Verify accepted %q with subject %q", raw, sub)
		}
	})
}
