package app

import (
	"crypto/tls"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/tlstest"
)

var tlsBase = map[string]string{"SMS_API_URL": "https://api.example.net", "NATS_USER": "modem", "NATS_PASSWORD": "p"}

func TestBrokerTLSConfig(t *testing.T) {
	ca := tlstest.NewCA(t, "smsgw test CA")
	cert, key := ca.Server("poller", 90*24*time.Hour)
	_, otherKey := ca.Server("other", time.Hour)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	env := maps.Clone(tlsBase)
	env["NATS_TLS_CERT"], env["NATS_TLS_KEY"] = cert, key
	cfg, err := config.LoadFrom[Config](env)
	if err != nil {
		t.Fatalf("a good certificate and key: %v", err)
	}
	tc, leaf, err := cfg.brokerTLS()
	if err != nil || tc == nil || tc.MinVersion != tls.VersionTLS12 || len(tc.Certificates) != 1 || leaf.Subject.CommonName != "poller" {
		t.Fatalf("brokerTLS = %+v, %v, %v", tc, leaf, err)
	}
	if tc, leaf, err := (Config{}).brokerTLS(); tc != nil || leaf != nil || err != nil {
		t.Fatalf("neither set: %v, %v, %v", tc, leaf, err)
	}

	for _, c := range []struct {
		name, cert, key, want string
	}{
		{"only the certificate", cert, "", "NATS_TLS_KEY is not set"},
		{"only the key", "", key, "NATS_TLS_CERT is not set"},
		{"missing certificate file", missing, key, "NATS_TLS_CERT="},
		{"missing key file", cert, missing, "NATS_TLS_KEY="},
		{"garbage certificate", garbage, key, "NATS_TLS_CERT="},
		{"certificate not PEM", notPEM, key, "NATS_TLS_CERT="},
		{"key not PEM", cert, notPEM, "NATS_TLS_KEY="},
		{"key of another certificate", cert, otherKey, "NATS_TLS_KEY="},
		{"key given as the certificate", key, key, "NATS_TLS_CERT="},
	} {
		env := maps.Clone(tlsBase)
		env["NATS_TLS_CERT"], env["NATS_TLS_KEY"] = c.cert, c.key
		_, err := config.LoadFrom[Config](env)
		if !config.IsConfig(err) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "want ") {
			t.Errorf("%s: %v, want a configuration error naming %s", c.name, err, c.want)
		}
	}
}

// `sms-poller check` shows the listener's TLS state and fails on a
// certificate close to its end.
func TestCheckBrokerListener(t *testing.T) {
	ca := tlstest.NewCA(t, "smsgw test CA")
	line := func(cfg Config) CheckLine {
		t.Helper()
		var got []CheckLine
		(&checker{cfg: cfg, out: func(l CheckLine) { got = append(got, l) }}).listenerTLS()
		if len(got) != 1 || got[0].Name != "broker listener" {
			t.Fatalf("lines %+v", got)
		}
		return got[0]
	}
	cfg := Config{NATSListen: "0.0.0.0:4222"}
	if l := line(cfg); l.Outcome != OK || !strings.Contains(l.Detail, "plain TCP on 0.0.0.0:4222") {
		t.Errorf("without TLS: %+v", l)
	}

	cfg.NATSTLSCert, cfg.NATSTLSKey = ca.Server("poller", 90*24*time.Hour)
	l := line(cfg)
	if l.Outcome != OK || !strings.Contains(l.Detail, "TLS required on 0.0.0.0:4222, cert CN=poller (DNS localhost; IP 127.0.0.1, ::1), issuer CN=smsgw test CA, expires ") ||
		!strings.Contains(l.Detail, "(in 89 days)") || strings.Contains(l.Detail, "warning") {
		t.Errorf("with TLS: %+v", l)
	}

	if err := os.Chmod(cfg.NATSTLSKey, 0o644); err != nil {
		t.Fatal(err)
	}
	if l := line(cfg); l.Outcome != OK || !strings.Contains(l.Detail, "warning: NATS_TLS_KEY") {
		t.Errorf("world-readable key: %+v", l)
	}

	cfg.NATSTLSCert, cfg.NATSTLSKey = ca.Server("soon", 3*24*time.Hour)
	if l := line(cfg); l.Outcome != FAIL || !strings.Contains(l.Detail, "expires within 14 days") || strings.Join(l.Fix, ",") != "NATS_TLS_CERT" {
		t.Errorf("expiring certificate: %+v", l)
	}
	cfg.NATSTLSCert, cfg.NATSTLSKey = ca.Server("old", -time.Minute)
	if l := line(cfg); l.Outcome != FAIL || !strings.Contains(l.Detail, "EXPIRED") {
		t.Errorf("expired certificate: %+v", l)
	}
}
