package auth_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sensorsreport/smsgw/services/poller/internal/auth"
)

// refusingIDP is an OIDC provider that refuses every login the way Keycloak
// refuses a wrong password: 401 with the OAuth error invalid_grant. It
// counts the token requests.
func refusingIDP(t *testing.T) (issuer string, tokenRequests *atomic.Int64) {
	t.Helper()
	tokenRequests = new(atomic.Int64)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuer = srv.URL + "/realms/sr"
	mux.HandleFunc("GET /realms/sr/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"issuer":"` + issuer + `","token_endpoint":"` + issuer + `/protocol/openid-connect/token"}`))
	})
	mux.HandleFunc("POST /realms/sr/protocol/openid-connect/token", func(w http.ResponseWriter, _ *http.Request) {
		tokenRequests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"Invalid user credentials"}`))
	})
	return issuer, tokenRequests
}

// A rejected login is retried on shared/backoff's schedule: from 5 s, doubling
// with jitter, capped at 5 min, and never before the wait is over. The
// source's clock is moved instead of sleeping.
func TestRejectedLoginBackOffSchedule(t *testing.T) {
	issuer, requests := refusingIDP(t)
	core, logs := observer.New(zap.DebugLevel)
	src, err := auth.New(auth.Config{
		IssuerURL: issuer, ClientID: "sms-gateway", ClientSecret: "cs-never-log",
		Username: "gateway-pi", Password: "pw-wrong-never-log",
		HTTPClient: &http.Client{Timeout: 5 * time.Second}, Log: zap.New(core),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	auth.SetClock(src, func() time.Time { return now })
	ceiling := 5 * time.Second
	for i := range 12 {
		if _, err := src.Token(t.Context()); !errors.Is(err, auth.ErrRejected) {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if n := requests.Load(); n != int64(i+1) {
			t.Fatalf("attempt %d: %d token requests", i, n)
		}
		wait := auth.NextTry(src).Sub(now)
		if wait < ceiling/2 || wait > ceiling {
			t.Fatalf("wait %d = %v, want within [%v, %v]", i, wait, ceiling/2, ceiling)
		}
		ceiling = min(2*ceiling, 5*time.Minute)

		now = now.Add(wait - time.Millisecond)
		if _, err := src.Token(t.Context()); !errors.Is(err, auth.ErrRejected) {
			t.Fatalf("during the wait: %v", err)
		}
		if n := requests.Load(); n != int64(i+1) {
			t.Fatalf("a login was retried %v before its back-off ended", time.Millisecond)
		}
		now = now.Add(time.Millisecond)
	}
	if ceiling != 5*time.Minute {
		t.Fatalf("the schedule never reached its cap: %v", ceiling)
	}
	for _, e := range logs.All() {
		if line := fmt.Sprintf("%s %v", e.Message, e.ContextMap()); strings.Contains(line, "never-log") {
			t.Errorf("log entry leaks a secret: %s", line)
		}
	}
}
