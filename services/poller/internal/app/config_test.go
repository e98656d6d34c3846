package app

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/config"
)

func TestProviderName(t *testing.T) {
	if got := (Config{Provider: "gw-1", ModemNumber: "+40726369867"}).ProviderName(); got != "gw-1" {
		t.Errorf("explicit name: %q", got)
	}
	// The legacy gateway's name, so its provider record (and its country
	// codes, which the API never updates) is reused.
	if got := (Config{ModemNumber: "+40 726-369-867"}).ProviderName(); got != "RaspberryPI-Gateway-40726369867" {
		t.Errorf("from MODEM_NUMBER: %q", got)
	}
	host, _ := os.Hostname()
	if got := (Config{}).ProviderName(); !strings.HasPrefix(got, "RaspberryPI-Gateway-") || !strings.HasSuffix(got, host) {
		t.Errorf("from hostname: %q", got)
	}
}

func TestCountryCodes(t *testing.T) {
	got := (Config{Countries: []string{" ro", "GB", "RO", ""}}).CountryCodes()
	if strings.Join(got, ",") != "RO,GB" {
		t.Errorf("CountryCodes = %v", got)
	}
}

func TestOIDCScopesDefault(t *testing.T) {
	base := map[string]string{"SMS_API_URL": "http://api", "NATS_USER": "u", "NATS_PASSWORD": "p"}
	cfg, err := config.LoadFrom[Config](base)
	if err != nil || cfg.OIDCScopes != "openid" {
		t.Fatalf("OIDC_SCOPES unset: %q, %v; want openid", cfg.OIDCScopes, err)
	}
	base["OIDC_SCOPES"] = "openid,profile"
	if cfg, err = config.LoadFrom[Config](base); err != nil || cfg.OIDCScopes != "openid,profile" {
		t.Fatalf("OIDC_SCOPES set: %q, %v", cfg.OIDCScopes, err)
	}
}

func TestBadOIDCScopesNameTheVariable(t *testing.T) {
	cfg := Config{Countries: []string{"RO"}, IssuerURL: "http://idp.example/realms/sr", ClientID: "c", OIDCScopes: `openid "profile"`}
	err := Run(t.Context(), cfg, zap.NewNop())
	if err == nil || !strings.HasPrefix(err.Error(), "OIDC_SCOPES: ") || !strings.Contains(err.Error(), `"\"profile\""`) {
		t.Fatalf("Run = %v; want an error naming OIDC_SCOPES and the bad scope", err)
	}
}
