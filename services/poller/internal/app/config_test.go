package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
