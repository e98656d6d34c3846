package app

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/poller/internal/auth"
	"github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
	"github.com/sensorsreport/smsgw/shared/config"
)

// newTokens builds the token source the configuration asks for; nil when
// no issuer is configured (the API does not enforce auth).
func newTokens(cfg Config, log *zap.Logger, reg prometheus.Registerer) (*auth.Source, error) {
	issuer, err := auth.IssuerFrom(cfg.IssuerURL, cfg.KeycloakURL, cfg.KeycloakRealm)
	switch {
	case errors.Is(err, auth.ErrNoIssuer):
		return nil, nil
	case err != nil:
		return nil, issuerError(cfg, err)
	}
	scopes, err := auth.ParseScopes(cfg.OIDCScopes)
	if err != nil {
		return nil, config.Invalid("OIDC_SCOPES", cfg.OIDCScopes, scopesWant)
	}
	return auth.New(auth.Config{
		IssuerURL: issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		Username: cfg.User, Password: cfg.Password, Scopes: scopes,
		HTTPClient: &http.Client{Timeout: 30 * time.Second},
		Log:        log.Named("auth"), Registerer: reg,
	})
}

// issuerError names the variable an unusable issuer comes from.
func issuerError(cfg Config, err error) error {
	if cfg.IssuerURL != "" {
		return config.Invalid("OIDC_ISSUER_URL", cfg.IssuerURL, "an absolute http(s) issuer URL ("+err.Error()+")")
	}
	return config.Invalid("KEYCLOAK_URL", cfg.KeycloakURL, "an absolute http(s) URL; with KEYCLOAK_REALM it must make an issuer URL ("+err.Error()+")")
}

// newAPI builds the SMS API client the service and the operator commands
// share; tokens may be nil.
func newAPI(cfg Config, tokens *auth.Source, log *zap.Logger, reg prometheus.Registerer, attempts int, serverTime func(date, sent, received time.Time)) (*smsapi.Client, error) {
	apiCfg := smsapi.Config{BaseURL: cfg.APIURL, Prefix: cfg.APIPrefix, Logger: log.Named("api"), Registerer: reg,
		Attempts: attempts, ServerTime: serverTime}
	if tokens != nil {
		apiCfg.Token, apiCfg.TokenRejected = tokens.Token, tokens.Invalidate
	}
	api, err := smsapi.New(apiCfg)
	if err != nil {
		return nil, config.Invalid("SMS_API_URL", cfg.APIURL, "an absolute http(s) URL such as https://api.example.net")
	}
	return api, nil
}
