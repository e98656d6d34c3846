package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap/zaptest"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/app"
	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// Two sms-modem processes started with the same MODEM_ID: each hears the
// other on its heartbeat subject and says, in its heartbeat, that it takes
// no job and why; neither sends.
func TestTwoModemsWithOneIDRefuseToShareIt(t *testing.T) {
	ns, _ := startNATS(t, "secret")
	answerClock(t, ns, 0)
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(pollerUser.Username, pollerUser.Password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	beats := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(schema.StatusFilter, beats)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	for range 2 {
		_, cfg := newSim(t, modemsim.Config{}, "")
		cfg.ModemID = "pi1"
		cfg.NATSURL, cfg.NATSUser, cfg.NATSPass = ns.ClientURL(), "modem", "secret"
		cfg.DataDir, cfg.HTTPAddr = t.TempDir(), "127.0.0.1:0"
		cfg.UnreadyGrace = config.Duration(time.Minute)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = app.Run(ctx, cfg, zaptest.NewLogger(t)) }()
		t.Cleanup(func() { stop(); <-done })
	}

	// Every instance ends up beating "not ready" naming MODEM_ID.
	refused := map[string]bool{}
	ctx := ctxT(t)
	for len(refused) < 2 {
		select {
		case m := <-beats:
			st, err := schema.Decode[schema.ModemStatus](m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != schema.StatusSubjectFor("pi1") || st.ID != "pi1" {
				t.Fatalf("beat on %s with id %q; want MODEM_ID pi1", m.Subject, st.ID)
			}
			if !st.Ready && strings.Contains(st.Reason, "MODEM_ID=pi1") {
				refused[st.Instance] = true
			}
		case <-ctx.Done():
			t.Fatalf("instances refusing the shared MODEM_ID: %d, want 2", len(refused))
		}
	}
}

func TestModemIDIsValidated(t *testing.T) {
	for _, id := range []string{"a.b", "a b", "x>", strings.Repeat("a", 33), "pi*"} {
		cfg := app.Config{Device: "/dev/x", Baud: 1, Country: "RO", NATSURL: "nats://h:1", DataDir: "/d", MaxParts: 1,
			Timeout: config.Duration(time.Second), SendTimeout: config.Duration(time.Second), KeepAlive: config.Duration(time.Second),
			UnreadyGrace: config.Duration(time.Second), ModemID: id}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "MODEM_ID") {
			t.Errorf("MODEM_ID %q: Validate = %v; want an error naming MODEM_ID", id, err)
		}
	}
}
