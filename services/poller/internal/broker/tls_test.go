package broker

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sensorsreport/smsgw/shared/tlstest"
)

// startTLSBroker runs a broker whose listener requires TLS with a server
// certificate from ca.
func startTLSBroker(t *testing.T, ca *tlstest.CA) *Broker {
	t.Helper()
	certFile, keyFile := ca.Server("poller", time.Hour)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return startBroker(t, cfg)
}

// A modem that trusts the CA connects over TLS and logs in, while the
// poller's own in-process connection, which has no TLS, keeps working.
func TestTLSListenerAcceptsAModemThatTrustsTheCA(t *testing.T) {
	ca := tlstest.NewCA(t, "smsgw test CA")
	b := startTLSBroker(t, ca)
	if !strings.HasPrefix(b.ClientURL(), "tls://127.0.0.1:") {
		t.Fatalf("ClientURL = %q, want tls://127.0.0.1:port", b.ClientURL())
	}
	nc, err := nats.Connect(b.ClientURL(), nats.UserInfo(testModemUser, testModemPass), nats.RootCAs(ca.File), nats.NoReconnect())
	if err != nil {
		t.Fatalf("modem over TLS: %v", err)
	}
	defer nc.Close()
	if _, err := nc.RTT(); err != nil {
		t.Fatalf("round trip over TLS: %v", err)
	}
	st, err := nc.TLSConnectionState()
	if err != nil || st.Version < tls.VersionTLS12 || len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "poller" {
		t.Fatalf("TLS state %+v, %v", st, err)
	}

	publishJob(t, b, "over-tls-1") // the in-process client
	if n := jobsPending(t, b); n != 1 {
		t.Fatalf("jobs pending = %d, want 1", n)
	}
	if err := b.Healthy(); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
}

// A client without TLS gets nowhere, and a TLS client that does not trust
// the CA refuses the broker's certificate.
func TestTLSListenerRefusesPlainAndUntrustingClients(t *testing.T) {
	ca := tlstest.NewCA(t, "smsgw test CA")
	b := startTLSBroker(t, ca)
	addr := strings.TrimPrefix(b.ClientURL(), "tls://")

	// Plain TCP speaking the NATS protocol with valid credentials: the
	// server announces tls_required and never answers the PING.
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	info, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO %q, %v: want tls_required", info, err)
	}
	if _, err := io.WriteString(c, `CONNECT {"user":"`+testModemUser+`","pass":"`+testModemPass+`","verbose":false}`+"\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c) // until the server closes the connection
	if strings.Contains(string(rest), "PONG") {
		t.Fatalf("a plain client got a PONG: %q", rest)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the plain connection open: %v", err)
	}

	// nats.go upgrades a nats:// URL when the server requires TLS, then
	// checks the certificate against the system roots, which lack our CA.
	_, err = nats.Connect("nats://"+addr, nats.UserInfo(testModemUser, testModemPass), nats.NoReconnect())
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); !ok {
		t.Fatalf("connect without the CA: %v, want an unknown authority", err)
	}

	// The right certificate but another CA: refused the same way.
	other := tlstest.NewCA(t, "another CA")
	_, err = nats.Connect(b.ClientURL(), nats.UserInfo(testModemUser, testModemPass), nats.RootCAs(other.File), nats.NoReconnect())
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); !ok {
		t.Fatalf("connect trusting another CA: %v, want an unknown authority", err)
	}
}
