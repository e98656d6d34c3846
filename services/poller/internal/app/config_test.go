package app

import (
	"os"
	"strings"
	"testing"
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

func TestWebhookConfig(t *testing.T) {
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
	} {
		u, s, err := Config{WebhookURL: tc.url, WebhookSecret: tc.secret}.Webhook()
		switch {
		case tc.err == "" && (err != nil || u != tc.url || (u != "" && s != tc.secret)):
			t.Errorf("%q/%q: %q, %v", tc.url, tc.secret, u, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q/%q: error %v, want one naming %s", tc.url, tc.secret, err, tc.err)
		}
	}
}
