package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"regexp"
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
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/itest/brokertest"
	"github.com/sensorsreport/smsgw/shared/clock"
	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/schema"
)

const wait = 30 * time.Second

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// newSim plugs a simulator into a real pty and returns a configuration
// whose MODEM_DEVICE is the pty's by-id style symlink.
func newSim(t *testing.T, simCfg modemsim.Config, pin string) (*modemsim.Sim, app.Config) {
	t.Helper()
	sim := modemsim.New(simCfg)
	t.Cleanup(func() { _ = sim.Close() })
	link := filepath.Join(t.TempDir(), "usb-Quectel_EC25-if02-port0")
	if _, err := sim.ServePTY(link); err != nil {
		t.Fatal(err)
	}
	return sim, app.Config{
		Device: link, Baud: 115200, PIN: pin, Country: "RO", MaxParts: 10,
		Timeout:     config.Duration(2 * time.Second),
		SendTimeout: config.Duration(5 * time.Second),
		KeepAlive:   config.Duration(time.Second),
	}
}

// row returns the value of a row of the status table.
func row(t *testing.T, table, key string) string {
	t.Helper()
	for _, l := range strings.Split(table, "\n") {
		if k, v, ok := strings.Cut(l, "  "); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q row in\n%s", key, table)
	return ""
}

func TestDiag(t *testing.T) {
	sim, cfg := newSim(t, modemsim.Config{PIN: "4321"}, "4321")
	var out bytes.Buffer
	if err := app.Diag(ctxT(t), cfg, zap.NewNop(), &out); err != nil {
		t.Fatalf("Diag = %v\n%s", err, out.String())
	}
	table := out.String()
	for key, want := range map[string]string{
		"Port":         sim.SlavePath(),
		"State":        string(gsm.StateReady),
		"Manufacturer": "Quectel",
		"Model":        "EC25",
		"IMEI":         "490154203237518",
		"IMSI":         "001010123456789",
		"ICCID":        "89001012345678901234",
		"SIM":          "READY",
		"Registration": "home network (1)",
		"Operator":     "SIM Sim",
		"Signal":       "-67 dBm (CSQ 23) ###..",
		"SMS centre":   "+40722270333",
	} {
		if got := row(t, table, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if strings.Contains(table, "Problem") {
		t.Errorf("a healthy modem shows a problem:\n%s", table)
	}
}

func TestDiagWrongPIN(t *testing.T) {
	sim, cfg := newSim(t, modemsim.Config{PIN: "4321"}, "0000")
	var out bytes.Buffer
	err := app.Diag(ctxT(t), cfg, zap.NewNop(), &out)
	if !errors.Is(err, gsm.ErrWrongPIN) {
		t.Fatalf("Diag = %v, want ErrWrongPIN", err)
	}
	table := out.String()
	if got := row(t, table, "State"); got != string(gsm.StateSIMError) {
		t.Errorf("State = %q, want sim_error", got)
	}
	if got := row(t, table, "Problem"); !strings.Contains(got, "MODEM_PIN") {
		t.Errorf("Problem = %q, want a hint at MODEM_PIN", got)
	}
	if n := countPIN(sim); n != 1 {
		t.Errorf("PIN sent %d times, want once", n)
	}
}

func TestDiagNotRegistered(t *testing.T) {
	sim, cfg := newSim(t, modemsim.Config{}, "")
	sim.SetRegistered(false)
	ctx, cancel := context.WithTimeout(ctxT(t), 2*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := app.Diag(ctx, cfg, zap.NewNop(), &out)
	if err == nil {
		t.Fatalf("Diag succeeded without a network:\n%s", out.String())
	}
	table := out.String()
	if got := row(t, table, "State"); got != string(gsm.StateRegistering) {
		t.Errorf("State = %q, want registering", got)
	}
	if got := row(t, table, "Registration"); got != "searching (2)" {
		t.Errorf("Registration = %q, want searching (2)", got)
	}
}

func countPIN(sim *modemsim.Sim) int {
	n := 0
	for _, c := range sim.Commands() {
		if strings.HasPrefix(strings.ToUpper(c), `AT+CPIN="`) {
			n++
		}
	}
	return n
}

var partLine = regexp.MustCompile(`^part (\d+)/(\d+) sent, message reference (\d+)$`)

func TestSend(t *testing.T) {
	sim, cfg := newSim(t, modemsim.Config{}, "")
	sim.SetNextMR(41)
	text := strings.Repeat("Field check from the gateway. ", 7) // 210 septets: 2 parts
	var out bytes.Buffer
	if err := app.Send(ctxT(t), cfg, zap.NewNop(), &out, "0722 000 111", text); err != nil {
		t.Fatalf("Send = %v\n%s", err, out.String())
	}
	got := sim.Received()
	if len(got) != 1 || got[0].To != "+40722000111" || got[0].Text != text || got[0].Parts != 2 {
		t.Fatalf("received %+v", got)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q, want one line per part", out.String())
	}
	for i, l := range lines {
		m := partLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q", l)
		}
		if m[1] != strconv.Itoa(i+1) || m[2] != "2" || m[3] != strconv.Itoa(got[0].Refs[i]) {
			t.Errorf("line %q; network refs %v", l, got[0].Refs)
		}
	}
}

func TestSendRejectedPart(t *testing.T) {
	sim, cfg := newSim(t, modemsim.Config{}, "")
	sim.InjectCMSErrors(21, 1)
	var out bytes.Buffer
	err := app.Send(ctxT(t), cfg, zap.NewNop(), &out, "+40722000111", "refused")
	if err == nil || !strings.Contains(err.Error(), "part 1 of 1") || !strings.Contains(err.Error(), gsm.Permanent.String()) {
		t.Fatalf("Send = %v, want part 1 of 1 refused permanently", err)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q for a refused part", out.String())
	}
}

func TestSendBadNumberTouchesNoModem(t *testing.T) {
	sim, cfg := newSim(t, modemsim.Config{}, "")
	err := app.Send(ctxT(t), cfg, zap.NewNop(), &bytes.Buffer{}, "12ab", "hello")
	if err == nil {
		t.Fatal("Send accepted a bad number")
	}
	if n := sim.Stats().Connections; n != 0 {
		t.Fatalf("port opened %d times for a number that cannot be sent to", n)
	}
}

// TestRun drives the whole service against a real nats-server with the
// poller's topology: it reports ready, sends a job, and on shutdown tells
// the poller at once that it is no longer ready.
func TestRun(t *testing.T) {
	sim, cfg := newSim(t, modemsim.Config{}, "")
	ns, _ := startNATS(t, "secret")
	ctx := ctxT(t)
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("modem", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	poller, err := js.Consumer(ctx, schema.ResultsStream, schema.ResultsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	// A channel subscription keeps the heartbeats in order, and once a
	// Flush returns every heartbeat published before it is in the channel.
	beats := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(schema.StatusFilter, beats)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	cfg.NATSURL, cfg.NATSUser, cfg.NATSPass = ns.ClientURL(), "modem", "secret"
	cfg.DataDir, cfg.HTTPAddr = t.TempDir(), "127.0.0.1:0"
	cfg.UnreadyGrace = config.Duration(time.Minute)
	runCtx, stop := context.WithCancel(context.Background())
	var runErr error
	done := make(chan struct{})
	go func() { defer close(done); runErr = app.Run(runCtx, cfg, zap.NewNop()) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("Run did not return")
		}
	})

	decode := func(m *nats.Msg) schema.ModemStatus {
		t.Helper()
		st, err := schema.Decode[schema.ModemStatus](m.Data)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// The modem is up but has no trustworthy time (this sandbox's kernel
	// clock may or may not be synchronised; the poller's answer is what
	// counts): until the poller answers, a synchronised kernel clock is the
	// only way to be ready.
	if !clock.KernelSynced() {
		for {
			select {
			case m := <-beats:
				st := decode(m)
				if st.Ready {
					t.Fatalf("ready without a trustworthy time: %+v", st)
				}
				if !strings.Contains(st.Reason, "trustworthy time") {
					continue
				}
			case <-ctx.Done():
				t.Fatal("no heartbeat saying the time is not trustworthy")
			}
			break
		}
	}
	// Stand in for the poller's clock: two hours ahead of this machine.
	answerClock(t, ns, 2*time.Hour)
	var ready schema.ModemStatus
	for !ready.Ready {
		select {
		case m := <-beats:
			ready = decode(m)
		case <-ctx.Done():
			t.Fatal("no ready heartbeat")
		}
	}
	if st := ready; st.ID != st.IMEI || ready.Instance == "" || st.IMEI != "490154203237518" || st.Signal != 23 || st.Operator != "SIM Sim" || st.ValidFor <= 0 {
		t.Errorf("heartbeat %+v", st)
	}

	now := time.Now().Add(2 * time.Hour).UTC() // the reference clock
	job := schema.Job{
		V: schema.Version, ID: "sms-1.0", SmsID: "sms-1", Tenant: "acme", PhoneNumber: "0722000111",
		Message: "through the whole service", CreatedAt: now, ExpiresAt: now.Add(time.Hour), ClaimedAt: now,
	}
	data, _ := json.Marshal(job)
	if _, err := js.Publish(ctx, schema.JobSubject("RO"), data, jetstream.WithMsgID(job.ID)); err != nil {
		t.Fatal(err)
	}
	msg, err := poller.Next(jetstream.FetchMaxWait(wait))
	if err != nil {
		t.Fatal(err)
	}
	res, err := schema.Decode[schema.Result](msg.Data())
	if err != nil {
		t.Fatal(err)
	}
	if res.JobID != job.ID || res.Status != schema.StatusSent || len(res.References) != 1 {
		t.Fatalf("result %+v", res)
	}
	if got := sim.Received(); len(got) != 1 || got[0].Text != job.Message || got[0].To != "+40722000111" {
		t.Fatalf("received %+v", got)
	}

	stop()
	select {
	case <-done:
		if runErr != nil {
			t.Fatalf("Run = %v", runErr)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after its context ended")
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var last schema.ModemStatus
	for len(beats) > 0 {
		last = decode(<-beats)
	}
	if last.Ready || !strings.Contains(last.Reason, "shutting down") {
		t.Errorf("last heartbeat %+v, want not ready while shutting down", last)
	}
}

// startNATS runs a real nats-server with JetStream and the poller's
// topology, accepting the user "modem" with password.
// pollerUser stands in for the poller's own connection to its broker.
var pollerUser = &server.User{Username: "poller", Password: "poller-pw"}

// answerClock answers the modem's time requests as the poller does, with
// the local time shifted by skew; opts are what reaching ns takes beyond
// the poller's credentials (nats.RootCAs for a TLS broker).
func answerClock(t *testing.T, ns *server.Server, skew time.Duration, opts ...nats.Option) {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), append([]nats.Option{nats.UserInfo(pollerUser.Username, pollerUser.Password)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe(schema.ClockSubject, func(m *nats.Msg) {
		b, _ := json.Marshal(schema.ClockReading{V: schema.Version, Now: time.Now().Add(skew), Source: "reference"})
		_ = m.Respond(b)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func startNATS(t *testing.T, password string) (*server.Server, *server.Options) {
	t.Helper()
	return runNATS(t, password, nil)
}

// runNATS is startNATS with edit applied to the server's options first;
// opts are what a client needs to reach it (nats.RootCAs for TLS).
func runNATS(t *testing.T, password string, edit func(*server.Options), opts ...nats.Option) (*server.Server, *server.Options) {
	t.Helper()
	so := &server.Options{JetStream: true, Users: []*server.User{{Username: "modem", Password: password}, pollerUser}}
	if edit != nil {
		edit(so)
	}
	ns := brokertest.Start(t, so)
	nc, err := nats.Connect(ns.ClientURL(), append([]nats.Option{nats.UserInfo("modem", password)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	jobs, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: schema.JobsStream, Subjects: []string{schema.JobsFilter}, Retention: jetstream.WorkQueuePolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: schema.JobsConsumerFor("RO"), AckPolicy: jetstream.AckExplicitPolicy, AckWait: 10 * time.Second,
		MaxAckPending: 1, FilterSubject: schema.JobSubject("RO"),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: schema.AttemptsBucket, History: 1}); err != nil {
		t.Fatal(err)
	}
	results, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: schema.ResultsStream, Subjects: []string{schema.ResultsFilter}, Retention: jetstream.WorkQueuePolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := results.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: schema.ResultsConsumer, AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: schema.ResultsFilter,
	}); err != nil {
		t.Fatal(err)
	}
	return ns, so
}

func TestRunNeedsCredentials(t *testing.T) {
	_, cfg := newSim(t, modemsim.Config{}, "")
	if err := app.Run(ctxT(t), cfg, zap.NewNop()); err == nil {
		t.Fatal("Run started without NATS credentials")
	}
}
