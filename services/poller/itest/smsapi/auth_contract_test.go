package smsapi_test

// Contract tests with real tokens: the OIDC stand-in issues them, the auth
// source holds them, and the SMS API stand-in verifies them and, like an
// API behind an authenticating gateway, answers 401 when they do not pass.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	standin "github.com/sensorsreport/smsgw/services/devstack/smsapi"

	"github.com/sensorsreport/smsgw/services/devstack/oidc"
	"github.com/sensorsreport/smsgw/services/poller/internal/auth"
	"github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

type authRig struct {
	*rig
	idp     *oidc.Provider
	src     *auth.Source
	revoked atomic.Value // string: a token the API refuses though it verifies

	mu            sync.Mutex
	rejected      []string         // what the client passed to TokenRejected
	tokenRejected func(tok string) // the client's TokenRejected: records, then invalidates
}

func newAuthRig(t *testing.T, cfg smsapi.Config) *authRig {
	t.Helper()
	p, err := oidc.New(oidc.Config{Realm: "sr", Clients: map[string]string{"sms-gateway": "cs"},
		Users: map[string]string{"gw": "pw"}, AccessTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	idpSrv := httptest.NewServer(p.Handler())
	t.Cleanup(idpSrv.Close)
	src, err := auth.New(auth.Config{IssuerURL: p.Issuer(idpSrv.URL), ClientID: "sms-gateway", ClientSecret: "cs",
		Username: "gw", Password: "pw", HTTPClient: &http.Client{Timeout: 5 * time.Second}, Log: zap.NewNop(),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a := &authRig{idp: p, src: src}
	a.revoked.Store("")
	verify := func(tok string) error {
		if tok == a.revoked.Load().(string) {
			return errors.New("token revoked at the API")
		}
		_, err := p.Verify(tok)
		return err
	}
	cfg.Token = src.Token
	a.tokenRejected = func(tok string) {
		a.mu.Lock()
		a.rejected = append(a.rejected, tok)
		a.mu.Unlock()
		src.Invalidate(tok)
	}
	cfg.TokenRejected = a.tokenRejected
	a.rig = newRig(t, standin.Options{Verify: verify, RequireToken: true}, cfg)
	return a
}

func (a *authRig) rejectedTokens() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.rejected)
}

// claim takes the seeded SMS with a valid token and returns that token.
func (a *authRig) claim(t *testing.T) (*smsapi.SMS, string) {
	t.Helper()
	a.api.Seed(alarm("t"))
	tok, err := a.src.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.c.Next(t.Context(), gateway, "RO")
	if err != nil {
		t.Fatal(err)
	}
	return s, tok
}

func (a *authRig) patchStatuses() []int {
	var out []int
	for _, q := range a.api.Requests() {
		if q.Method == http.MethodPatch {
			out = append(out, q.Status)
		}
	}
	return out
}

// A token the API refuses is renewed and the call retried at once: with a
// budget of one attempt the PATCH still lands, through a refresh.
func TestContractRefusedTokenIsRenewedAtOnce(t *testing.T) {
	a := newAuthRig(t, smsapi.Config{Attempts: 1})
	s, tok1 := a.claim(t)
	a.revoked.Store(tok1)
	if _, err := a.c.Report(t.Context(), s.ID, s.Tenant, smsapi.Update{Status: schema.StatusSent}); err != nil {
		t.Fatal(err)
	}
	if got := a.patchStatuses(); !slices.Equal(got, []int{401, 200}) {
		t.Fatalf("PATCH statuses %v, want 401 then 200", got)
	}
	if got := a.rejectedTokens(); !slices.Equal(got, []string{tok1}) {
		t.Fatalf("TokenRejected got %d tokens, want the refused one only", len(got))
	}
	if st := a.idp.Stats(); st.PasswordGrants != 1 || st.RefreshGrants != 1 {
		t.Fatalf("idp stats %+v, want one login and one refresh", st)
	}
	if m, _ := a.api.Get(s.ID); m.Status != schema.StatusSent {
		t.Fatalf("stored %+v", m)
	}
	a.noMistakes(t)
}

// Contract issue 9: a PATCH answered 401 while the identity provider is
// down is not dropped. Out of attempts it returns a transient error; with
// attempts left it is retried and lands once the provider is back.
func TestContractPatch401WhileIdentityProviderDown(t *testing.T) {
	a := newAuthRig(t, smsapi.Config{Attempts: 1 << 20})
	s, tok1 := a.claim(t)
	a.idp.SetDown(true)
	a.revoked.Store(tok1)

	short, err := smsapi.New(smsapi.Config{BaseURL: a.srv.URL, Token: a.src.Token, TokenRejected: a.tokenRejected, Attempts: 2,
		BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = short.Report(t.Context(), s.ID, s.Tenant, smsapi.Update{Status: schema.StatusSent})
	if ae, ok := errors.AsType[*smsapi.APIError](err); !ok || ae.Status != 401 || !smsapi.IsTransient(err) {
		t.Fatalf("out of attempts: %v; want a transient 401", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	go func() {
		_ = a.api.WaitFor(ctx, func(v *standin.View) bool { return len(v.Requests()) >= 8 })
		a.idp.SetDown(false)
	}()
	if _, err := a.c.Report(ctx, s.ID, s.Tenant, smsapi.Update{Status: schema.StatusSent}); err != nil {
		t.Fatal(err)
	}
	st := a.patchStatuses()
	if len(st) < 4 || st[len(st)-1] != 200 || slices.Contains(st[:len(st)-1], 200) {
		t.Fatalf("PATCH statuses %v, want 401s then one 200", st)
	}
	if reqs := a.api.Requests(); !reqs[len(reqs)-1].Authorized {
		t.Fatal("the PATCH that landed carried no valid token")
	}
	if m, _ := a.api.Get(s.ID); m.Status != schema.StatusSent {
		t.Fatalf("stored %+v", m)
	}
	// Only the token that was sent and refused is reported; 401s to calls
	// made without a token (the provider was down) invalidate nothing.
	if got := a.rejectedTokens(); len(got) != 1 || got[0] != tok1 {
		t.Fatalf("TokenRejected got %d tokens, want tok1 once", len(got))
	}
	a.noMistakes(t)
}
