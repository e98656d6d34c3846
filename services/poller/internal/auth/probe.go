package auth

import (
	"context"
	"time"

	"golang.org/x/oauth2"
)

// This file serves `sms-poller check`, which tests discovery and the login
// as separate steps and reports the token's lifetime. Neither call touches
// the cached token, its back-off or its single flight.

// Discover reads the issuer's discovery document and returns the token
// endpoint it names.
func (s *Source) Discover(ctx context.Context) (string, error) { return s.discover(ctx) }

// Login is the outcome of one fresh login.
type Login struct {
	Grant       string // "password" or "client_credentials"
	AccessToken string // never print it
	Expiry      time.Time
}

// Login logs in once with the configured grant at tokenURL. A rejection
// wraps ErrRejected and the provider's *oauth2.RetrieveError.
func (s *Source) Login(ctx context.Context, tokenURL string) (Login, error) {
	grant := "password"
	if s.cfg.Username == "" {
		grant = "client_credentials"
	}
	tok, _, err := s.obtain(context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient), tokenURL, "")
	if err != nil {
		return Login{Grant: grant}, err
	}
	return Login{Grant: grant, AccessToken: tok.AccessToken, Expiry: tok.Expiry}, nil
}
