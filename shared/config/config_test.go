package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sample struct {
	URL       string   `env:"SMS_API_URL,required"`
	Poll      Duration `env:"POLL_INTERVAL" envDefault:"10s"`
	Timeout   Duration `env:"MODEM_TIMEOUT" envDefault:"30s"`
	Countries []string `env:"SMS_COUNTRIES" envDefault:"RO" envSeparator:","`
	User      string   `env:"KEYCLOAK_USER"`
	Level     string   `env:"LOG_LEVEL" envDefault:"info"`
}

func TestDurationAcceptsGoSyntaxAndSeconds(t *testing.T) {
	for in, want := range map[string]time.Duration{"10s": 10 * time.Second, "2m": 2 * time.Minute, "30": 30 * time.Second, " 1.5 ": 1500 * time.Millisecond} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || d.D() != want {
			t.Errorf("%q: %v, %v; want %v", in, d.D(), err, want)
		}
	}
	var d Duration
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Error("accepted a nonsense duration")
	}
}

func TestDefaultsAndRequired(t *testing.T) {
	if _, err := LoadFrom[sample](map[string]string{}); err == nil || !strings.Contains(err.Error(), "SMS_API_URL") {
		t.Fatalf("missing required variable: %v", err)
	}
	c, err := LoadFrom[sample](map[string]string{"SMS_API_URL": "http://x", "SMS_COUNTRIES": "RO,GB"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Poll.D() != 10*time.Second || len(c.Countries) != 2 || c.Level != "info" {
		t.Fatalf("%+v", c)
	}
}

func TestLegacyINIIsOverriddenByTheEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.ini")
	ini := `[MODEM]
ModemTimeOutInSec = 45
ModemNr = +40726369867
Country = RO

[SERVICE]
ServiceSMSURL = https://api.example.net/sms
SleepTimeInSec = 7

[KEYCLOAK]
KeycloakUser = legacy-user
KeycloakPassword = legacy-pass

[LOGGING]
LogLevel = DEBUG
LogFile = sms_gateway.log
`
	if err := os.WriteFile(path, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadFrom[sample](map[string]string{"CONFIG_FILE": path, "KEYCLOAK_USER": "env-user", "SMS_API_URL": ""})
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "https://api.example.net/sms" || c.Poll.D() != 7*time.Second || c.Timeout.D() != 45*time.Second {
		t.Fatalf("legacy values not applied: %+v", c)
	}
	if c.User != "env-user" {
		t.Fatalf("environment must override the file: user %q", c.User)
	}
	if c.Level != "debug" || len(c.Countries) != 1 || c.Countries[0] != "RO" {
		t.Fatalf("%+v", c)
	}
	if _, err := LoadFrom[sample](map[string]string{"CONFIG_FILE": filepath.Join(t.TempDir(), "missing.ini")}); err == nil {
		t.Fatal("a missing CONFIG_FILE must be an error")
	}
}
