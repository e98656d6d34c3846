package app

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/config"
)

// certRenewWithin is how close to its expiry the broker certificate makes
// `sms-poller check` fail and the poller warn at start: time to renew it
// before remote modems are locked out.
const certRenewWithin = 14 * 24 * time.Hour

// brokerTLS loads NATS_TLS_CERT and NATS_TLS_KEY into the server TLS
// configuration of the broker's client listener (TLS 1.2 or later) and
// returns it with the parsed server certificate; nil, nil, nil when
// neither is set. Every error is a *config.Error naming the variable.
func (c Config) brokerTLS() (*tls.Config, *x509.Certificate, error) {
	switch {
	case c.NATSTLSCert == "" && c.NATSTLSKey == "":
		return nil, nil, nil
	case c.NATSTLSKey == "":
		return nil, nil, config.Missing("NATS_TLS_KEY", "the PEM private key of NATS_TLS_CERT (set both or neither)")
	case c.NATSTLSCert == "":
		return nil, nil, config.Missing("NATS_TLS_CERT", "the PEM certificate of NATS_TLS_KEY (set both or neither)")
	}
	certPEM, err := os.ReadFile(c.NATSTLSCert)
	if err != nil {
		return nil, nil, config.Invalid("NATS_TLS_CERT", c.NATSTLSCert, "a readable PEM certificate file ("+err.Error()+")")
	}
	leaf, err := firstCert(certPEM)
	if err != nil {
		return nil, nil, config.Invalid("NATS_TLS_CERT", c.NATSTLSCert, "a PEM file with the broker's certificate first ("+err.Error()+")")
	}
	keyPEM, err := os.ReadFile(c.NATSTLSKey)
	if err != nil {
		return nil, nil, config.Invalid("NATS_TLS_KEY", c.NATSTLSKey, "a readable PEM private key file ("+err.Error()+")")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, config.Invalid("NATS_TLS_KEY", c.NATSTLSKey, "the PEM private key of the certificate in NATS_TLS_CERT ("+err.Error()+")")
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, leaf, nil
}

// firstCert parses the first CERTIFICATE block: the server's own, with
// any intermediates after it.
func firstCert(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("no PEM CERTIFICATE block")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// describeCert says who a certificate is for, who issued it and until
// when, e.g. "CN=poller-pi (DNS poller, poller-pi; IP 192.168.1.10),
// issuer CN=smsgw CA, expires 2027-03-01 10:00 UTC (in 455 days)".
func describeCert(leaf *x509.Certificate, now time.Time) string {
	var names []string
	if len(leaf.DNSNames) > 0 {
		names = append(names, "DNS "+strings.Join(leaf.DNSNames, ", "))
	}
	if len(leaf.IPAddresses) > 0 {
		ips := make([]string, len(leaf.IPAddresses))
		for i, ip := range leaf.IPAddresses {
			ips[i] = ip.String()
		}
		names = append(names, "IP "+strings.Join(ips, ", "))
	}
	san := " (no subject alternative names: clients will refuse it)"
	if len(names) > 0 {
		san = " (" + strings.Join(names, "; ") + ")"
	}
	left := leaf.NotAfter.Sub(now)
	when := fmt.Sprintf("in %d days", int(left.Hours()/24))
	if left < 0 {
		when = "EXPIRED"
	}
	return fmt.Sprintf("CN=%s%s, issuer CN=%s, expires %s (%s)", leaf.Subject.CommonName, san,
		leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format("2006-01-02 15:04 MST"), when)
}

// certProblem is why the certificate cannot serve (much longer) at now,
// or "".
func certProblem(leaf *x509.Certificate, now time.Time) string {
	switch {
	case now.Before(leaf.NotBefore):
		return "not valid before " + leaf.NotBefore.UTC().Format(time.RFC3339) + " (check the clock)"
	case now.After(leaf.NotAfter):
		return "expired: no modem can connect; renew it and restart the poller"
	case leaf.NotAfter.Sub(now) < certRenewWithin:
		return "expires within 14 days: renew it and restart the poller"
	case len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0:
		return "it has no subject alternative names: modems verify the host of NATS_URL against them"
	}
	return ""
}

// worldReadable reports whether anyone on the host may read path.
func worldReadable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm()&0o004 != 0
}

// logBrokerTLS says at start what the broker listener serves and warns
// about a certificate near its end or a private key others can read.
func logBrokerTLS(log *zap.Logger, cfg Config, leaf *x509.Certificate) {
	if leaf == nil {
		if host, _, err := net.SplitHostPort(cfg.NATSListen); err == nil && !loopback(host) {
			log.Info("the broker listener is plain TCP (no NATS_TLS_CERT): fine for a modem on this host or compose network only",
				zap.String("listen", cfg.NATSListen))
		}
		return
	}
	now := time.Now()
	log.Info("the broker listener requires TLS", zap.String("listen", cfg.NATSListen), zap.String("cert", describeCert(leaf, now)))
	if p := certProblem(leaf, now); p != "" {
		log.Error("NATS_TLS_CERT: "+p, zap.String("file", cfg.NATSTLSCert), zap.Time("not_after", leaf.NotAfter))
	}
	if worldReadable(cfg.NATSTLSKey) {
		log.Warn("NATS_TLS_KEY is readable by every user of this host: chmod 640 (or 600) it", zap.String("file", cfg.NATSTLSKey))
	}
}

func loopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}
