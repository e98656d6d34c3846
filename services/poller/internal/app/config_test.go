package app

import (
	"maps"
	"os"
	"path/filepath"
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

func TestConfigErrorsNameTheVariable(t *testing.T) {
	base := map[string]string{"SMS_API_URL": "https://api.example.net", "NATS_USER": "modem", "NATS_PASSWORD": "p"}
	if _, err := config.LoadFrom[Config](base); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}
	for k, v := range map[string]string{
		"SMS_API_URL": "not a url", "POLL_INTERVAL": "abc", "SMS_COUNTRIES": "Romania", "KEYCLOAK_URL": "keycloak",
		"OIDC_ISSUER_URL": "/realms/sr", "NATS_LISTEN": "4222", "HTTP_ADDR": "8080", "MAX_QUEUED_JOBS": "0",
		"JOB_ACK_WAIT": "-1s", "SMS_API_PREFIX": "/api?x", "KEYCLOAK_USER": "gateway", "NATS_MAX_STORE_MB": "lots",
		"OIDC_SCOPES": `openid "profile"`,
	} {
		env := maps.Clone(base)
		env[k] = v
		_, err := config.LoadFrom[Config](env)
		want := k
		if k == "KEYCLOAK_USER" {
			want = "KEYCLOAK_PASSWORD is not set"
		}
		if !config.IsConfig(err) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "want ") {
			t.Errorf("%s=%q: %v", k, v, err)
		}
	}
}

func TestOIDCScopes(t *testing.T) {
	base := map[string]string{"SMS_API_URL": "http://api", "NATS_USER": "u", "NATS_PASSWORD": "p"}
	cfg, err := config.LoadFrom[Config](base)
	if err != nil || cfg.OIDCScopes != "openid" {
		t.Fatalf("OIDC_SCOPES unset: %q, %v; want openid", cfg.OIDCScopes, err)
	}
	base["OIDC_SCOPES"] = "openid,profile"
	if cfg, err = config.LoadFrom[Config](base); err != nil || cfg.OIDCScopes != "openid,profile" {
		t.Fatalf("OIDC_SCOPES set: %q, %v", cfg.OIDCScopes, err)
	}
	// Run, which tests call without loading, refuses a bad value too.
	cfg.IssuerURL, cfg.OIDCScopes = "http://idp.example/realms/sr", "openid,\\x"
	if _, err := newTokens(cfg, zap.NewNop(), nil); !config.IsConfig(err) || !strings.Contains(err.Error(), "OIDC_SCOPES") {
		t.Fatalf("newTokens with a bad scope: %v", err)
	}
}

// Every secret the poller reads may come from a Docker secret file.
func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	file := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := config.LoadFrom[Config](map[string]string{
		"SMS_API_URL": "http://api", "NATS_USER": "modem",
		"NATS_PASSWORD_FILE":          file("nats", "n-pass"),
		"KEYCLOAK_PASSWORD_FILE":      file("kc", "k-pass"),
		"KEYCLOAK_CLIENT_SECRET_FILE": file("cs", "c-secret"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSPass != "n-pass" || c.Password != "k-pass" || c.ClientSecret != "c-secret" {
		t.Fatalf("%+v", c)
	}
	_, err = config.LoadFrom[Config](map[string]string{
		"SMS_API_URL": "http://api", "NATS_USER": "modem",
		"NATS_PASSWORD": "x", "NATS_PASSWORD_FILE": file("nats", "n-pass"),
	})
	if err == nil || !strings.Contains(err.Error(), "NATS_PASSWORD and NATS_PASSWORD_FILE") {
		t.Fatalf("both set: %v", err)
	}
}

func TestWebhookConfig(t *testing.T) {
	base := map[string]string{"SMS_API_URL": "https://api.example.net", "NATS_USER": "modem", "NATS_PASSWORD": "p"}
	for _, tc := range []struct {
		url, secret, err string
	}{
		{"", "", ""},
		{"", "s", ""},
		{"https://hooks.example/sms", "s", ""},
		{"http://10.0.0.2:9000/in", "s", ""},
		{"https://hooks.example/sms", "", "INCOMING_WEBHOOK_SECRET"},
		{"hooks.example/sms", "s", "INCOMING_WEBHOOK_URL"},
		{"ftp://hooks.example/sms", "s", "INCOMING_WEBHOOK_URL"},
		{"https://", "s", "INCOMING_WEBHOOK_URL"},
		{"::", "s", "INCOMING_WEBHOOK_URL"},
		{"ftp://user:pw@hooks.example/sms?token=tok", "s", "INCOMING_WEBHOOK_URL"},
	} {
		env := maps.Clone(base)
		env["INCOMING_WEBHOOK_URL"], env["INCOMING_WEBHOOK_SECRET"] = tc.url, tc.secret
		cfg, err := config.LoadFrom[Config](env)
		switch {
		case tc.err == "" && (err != nil || cfg.WebhookURL != tc.url || cfg.WebhookSecret != tc.secret):
			t.Errorf("%q/%q: %+v, %v", tc.url, tc.secret, cfg, err)
		case tc.err != "" && (!config.IsConfig(err) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q/%q: error %v, want one naming %s", tc.url, tc.secret, err, tc.err)
		case err != nil && (strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "tok")):
			t.Errorf("the error shows a credential: %v", err)
		}
	}
}
