package app

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

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

// startTLSNATS runs a nats-server whose listener requires TLS with a
// certificate from ca for hosts (default localhost and the loopback
// addresses), accepting user modem with password pw.
func startTLSNATS(t *testing.T, ca *tlstest.CA, hosts ...string) *server.Server {
	t.Helper()
	certFile, keyFile := ca.Server("poller", time.Hour, hosts...)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Users:     []*server.User{{Username: "modem", Password: "pw"}},
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns
}

// A modem whose NATS_CA did not sign the poller's certificate is not
// ready, says why, counts TLS failures and keeps trying; once NATS_CA
// holds the right CA the next attempt connects, without a restart.
func TestWrongCAIsNotReadyUntilFixed(t *testing.T) {
	ca := tlstest.NewCA(t, "smsgw test CA")
	ns := startTLSNATS(t, ca)
	url := "tls://127.0.0.1:" + port(ns)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	wrong, err := os.ReadFile(tlstest.NewCA(t, "another CA").File)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, wrong, 0o644); err != nil {
		t.Fatal(err)
	}

	l := newLink(Config{NATSURL: url, NATSCA: caFile, NATSUser: "modem", NATSPass: "pw"}, zap.NewNop(), prometheus.NewRegistry())
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dialled := make(chan error, 1)
	go func() { _, err := l.dial(ctx, false); dialled <- err }()

	tlsFailures := func() float64 { return testutil.ToFloat64(l.failures.WithLabelValues("tls")) }
	for tlsFailures() < 2 { // a second attempt: it keeps trying
		select {
		case err := <-dialled:
			t.Fatalf("dial ended with a wrong CA: %v", err)
		case <-ctx.Done():
			t.Fatal("no second TLS failure")
		case <-time.After(20 * time.Millisecond):
		}
	}
	err = l.Ready()
	if err == nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "not signed by the CA in NATS_CA "+caFile) {
		t.Fatalf("Ready with a wrong CA = %v, want the certificate refused, naming NATS_CA", err)
	}

	right, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, right, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-dialled; err != nil {
		t.Fatalf("dial after fixing NATS_CA: %v", err)
	}
	if err := l.Ready(); err != nil {
		t.Fatalf("Ready after fixing NATS_CA: %v", err)
	}
	if st, err := l.Conn().TLSConnectionState(); err != nil || st.Version < tls.VersionTLS12 {
		t.Fatalf("connection TLS state %v, %v", st.Version, err)
	}
}

// port is the port a test server listens on.
func port(ns *server.Server) string { return strconv.Itoa(ns.Addr().(*net.TCPAddr).Port) }

// The reason /readyz gives names the setting to fix for each way TLS to
// the poller fails.
func TestTLSFailureHints(t *testing.T) {
	ca := tlstest.NewCA(t, "smsgw test CA")
	p := port(startTLSNATS(t, ca))
	elsewhere := port(startTLSNATS(t, ca, "poller.example.net"))
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	plain.Start()
	t.Cleanup(func() { plain.Shutdown(); plain.WaitForShutdown() })
	if !plain.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"nats:// to a TLS broker", Config{NATSURL: "nats://127.0.0.1:" + p}, "requires TLS: set NATS_URL=tls://127.0.0.1:port and NATS_CA"},
		{"tls:// without NATS_CA", Config{NATSURL: "tls://127.0.0.1:" + p}, "not signed by a CA this host trusts: set NATS_CA"},
		{"a host the certificate is not for", Config{NATSURL: "tls://127.0.0.1:" + elsewhere, NATSCA: ca.File}, "not for 127.0.0.1, the host in NATS_URL"},
		{"tls:// to a plain broker", Config{NATSURL: "tls://127.0.0.1:" + port(plain), NATSCA: ca.File}, "does not offer TLS"},
	} {
		l := newLink(c.cfg, zap.NewNop(), prometheus.NewRegistry())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _, _ = l.dial(ctx, false) }()
		deadline := time.Now().Add(10 * time.Second)
		for testutil.ToFloat64(l.failures.WithLabelValues("tls")) < 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if err := l.Ready(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Ready = %v, want %q", c.name, err, c.want)
		}
	}
}
