// Package oidc is an in-process OpenID Connect provider that behaves like a
// Keycloak realm closely enough for the poller to be exercised against it:
// Keycloak's URL layout under /realms/{realm}, a discovery document, a JWKS,
// RS256 access tokens with Keycloak's claims, the password, refresh_token
// (with rotation) and client_credentials grants, refresh_expires_in in token
// responses and Keycloak-shaped error bodies. The OAuth 2.0 machinery is
// ory/fosite; this package only adds the Keycloak shape and the switches tests
// and the devstack need (a simulated outage, session revocation, counters and
// a bearer-token verifier for the SMS API stand-in).
package oidc

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha256" // registers crypto.SHA256 for the key thumbprint
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	fositeoauth2 "github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/storage"
	"github.com/ory/fosite/token/jwt"
)

// Keycloak's defaults: access token lifespan 5 min, SSO Session Idle 30 min
// (which bounds the refresh token).
const (
	defaultAccessTTL  = 5 * time.Minute
	defaultRefreshTTL = 30 * time.Minute
	minTTL            = 2 * time.Second // see Config.AccessTTL
)

var (
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("oidc: invalid config")
	// ErrInvalidToken reports a bearer token Verify rejects.
	ErrInvalidToken = errors.New("oidc: invalid token")
)

// realmName keeps the realm usable verbatim in ServeMux patterns and URLs.
var realmName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Config describes one realm.
type Config struct {
	Realm string
	// Clients maps client IDs to secrets; an empty secret makes the client
	// public (password and refresh_token grants only, as in Keycloak).
	Clients map[string]string
	// Users maps usernames to passwords for the password grant.
	Users map[string]string
	// AccessTTL and RefreshTTL default to Keycloak's 5 min and 30 min. fosite
	// rounds expiries to the second, so a 1 s lifetime can be announced as
	// expires_in 0, which OAuth clients read as "never expires": both must
	// be at least 2 s.
	// RefreshTTL acts like Keycloak's SSO Session Idle: each refresh issues a
	// new refresh token with a fresh lifetime.
	AccessTTL, RefreshTTL time.Duration
	// RequireScope, when set, refuses password and client_credentials
	// grants whose scope parameter lacks it with 400 invalid_request, as dex
	// refuses a password grant without "openid".
	RequireScope string
}

// Stats counts token endpoint outcomes since New.
type Stats struct {
	PasswordGrants          int
	RefreshGrants           int
	ClientCredentialsGrants int
	// Failures counts token requests answered with an OAuth error. Requests
	// refused with 503 during SetDown are not counted.
	Failures int
}

// Provider is one realm. Its zero value is not usable; call New.
type Provider struct {
	realm        string
	requireScope string
	refuseCode   atomic.Value // string; see RefuseRefresh
	oauth        fosite.OAuth2Provider
	store        *storage.MemoryStore
	signer       *jwt.DefaultSigner
	jwks         []byte
	kid          string
	down         atomic.Bool

	// issuers is the set of issuer URLs the provider has announced (one per
	// host name it was reached by, as with Keycloak without a fixed
	// hostname), so Verify accepts exactly the tokens it could have minted.
	issuers sync.Map

	// mu serialises the token endpoint: fosite's MemoryStore revokes refresh
	// tokens while holding only its request-ID lock, so concurrent refreshes
	// would race on its maps.
	mu    sync.Mutex
	stats Stats
}

// New builds a realm with a fresh RSA signing key.
func New(cfg Config) (*Provider, error) {
	if !realmName.MatchString(cfg.Realm) {
		return nil, fmt.Errorf("%w: realm %q", ErrConfig, cfg.Realm)
	}
	if len(cfg.Clients) == 0 {
		return nil, fmt.Errorf("%w: no clients", ErrConfig)
	}
	if cfg.AccessTTL == 0 {
		cfg.AccessTTL = defaultAccessTTL
	}
	if cfg.RefreshTTL == 0 {
		cfg.RefreshTTL = defaultRefreshTTL
	}
	if cfg.AccessTTL < minTTL || cfg.RefreshTTL < minTTL {
		return nil, fmt.Errorf("%w: token lifetimes must be at least %v", ErrConfig, minTTL)
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("oidc: generate key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("oidc: key id: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return nil, fmt.Errorf("oidc: encode jwks: %w", err)
	}

	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("oidc: global secret: %w", err)
	}
	fcfg := &fosite.Config{
		AccessTokenLifespan:  cfg.AccessTTL,
		RefreshTokenLifespan: cfg.RefreshTTL,
		GlobalSecret:         secret,
		// Keycloak issues refresh tokens without an offline scope.
		RefreshTokenScopes: []string{},
		// Keycloak puts scopes in a space-separated "scope" claim.
		JWTScopeClaimKey: jwt.JWTScopeFieldString,
		// bcrypt's minimum cost: the default (12) costs ~250 ms per token
		// request, which only slows tests down here.
		HashCost: 4,
	}

	store := storage.NewMemoryStore()
	hasher := &fosite.BCrypt{Config: fcfg}
	for id, sec := range cfg.Clients {
		c := &fosite.DefaultClient{
			ID:       id,
			Public:   sec == "",
			Audience: []string{"account"},
			Scopes:   []string{"openid", "profile", "email", "roles", "offline_access"},
		}
		if c.Public {
			c.GrantTypes = []string{"password", "refresh_token"}
		} else {
			c.GrantTypes = []string{"password", "refresh_token", "client_credentials"}
			if c.Secret, err = hasher.Hash(context.Background(), []byte(sec)); err != nil {
				return nil, fmt.Errorf("oidc: hash secret of client %q: %w", id, err)
			}
		}
		store.Clients[id] = c
	}
	for name, pw := range cfg.Users {
		store.Users[name] = storage.MemoryUserRelation{Username: name, Password: pw}
	}

	getKey := func(context.Context) (any, error) { return key, nil }
	strategy := compose.NewOAuth2JWTStrategy(getKey, compose.NewOAuth2HMACStrategy(fcfg), fcfg)
	oauth := compose.Compose(fcfg, store, strategy,
		// Deprecated in fosite because OAuth 2.1 drops ROPC; Keycloak (and
		// the gateway's legacy configuration) still use it, so the stand-in must.
		compose.OAuth2ResourceOwnerPasswordCredentialsFactory, //lint:ignore SA1019 the gateway's real IdP speaks ROPC
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
	)
	p := &Provider{
		realm:        cfg.Realm,
		requireScope: cfg.RequireScope,
		oauth:        oauth,
		store:        store,
		signer:       &jwt.DefaultSigner{GetPrivateKey: getKey},
		jwks:         jwks,
		kid:          jwk.KeyID,
	}
	p.refuseCode.Store("")
	return p, nil
}

// Issuer is the realm's issuer URL when the provider is served at baseURL.
func (p *Provider) Issuer(baseURL string) string {
	return strings.TrimRight(baseURL, "/") + "/realms/" + p.realm
}

// Handler serves the realm's discovery document, token endpoint and JWKS.
func (p *Provider) Handler() http.Handler {
	base := "/realms/" + p.realm
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+base+"/.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("POST "+base+"/protocol/openid-connect/token", p.token)
	mux.HandleFunc("GET "+base+"/protocol/openid-connect/certs", p.certs)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "identity provider unavailable (simulated outage)", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// SetDown simulates an outage: while down, every endpoint answers 503.
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

// RevokeAll ends every session, like an admin's "Sign out all sessions": the
// next refresh of any refresh token fails with invalid_grant. Access tokens
// already issued stay valid until they expire, as Keycloak's JWTs do for
// resource servers that verify them offline.
func (p *Provider) RevokeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.store.RefreshTokens)
	clear(p.store.RefreshTokenRequestIDs)
	clear(p.store.AccessTokens)
	clear(p.store.AccessTokenRequestIDs)
}

// RefuseRefresh makes every refresh_token grant fail with 400 and this OAuth
// error code while code is not empty, as dex answers invalid_request for
// refresh tokens it lost in a restart. "" restores normal refreshes.
func (p *Provider) RefuseRefresh(code string) { p.refuseCode.Store(code) }

// Stats returns the token endpoint counters.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Verify checks an access token's signature, expiry and issuer and returns
// its subject.
func (p *Provider) Verify(raw string) (string, error) {
	t, err := p.signer.Decode(context.Background(), raw)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if !t.Claims.VerifyExpiresAt(time.Now().Unix(), true) {
		return "", fmt.Errorf("%w: no exp claim", ErrInvalidToken)
	}
	iss, _ := t.Claims["iss"].(string)
	if _, known := p.issuers.Load(iss); !known {
		return "", fmt.Errorf("%w: unknown issuer %q", ErrInvalidToken, iss)
	}
	sub, _ := t.Claims["sub"].(string)
	if sub == "" {
		return "", fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	return sub, nil
}

// issuerFor derives the issuer from the request, as Keycloak does when no
// fixed hostname is configured, and remembers it for Verify.
func (p *Provider) issuerFor(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	iss := p.Issuer(scheme + "://" + r.Host)
	p.issuers.Store(iss, struct{}{})
	return iss
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	iss := p.issuerFor(r)
	writeJSON(w, map[string]any{
		"issuer":                                iss,
		"token_endpoint":                        iss + "/protocol/openid-connect/token",
		"jwks_uri":                              iss + "/protocol/openid-connect/certs",
		"grant_types_supported":                 []string{"password", "refresh_token", "client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"subject_types_supported":               []string{"public"},
		"scopes_supported":                      []string{"openid", "profile", "email", "roles", "offline_access"},
	})
}

func (p *Provider) certs(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(p.jwks)
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	iss := p.issuerFor(r)
	ctx := r.Context()

	p.mu.Lock()
	defer p.mu.Unlock()

	if code, desc := p.refusal(r); code != "" {
		p.stats.Failures++
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
		return
	}
	sess := &fositeoauth2.JWTSession{
		JWTClaims: &jwt.JWTClaims{},
		JWTHeader: &jwt.Headers{Extra: map[string]any{"kid": p.kid}},
	}
	ar, err := p.oauth.NewAccessRequest(ctx, r, sess)
	if err != nil {
		p.stats.Failures++
		p.oauth.WriteAccessError(ctx, w, ar, err)
		return
	}
	grant := ar.GetGrantTypes()
	// A refresh replaces the session with a clone of the original one.
	claims := ar.GetSession().(*fositeoauth2.JWTSession).JWTClaims
	claims.Issuer = iss
	claims.IssuedAt = time.Now().UTC()
	switch {
	case grant.ExactOne("password"):
		username := ar.GetRequestForm().Get("username")
		p.newSession(ar, claims, username, username)
	case grant.ExactOne("client_credentials"):
		id := ar.GetClient().GetID()
		p.newSession(ar, claims, "service-account-"+id, "service-account-"+id)
	}

	resp, err := p.oauth.NewAccessResponse(ctx, ar)
	if err != nil {
		p.stats.Failures++
		p.oauth.WriteAccessError(ctx, w, ar, err)
		return
	}
	// Keycloak's extras: the refresh token's remaining life (0 when none
	// was issued), the session id and the not-before policy.
	refreshIn := int64(0)
	if resp.GetExtra("refresh_token") != nil {
		refreshIn = int64(time.Until(ar.GetSession().GetExpiresAt(fosite.RefreshToken)) / time.Second)
	}
	resp.SetExtra("refresh_expires_in", refreshIn)
	resp.SetExtra("session_state", ar.GetID())
	resp.SetExtra("not-before-policy", 0)
	resp.SetTokenType("Bearer")

	switch {
	case grant.ExactOne("password"):
		p.stats.PasswordGrants++
	case grant.ExactOne("refresh_token"):
		p.stats.RefreshGrants++
	case grant.ExactOne("client_credentials"):
		p.stats.ClientCredentialsGrants++
	}
	p.oauth.WriteAccessResponse(ctx, w, ar, resp)
}

// refusal is the stand-in's own answer to a token request, before fosite
// sees it: a missing required scope, or a refresh while RefuseRefresh is on.
func (p *Provider) refusal(r *http.Request) (code, desc string) {
	if err := r.ParseForm(); err != nil {
		return "", "" // fosite answers it
	}
	switch grant := r.PostForm.Get("grant_type"); grant {
	case "password", "client_credentials":
		if p.requireScope != "" && !slices.Contains(strings.Fields(r.PostForm.Get("scope")), p.requireScope) {
			return "invalid_request", fmt.Sprintf("Missing required scope(s) [%q].", p.requireScope)
		}
	case "refresh_token":
		if code := p.refuseCode.Load().(string); code != "" {
			return code, "Refresh token is invalid or has already been claimed by another client."
		}
	}
	return "", ""
}

// newSession fills the claims Keycloak puts in a new session's access
// tokens; refreshes inherit them through fosite's session clone.
func (p *Provider) newSession(ar fosite.AccessRequester, c *jwt.JWTClaims, sub, username string) {
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	ar.GrantAudience("account")
	c.Subject = sub
	c.Extra = map[string]any{
		"typ":                "Bearer",
		"azp":                ar.GetClient().GetID(),
		"preferred_username": username,
		"realm_access":       map[string]any{"roles": []string{"default-roles-" + p.realm}},
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
