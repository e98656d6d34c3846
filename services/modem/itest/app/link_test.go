package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/app"
	"github.com/sensorsreport/smsgw/shared/config"
)

// probe is one look at the service's HTTP endpoints.
type probe struct {
	readyCode, liveCode int
	ready, live         string
	metrics             map[string]float64
}

func look(t *testing.T, addr string) probe {
	t.Helper()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var p probe
	p.readyCode, p.ready = get("/readyz")
	p.liveCode, p.live = get("/healthz")
	_, m := get("/metrics")
	p.metrics = map[string]float64{}
	for _, l := range strings.Split(m, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && strings.HasPrefix(k, "sms_modem_") {
			f, _ := strconv.ParseFloat(v, 64)
			p.metrics[k] = f
		}
	}
	return p
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// setPassword makes the broker accept the modem user with password only;
// like a poller restarted with another NATS_PASSWORD, it drops connections
// whose credentials no longer hold.
func setPassword(t *testing.T, ns *server.Server, opts *server.Options, password string) {
	t.Helper()
	o := opts.Clone()
	o.Users = []*server.User{{Username: "modem", Password: password}, pollerUser}
	if err := ns.ReloadOptions(o); err != nil {
		t.Fatal(err)
	}
}

const authFailures = `sms_modem_broker_connect_failures_total{reason="auth"}`

// TestWrongBrokerPasswordIsNotReadyAndHealsItself: with a password the
// broker refuses, the modem keeps trying (past the two refusals after which
// nats.go gives up by default), says why in /readyz, counts the refusals
// and turns /healthz red after the grace period; once the broker accepts
// the password it becomes ready by itself. The same holds for a connection
// that worked and is then refused.
func TestWrongBrokerPasswordIsNotReadyAndHealsItself(t *testing.T) {
	_, cfg := newSim(t, modemsim.Config{}, "")
	ns, opts := startNATS(t, "old-password")
	answerClock(t, ns, 0)
	cfg.NATSURL, cfg.NATSUser, cfg.NATSPass = ns.ClientURL(), "modem", "new-password"
	cfg.DataDir, cfg.HTTPAddr = t.TempDir(), freeAddr(t)
	cfg.UnreadyGrace = config.Duration(2 * time.Second)

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx, cfg, zap.NewNop()) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("Run did not return")
		}
	})

	// until polls the endpoints until cond holds; every look on the way
	// is checked by each, which fails the test on a wrong answer.
	until := func(what string, d time.Duration, each func(probe), cond func(probe) bool) probe {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			var p probe
			if err := waitHTTPUp(cfg.HTTPAddr); err == nil {
				p = look(t, cfg.HTTPAddr)
				if each != nil {
					each(p)
				}
				if cond(p) {
					return p
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s; last look %+v", what, d, p)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	neverReady := func(p probe) {
		t.Helper()
		if p.readyCode == http.StatusOK || p.metrics["sms_modem_ready"] != 0 || p.metrics["sms_modem_broker_connected"] != 0 {
			t.Fatalf("ready with a refused password: %+v", p)
		}
	}

	// Refused from the first dial on.
	p := until("three refusals", wait, neverReady, func(p probe) bool { return p.metrics[authFailures] >= 3 })
	if p.readyCode != http.StatusServiceUnavailable || !strings.Contains(strings.ToLower(p.ready), "authorization violation") || !strings.Contains(p.ready, "NATS_PASSWORD") {
		t.Errorf("/readyz = %d %q, want 503 naming the refused credentials", p.readyCode, p.ready)
	}
	p = until("/healthz red after the grace period", wait, neverReady, func(p probe) bool { return p.liveCode == http.StatusServiceUnavailable })
	if !strings.Contains(p.live, "no broker connection") {
		t.Errorf("/healthz says %q", p.live)
	}

	// The broker now accepts it: ready without any help.
	setPassword(t, ns, opts, "new-password")
	p = until("ready after the broker accepts the password", wait, nil, func(p probe) bool { return p.readyCode == http.StatusOK })
	if p.metrics["sms_modem_ready"] != 1 || p.metrics["sms_modem_broker_connected"] != 1 || p.liveCode != http.StatusOK {
		t.Errorf("ready but %+v", p)
	}

	// A working connection whose password stops being accepted: nats.go
	// would close it for good after the second refusal.
	before := p.metrics[authFailures]
	setPassword(t, ns, opts, "old-password")
	// The broker drops the connection a moment after the reload; from
	// then on the modem must never look ready while refused.
	until("the connection dropped", wait, nil, func(p probe) bool { return p.metrics["sms_modem_broker_connected"] == 0 })
	until("three more refusals", wait, neverReady, func(p probe) bool { return p.metrics[authFailures] >= before+3 })
	setPassword(t, ns, opts, "new-password")
	p = until("ready again", wait, nil, func(p probe) bool { return p.readyCode == http.StatusOK })
	if p.metrics["sms_modem_broker_reconnects_total"] < 1 {
		t.Errorf("reconnect not counted: %+v", p.metrics)
	}
}

// waitHTTPUp reports whether the health server accepts connections yet.
func waitHTTPUp(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err
}
