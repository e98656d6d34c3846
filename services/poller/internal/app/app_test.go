package app

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/services/poller/internal/broker"
	"github.com/sensorsreport/smsgw/shared/config"
)

// A broker that fails for good while the poller runs (here its in-process
// connection closes under it) ends Run with the broker's error instead of
// leaving a process that only reports itself unhealthy.
func TestFatalBrokerErrorEndsRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	st, err := harness.Start(ctx, harness.Options{Bin: dir, Dir: dir, NoServices: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	cfg, err := config.LoadFrom[Config](map[string]string{
		"SMS_API_URL": st.BaseURL, "KEYCLOAK_URL": st.BaseURL, "KEYCLOAK_REALM": harness.Realm,
		"KEYCLOAK_CLIENT_ID": harness.ClientID, "KEYCLOAK_CLIENT_SECRET": harness.ClientSecret,
		"KEYCLOAK_USER": harness.User, "KEYCLOAK_PASSWORD": harness.Password,
		"NATS_USER": "modem", "NATS_PASSWORD": "pw", "NATS_LISTEN": "127.0.0.1:-1",
		"NATS_STORE_DIR": filepath.Join(dir, "js"), "HTTP_ADDR": "127.0.0.1:0", "POLL_INTERVAL": "200ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	var b *broker.Broker
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), func(br *broker.Broker) { b = br })
	}()
	// The poller is working: it registered its provider.
	if err := st.API.WaitFor(ctx, func(v *smsapi.View) bool { return len(v.Requests()) >= 1 }); err != nil {
		t.Fatal(err)
	}
	b.Conn().Close()
	select {
	case err := <-done:
		// Whichever notices first says so: the broker's own watch, or
		// the dead-job watcher starting on the closed connection.
		if !errors.Is(err, broker.ErrFatal) && !errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("Run = %v, want the broker's fatal error", err)
		}
		t.Logf("Run ended with: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run still running after its broker failed")
	}
}
