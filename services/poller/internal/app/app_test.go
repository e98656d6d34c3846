package app

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sensorsreport/smsgw/services/poller/internal/broker"
	"github.com/sensorsreport/smsgw/shared/config"
)

// idleAPI answers the two calls a poller makes while nothing waits to be
// sent, as the SMS API answers them: the provider registration (201 with the
// provider record) and an empty queue (404 "No SMS records found ...").
// registered is closed at the first registration.
func idleAPI(t *testing.T) (url string, registered <-chan struct{}) {
	t.Helper()
	reg := make(chan struct{})
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/provider/register", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"Id":"66cd96a3e1b2c3d4e5f60718","Name":"p","LastSeen":"2025-08-27T07:00:00.123Z","Status":1,"SupportedCountryCodes":["RO"]}`))
		once.Do(func() { close(reg) })
	})
	mux.HandleFunc("GET /api/provider/next/{provider}/{cc}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"Message":"No SMS records found with country code '` + r.PathValue("cc") + `'."}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, reg
}

// A broker that fails for good while the poller runs (here its in-process
// connection closes under it) ends Run with the broker's error instead of
// leaving a process that only reports itself unhealthy.
func TestFatalBrokerErrorEndsRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	apiURL, registered := idleAPI(t)
	cfg, err := config.LoadFrom[Config](map[string]string{
		"SMS_API_URL": apiURL, "SMS_PROVIDER_NAME": "p", "SMS_COUNTRIES": "RO",
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
	select {
	case <-registered:
	case <-ctx.Done():
		t.Fatal("the poller never registered its provider")
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
