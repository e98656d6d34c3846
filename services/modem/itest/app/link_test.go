package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/app"
	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/schema"
	"github.com/sensorsreport/smsgw/shared/tlstest"
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

	runModem(t, cfg)
	until := func(what string, d time.Duration, each func(probe), cond func(probe) bool) probe {
		t.Helper()
		return until(t, cfg.HTTPAddr, what, d, each, cond)
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

// runModem runs the service with cfg until the test ends.
func runModem(t *testing.T, cfg app.Config) {
	t.Helper()
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
}

// until polls the endpoints at addr until cond holds; every look on the
// way is checked by each, which fails the test on a wrong answer.
func until(t *testing.T, addr, what string, d time.Duration, each func(probe), cond func(probe) bool) probe {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var p probe
		if err := waitHTTPUp(addr); err == nil {
			p = look(t, addr)
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

// waitHTTPUp reports whether the health server accepts connections yet.
func waitHTTPUp(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

// A connection that nats.go closes for good (a broker error it does not
// know, such as "Maximum Payload Violation", makes it do that whatever the
// options say) is replaced by a new dial: the modem keeps dialling while
// the broker refuses it, then is ready again with exactly one reconnect
// counted, and the sender takes and reports the next job on the new
// connection.
func TestClosedConnectionIsRedialled(t *testing.T) {
	sim, cfg := newSim(t, modemsim.Config{}, "")
	ns, opts := startNATS(t, "secret")
	answerClock(t, ns, 0)
	cfg.NATSURL, cfg.NATSUser, cfg.NATSPass = ns.ClientURL(), "modem", "secret"
	cfg.DataDir, cfg.HTTPAddr = t.TempDir(), freeAddr(t)
	cfg.UnreadyGrace = config.Duration(time.Minute)
	runModem(t, cfg)
	until(t, cfg.HTTPAddr, "ready", wait, nil, func(p probe) bool { return p.readyCode == http.StatusOK })

	// The broker now takes payloads of 64 bytes at most, which it applies
	// to the connections it has but which the modem's connection does not
	// know of: the modem's next heartbeat (or pull request) is refused
	// with "-ERR 'Maximum Payload Violation'" and nats.go closes the
	// connection. New connections must use TLS, which this modem has no CA
	// for: its re-dials fail until the broker is set back.
	o := opts.Clone()
	requireTLS(t, tlstest.NewCA(t, "smsgw test CA"))(o)
	o.MaxPayload = 64
	if err := ns.ReloadOptions(o); err != nil {
		t.Fatal(err)
	}
	p := until(t, cfg.HTTPAddr, "re-dials refused", wait, nil, func(p probe) bool {
		return p.metrics["sms_modem_broker_connected"] == 0 && p.metrics[tlsFailures] >= 1
	})
	if p.readyCode != http.StatusServiceUnavailable || p.metrics["sms_modem_broker_reconnects_total"] != 0 {
		t.Errorf("while refused: /readyz %d, reconnects %v", p.readyCode, p.metrics["sms_modem_broker_reconnects_total"])
	}
	closed, err := ns.Connz(&server.ConnzOptions{State: server.ConnClosed})
	if err != nil {
		t.Fatal(err)
	}
	byBroker := false
	for _, c := range closed.Conns {
		byBroker = byBroker || c.Name == "sms-modem" && c.Reason == "Maximum Message Payload Exceeded"
	}
	if !byBroker {
		t.Fatalf("the broker did not close the modem's connection for its payload: %+v", closed.Conns)
	}

	if err := ns.ReloadOptions(opts.Clone()); err != nil {
		t.Fatal(err)
	}
	p = until(t, cfg.HTTPAddr, "ready again", wait, nil, func(p probe) bool { return p.readyCode == http.StatusOK })
	if n := p.metrics["sms_modem_broker_reconnects_total"]; n != 1 || p.metrics["sms_modem_broker_connected"] != 1 {
		t.Errorf("ready again with reconnects = %v, connected = %v; want 1 and 1", n, p.metrics["sms_modem_broker_connected"])
	}

	// The sender was handed the new connection: a job goes through.
	res := sendJob(t, ns, "sms-after-redial.0")
	if res.Status != schema.StatusSent {
		t.Fatalf("result %+v", res)
	}
	if got := sim.Received(); len(got) != 1 || got[0].Text != "sms-after-redial.0" {
		t.Fatalf("modem received %+v", got)
	}
}

// sendJob queues a job for RO (its id is also its text) as the poller
// does, and returns the modem's result for it.
func sendJob(t *testing.T, ns *server.Server, id string) schema.Result {
	t.Helper()
	ctx := ctxT(t)
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(pollerUser.Username, pollerUser.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	job := schema.Job{
		V: schema.Version, ID: id, SmsID: strings.TrimSuffix(id, ".0"), Tenant: "acme", PhoneNumber: "0722000111",
		Message: id, CreatedAt: now, ExpiresAt: now.Add(time.Hour), ClaimedAt: now,
	}
	data, _ := json.Marshal(job)
	if _, err := js.Publish(ctx, schema.JobSubject("RO"), data, jetstream.WithMsgID(job.ID)); err != nil {
		t.Fatal(err)
	}
	results, err := js.Consumer(ctx, schema.ResultsStream, schema.ResultsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := results.Next(jetstream.FetchMaxWait(wait))
	if err != nil {
		t.Fatalf("no result for %s: %v", id, err)
	}
	_ = msg.Ack()
	res, err := schema.Decode[schema.Result](msg.Data())
	if err != nil {
		t.Fatal(err)
	}
	if res.JobID != id {
		t.Fatalf("result for %q, want %q", res.JobID, id)
	}
	return res
}
