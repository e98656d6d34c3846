package app

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// A connection that nats.go closes for good (some server errors do that
// whatever the options say) is replaced by a new dial, and the sender is
// handed the new connection's JetStream.
func TestClosedConnectionIsRedialled(t *testing.T) {
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "modem", Password: "pw"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := newLink(Config{NATSURL: ns.ClientURL(), NATSUser: "modem", NATSPass: "pw"}, zap.NewNop(), prometheus.NewRegistry())
	defer l.Close()
	first, err := l.dial(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	used := make(chan jetstream.JetStream, 1)
	done := make(chan struct{})
	go func() { defer close(done); redial(ctx, l, func(js jetstream.JetStream) { used <- js }, zap.NewNop()) }()
	defer func() { cancel(); <-done }()

	first.Close() // not through l.Close: as if the library had given up
	select {
	case js := <-used:
		if js.Conn() == first || js.Conn() != l.Conn() || !js.Conn().IsConnected() {
			t.Fatal("sender not handed the new connection")
		}
	case <-ctx.Done():
		t.Fatal("closed connection not replaced")
	}
	if err := l.Ready(); err != nil {
		t.Errorf("Ready after the re-dial: %v", err)
	}
	if n := testutil.ToFloat64(l.reconnects); n != 1 {
		t.Errorf("reconnects = %v, want 1", n)
	}
}
