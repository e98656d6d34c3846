package app_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/itest/brokertest"
	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/tlstest"
)

const tlsFailures = `sms_modem_broker_connect_failures_total{reason="tls"}`

// requireTLS makes a broker's listener require TLS with a certificate from
// ca for hosts (default localhost and the loopback addresses).
func requireTLS(t *testing.T, ca *tlstest.CA, hosts ...string) func(*server.Options) {
	t.Helper()
	certFile, keyFile := ca.Server("poller", time.Hour, hosts...)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return func(o *server.Options) {
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
}

// startBroker runs a nats-server without JetStream, for modems that are
// not to get as far as using it; edit may change its options first.
func startBroker(t *testing.T, edit func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Users: []*server.User{{Username: "modem", Password: "pw"}}}
	if edit != nil {
		edit(o)
	}
	return brokertest.Start(t, o)
}

// port is the port a test broker listens on.
func port(ns *server.Server) string { return strconv.Itoa(ns.Addr().(*net.TCPAddr).Port) }

// A modem whose NATS_CA did not sign the poller's certificate is not
// ready, says why in /readyz, counts TLS failures and keeps trying; once
// NATS_CA holds the right CA the next attempt connects over TLS 1.2 or
// later and the modem becomes ready, without a restart.
func TestWrongCAIsNotReadyUntilFixed(t *testing.T) {
	ca := tlstest.NewCA(t, "smsgw test CA")
	ns, _ := runNATS(t, "pw", requireTLS(t, ca), nats.RootCAs(ca.File))
	answerClock(t, ns, 0, nats.RootCAs(ca.File))
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	wrong, err := os.ReadFile(tlstest.NewCA(t, "another CA").File)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, wrong, 0o644); err != nil {
		t.Fatal(err)
	}

	_, cfg := newSim(t, modemsim.Config{}, "")
	cfg.NATSURL, cfg.NATSCA, cfg.NATSUser, cfg.NATSPass = "tls://127.0.0.1:"+port(ns), caFile, "modem", "pw"
	cfg.DataDir, cfg.HTTPAddr = t.TempDir(), freeAddr(t)
	cfg.UnreadyGrace = config.Duration(time.Minute)
	runModem(t, cfg)

	neverConnected := func(p probe) {
		t.Helper()
		if p.readyCode == http.StatusOK || p.metrics["sms_modem_broker_connected"] != 0 {
			t.Fatalf("connected with a wrong NATS_CA: %+v", p)
		}
	}
	// A second failure: it keeps trying.
	p := until(t, cfg.HTTPAddr, "two TLS failures", wait, neverConnected, func(p probe) bool { return p.metrics[tlsFailures] >= 2 })
	if p.readyCode != http.StatusServiceUnavailable || !strings.Contains(p.ready, "certificate") ||
		!strings.Contains(p.ready, "not signed by the CA in NATS_CA "+caFile) {
		t.Fatalf("/readyz with a wrong CA = %d %q, want the certificate refused, naming NATS_CA", p.readyCode, p.ready)
	}

	right, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, right, 0o644); err != nil {
		t.Fatal(err)
	}
	p = until(t, cfg.HTTPAddr, "ready after fixing NATS_CA", wait, nil, func(p probe) bool { return p.readyCode == http.StatusOK })
	if p.metrics["sms_modem_broker_connected"] != 1 {
		t.Errorf("ready but not connected: %+v", p.metrics)
	}
	conns, err := ns.Connz(&server.ConnzOptions{User: "modem"})
	if err != nil {
		t.Fatal(err)
	}
	modems := 0
	for _, c := range conns.Conns {
		if c.Name != "sms-modem" {
			continue
		}
		modems++
		if c.TLSVersion != "1.2" && c.TLSVersion != "1.3" {
			t.Errorf("modem connection %d uses TLS %q, want 1.2 or later", c.Cid, c.TLSVersion)
		}
	}
	if modems != 1 {
		t.Errorf("%d sms-modem connections at the broker, want 1", modems)
	}
}

// The reason /readyz gives names the setting to fix for each way TLS to
// the poller fails, and the failure counts as reason="tls".
func TestTLSFailureHints(t *testing.T) {
	ca := tlstest.NewCA(t, "smsgw test CA")
	p := port(startBroker(t, requireTLS(t, ca)))
	elsewhere := port(startBroker(t, requireTLS(t, ca, "poller.example.net")))
	plain := port(startBroker(t, nil))
	for _, c := range []struct {
		name, url, ca, want string
	}{
		{"nats:// to a TLS broker", "nats://127.0.0.1:" + p, "", "requires TLS: set NATS_URL=tls://127.0.0.1:port and NATS_CA"},
		{"tls:// without NATS_CA", "tls://127.0.0.1:" + p, "", "not signed by a CA this host trusts: set NATS_CA"},
		{"a host the certificate is not for", "tls://127.0.0.1:" + elsewhere, ca.File, "not for 127.0.0.1, the host in NATS_URL"},
		{"tls:// to a plain broker", "tls://127.0.0.1:" + plain, ca.File, "does not offer TLS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, cfg := newSim(t, modemsim.Config{}, "")
			cfg.NATSURL, cfg.NATSCA, cfg.NATSUser, cfg.NATSPass = c.url, c.ca, "modem", "pw"
			cfg.DataDir, cfg.HTTPAddr = t.TempDir(), freeAddr(t)
			cfg.UnreadyGrace = config.Duration(time.Minute)
			runModem(t, cfg)
			pr := until(t, cfg.HTTPAddr, "a TLS failure", wait, nil, func(p probe) bool { return p.metrics[tlsFailures] >= 1 })
			if pr.readyCode != http.StatusServiceUnavailable || !strings.Contains(pr.ready, c.want) {
				t.Errorf("/readyz = %d %q, want 503 and %q", pr.readyCode, pr.ready, c.want)
			}
		})
	}
}
