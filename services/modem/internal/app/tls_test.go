package app

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/tlstest"
)

func TestNATSCAConfig(t *testing.T) {
	ca := tlstest.NewCA(t, "smsgw test CA")
	_, key := ca.Server("poller", time.Hour)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := map[string]string{"NATS_URL": "tls://poller-pi:4222", "NATS_CA": ca.File}
	if _, err := config.LoadFrom[Config](good); err != nil {
		t.Fatalf("tls:// with a CA: %v", err)
	}
	if _, err := config.LoadFrom[Config](map[string]string{"NATS_URL": "tls://poller-pi:4222"}); err != nil {
		t.Fatalf("tls:// with the system roots: %v", err)
	}
	for name, env := range map[string]map[string]string{
		"with nats://":      {"NATS_URL": "nats://poller:4222", "NATS_CA": ca.File},
		"with the default":  {"NATS_CA": ca.File}, // nats://poller:4222
		"a missing file":    {"NATS_URL": "tls://poller-pi:4222", "NATS_CA": filepath.Join(dir, "missing.pem")},
		"not PEM":           {"NATS_URL": "tls://poller-pi:4222", "NATS_CA": garbage},
		"a directory":       {"NATS_URL": "tls://poller-pi:4222", "NATS_CA": dir},
		"the key, not a CA": {"NATS_URL": "tls://poller-pi:4222", "NATS_CA": key},
	} {
		_, err := config.LoadFrom[Config](env)
		if !config.IsConfig(err) || !strings.Contains(err.Error(), "NATS_CA=") || !strings.Contains(err.Error(), "want ") {
			t.Errorf("NATS_CA %s: %v, want a configuration error naming NATS_CA", name, err)
		}
	}
}

// tlsHint names the setting to fix for each way TLS to the poller fails,
// and stays silent for errors that are not about TLS. The errors are the
// types nats.go and crypto/x509 return, wrapped as a dial wraps them; the
// module services/modem/itest checks the same hints against real brokers
// (TestTLSFailureHints there).
func TestTLSHintNamesTheSetting(t *testing.T) {
	issuer := &x509.Certificate{Issuer: pkix.Name{CommonName: "another CA"}}
	wrap := func(err error) error { return fmt.Errorf("tls: failed to verify certificate: %w", err) }
	unknown := wrap(x509.UnknownAuthorityError{Cert: issuer})
	for _, c := range []struct {
		name string
		err  error
		cfg  Config
		want string // "" is no hint
	}{
		{"nats:// to a TLS broker", unknown, Config{NATSURL: "nats://poller-pi:4222"}, "requires TLS: set NATS_URL=tls://poller-pi:port and NATS_CA"},
		{"tls:// without NATS_CA", unknown, Config{NATSURL: "tls://poller-pi:4222"}, "not signed by a CA this host trusts: set NATS_CA"},
		{"a wrong NATS_CA", unknown, Config{NATSURL: "tls://poller-pi:4222", NATSCA: "/etc/smsgw/ca.pem"}, "not signed by the CA in NATS_CA /etc/smsgw/ca.pem (it is issued by CN=another CA)"},
		{"a host the certificate is not for", wrap(x509.HostnameError{Certificate: issuer, Host: "poller-pi"}), Config{NATSURL: "tls://poller-pi:4222", NATSCA: "/ca.pem"}, "not for poller-pi, the host in NATS_URL"},
		{"an expired certificate", wrap(x509.CertificateInvalidError{Cert: issuer, Reason: x509.Expired}), Config{NATSURL: "tls://poller-pi:4222"}, "has expired or is not valid yet: renew NATS_TLS_CERT"},
		{"tls:// to a plain broker", nats.ErrSecureConnWanted, Config{NATSURL: "tls://poller-pi:4222"}, "does not offer TLS"},
		{"another handshake failure", fmt.Errorf("%w: remote error: tls: handshake failure", nats.ErrTLS), Config{NATSURL: "tls://poller-pi:4222"}, "TLS handshake with the poller's broker failed: check NATS_URL, NATS_CA"},
		{"not TLS at all", errors.New("dial tcp 127.0.0.1:4222: connect: connection refused"), Config{NATSURL: "tls://poller-pi:4222"}, ""},
		{"credentials refused", nats.ErrAuthorization, Config{NATSURL: "tls://poller-pi:4222"}, ""},
	} {
		got := tlsHint(c.err, c.cfg)
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%s: tlsHint = %q, want %q", c.name, got, c.want)
		}
	}
}
