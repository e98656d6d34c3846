package dispatch_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/services/poller/internal/broker"
	"github.com/sensorsreport/smsgw/services/poller/internal/claims"
	"github.com/sensorsreport/smsgw/services/poller/internal/dispatch"
	client "github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
	"github.com/sensorsreport/smsgw/services/poller/internal/upstream"
	"github.com/sensorsreport/smsgw/shared/clock"
	"github.com/sensorsreport/smsgw/shared/schema"
)

const provider = "test-gateway"

// rig is the real thing end to end on the poller side: the API stand-in
// over HTTP, the real client and adapter, the real embedded broker; the
// modem is a plain NATS client with the modem's credentials.
type rig struct {
	t      *testing.T
	api    *smsapi.Server
	b      *broker.Broker
	claims *claims.Store
	clk    *clock.Clock
	up     *upstream.API
	reg    *prometheus.Registry
	modem  *nats.Conn
	mjs    jetstream.JetStream
	d      *dispatch.Dispatcher
	stop   context.CancelFunc
	done   chan struct{}
	ready  atomic.Bool
	once   sync.Once
	// countries the dispatcher claims for (default RO).
	countries []string
}

type rigOpts struct {
	maxQueued int
	countries []string
	ackWait   time.Duration // JOB_ACK_WAIT, default 5s
	api       smsapi.Options
	// wrap sits between the client and the stand-in, to play what the
	// stand-in cannot (an overwritten PATCH, a malformed answer).
	wrap  func(http.Handler) http.Handler
	noRun bool // build everything but do not start the dispatcher
}

func newRig(t *testing.T, maxQueued int) *rig {
	return newRigWith(t, rigOpts{maxQueued: maxQueued})
}

func newRigWith(t *testing.T, o rigOpts) *rig {
	t.Helper()
	api := smsapi.New(o.api)
	var h http.Handler = api
	if o.wrap != nil {
		h = o.wrap(api)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	log := zaptest.NewLogger(t)
	clk := clock.New(func() bool { return false }) // only the API's Date counts
	c, err := client.New(client.Config{BaseURL: srv.URL, Attempts: 2, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
		ServerTime: func(date, sent, received time.Time) { clk.Observe(date, sent.Add(received.Sub(sent)/2)) }})
	if err != nil {
		t.Fatal(err)
	}
	if o.ackWait == 0 {
		o.ackWait = 5 * time.Second
	}
	if o.countries == nil {
		o.countries = []string{"RO"}
	}
	b, err := broker.Start(context.Background(), broker.Config{
		Listen: "127.0.0.1:-1", StoreDir: t.TempDir(), ModemUser: "modem", ModemPassword: "pw", AckWait: o.ackWait, Countries: o.countries,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	mc, err := nats.Connect(b.ClientURL(), nats.UserInfo("modem", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	mjs, _ := jetstream.New(mc)
	r := &rig{t: t, api: api, b: b, claims: claims.New(b.Claims()), clk: clk, modem: mc, mjs: mjs,
		up: &upstream.API{Client: c, Provider: provider, Log: log}, countries: o.countries}
	if r.countries == nil {
		r.countries = []string{"RO"}
	}
	if !o.noRun {
		r.start(o.maxQueued)
	}
	return r
}

// start runs a dispatcher on the rig's broker, as a (re)started poller.
func (r *rig) start(maxQueued int) {
	r.reg = prometheus.NewRegistry()
	r.d = dispatch.New(dispatch.Config{Countries: r.countries, PollInterval: 50 * time.Millisecond, MaxQueued: maxQueued,
		Claims: r.claims, Clock: r.clk, Log: zaptest.NewLogger(r.t), Reg: r.reg}, r.up, r.b)
	ctx, cancel := context.WithCancel(context.Background())
	r.stop, r.done = cancel, make(chan struct{})
	done := r.done
	go func() { defer close(done); _ = r.d.Run(ctx, 2*time.Second) }()
	r.t.Cleanup(func() { cancel(); <-done })
}

// restart stops the dispatcher and starts another on the same broker.
func (r *rig) restart(maxQueued int) {
	r.stop()
	<-r.done
	r.start(maxQueued)
}

// heartbeat sets what the fake modem's heartbeat says. Like the real one it
// repeats, so a dispatcher that subscribes late still hears it.
func (r *rig) heartbeat(ready bool) {
	r.ready.Store(ready)
	r.once.Do(func() { r.beat(r.t.Context(), "rig", "i1", &r.ready) })
}

// beat publishes modem id's heartbeat (instance inst) every 20 ms, saying
// what ready says, until ctx ends; countries are its MODEM_COUNTRIES.
func (r *rig) beat(ctx context.Context, id, inst string, ready *atomic.Bool, countries ...string) {
	r.beatWith(ctx, func() schema.ModemStatus {
		return schema.ModemStatus{V: 1, ID: id, Instance: inst, Countries: countries, Ready: ready.Load()}
	})
}

// beatWith publishes what st returns as a heartbeat every 20 ms, valid
// for a second, until ctx ends.
func (r *rig) beatWith(ctx context.Context, st func() schema.ModemStatus) {
	go func() {
		for {
			hb := st()
			hb.At, hb.ValidFor = time.Now(), schema.Duration(time.Second)
			b, _ := json.Marshal(hb)
			_ = r.modem.Publish(schema.StatusSubjectFor(hb.ID), b)
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
}

func (r *rig) seed(text string, ttl *int, age time.Duration) string {
	cc := "RO"
	return r.api.Seed(smsapi.SMS{PhoneNumber: "+40722000111", Message: text, Tenant: "t1", TTL: ttl, Timestamp: time.Now().Add(-age), CountryCode: &cc})
}

func (r *rig) wait(what string, cond func(v *smsapi.View) bool) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.api.WaitFor(ctx, cond); err != nil {
		r.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// pull takes the next job as the modem would.
func (r *rig) pull() (jetstream.Msg, schema.Job) {
	r.t.Helper()
	cons, err := r.mjs.Consumer(context.Background(), schema.JobsStream, schema.JobsConsumerFor("RO"))
	if err != nil {
		r.t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		r.t.Fatalf("no job: %v", err)
	}
	job, err := schema.Decode[schema.Job](msg.Data())
	if err != nil {
		r.t.Fatal(err)
	}
	return msg, job
}

// publishResult publishes a result with the modem's credentials.
func (r *rig) publishResult(res schema.Result) {
	r.t.Helper()
	b, _ := json.Marshal(res)
	if _, err := r.mjs.Publish(context.Background(), res.Subject(), b, jetstream.WithMsgID(res.MsgID())); err != nil {
		r.t.Fatal(err)
	}
}

// finish publishes the modem's result and acks the job, in that order.
func (r *rig) finish(msg jetstream.Msg, job schema.Job, st schema.Status) {
	r.t.Helper()
	res := schema.Result{V: 1, JobID: job.ID, SmsID: job.SmsID, Tenant: job.Tenant, Status: st}
	if st == schema.StatusSent {
		res.SentAt, res.References, res.Parts = time.Now().UTC(), []int{7}, 1
	}
	r.publishResult(res)
	if err := msg.DoubleAck(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

// stored counts the messages in a stream.
func (r *rig) stored(stream string) uint64 {
	r.t.Helper()
	st, err := r.b.JetStream().Stream(context.Background(), stream)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return info.State.Msgs
}

// eventually polls cond until it holds; for state with no event to await
// (a stream's depth, a metric).
func (r *rig) eventually(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func status(v *smsapi.View, id string) schema.Status { m, _ := v.Get(id); return m.Status }

func nextCalls(api *smsapi.Server) int {
	n := 0
	for _, q := range api.Requests() {
		if strings.Contains(q.Path, "/provider/next/") {
			n++
		}
	}
	return n
}

func TestClaimsOnlyWhileTheModemIsReady(t *testing.T) {
	r := newRig(t, 2)
	id := r.seed("hello", nil, 0)
	// Without a heartbeat nothing is claimed, however long we look: the
	// stand-in's request log shows no "next" after several poll intervals.
	r.heartbeat(false)
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if nextCalls(r.api) > 0 {
			t.Fatal("claimed while the modem said it was not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.heartbeat(true)
	r.wait("the claim", func(v *smsapi.View) bool { return status(v, id) == schema.StatusEntrusted })
	msg, job := r.pull()
	if job.SmsID != id || job.Message != "hello" || job.Tenant != "t1" || job.ExpiresAt.Sub(job.CreatedAt) != schema.DefaultTTL {
		t.Fatalf("job = %+v", job)
	}
	r.finish(msg, job, schema.StatusSent)
	r.wait("Sent upstream", func(v *smsapi.View) bool { return status(v, id) == schema.StatusSent })
	m, _ := r.api.Get(id)
	if m.TrackingID == nil || *m.TrackingID != "mr:7" || m.SentAt == nil {
		t.Fatalf("record after Sent: %+v", m)
	}
	if ms := r.api.Mistakes(); len(ms) > 0 {
		t.Fatalf("client mistakes: %v", ms)
	}
}

func TestBackPressureLimitsClaims(t *testing.T) {
	r := newRig(t, 2)
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, r.seed("m", nil, 0))
	}
	r.heartbeat(true)
	entrusted := func(v *smsapi.View) int {
		n := 0
		for _, id := range ids {
			if status(v, id) == schema.StatusEntrusted {
				n++
			}
		}
		return n
	}
	r.wait("two claims", func(v *smsapi.View) bool { return entrusted(v) == 2 })
	// The queue is full: more poll intervals pass without a third claim.
	before := nextCalls(r.api)
	time.Sleep(300 * time.Millisecond) // several poll intervals; asserting that nothing happens
	if n, _ := r.b.JobsPending(context.Background()); n != 2 {
		t.Fatalf("jobs queued = %d, want 2", n)
	}
	if after := nextCalls(r.api); after != before {
		t.Fatalf("claimed %d more while the queue was full", after-before)
	}
	// Each finished job lets exactly one more in.
	for done := 0; done < 6; done++ {
		msg, job := r.pull()
		r.finish(msg, job, schema.StatusSent)
	}
	r.wait("all Sent", func(v *smsapi.View) bool {
		for _, id := range ids {
			if status(v, id) != schema.StatusSent {
				return false
			}
		}
		return true
	})
}

func TestExpiredAtClaimIsReportedWithoutAJob(t *testing.T) {
	r := newRig(t, 2)
	id := r.seed("stale", ptr(5), time.Hour)
	r.heartbeat(true)
	r.wait("Expired", func(v *smsapi.View) bool { return status(v, id) == schema.StatusExpired })
	if n, _ := r.b.JobsPending(context.Background()); n != 0 {
		t.Fatalf("a job was queued for an expired SMS")
	}
}

func TestResultsSurviveAnAPIOutage(t *testing.T) {
	r := newRig(t, 2)
	id := r.seed("during outage", nil, 0)
	r.heartbeat(true)
	r.wait("claim", func(v *smsapi.View) bool { return status(v, id) == schema.StatusEntrusted })
	msg, job := r.pull()
	r.api.SetDown(true)
	r.finish(msg, job, schema.StatusSent)
	// The result cannot be reported; it must stay in the results stream.
	r.wait("a failed PATCH", func(v *smsapi.View) bool {
		for _, q := range v.Requests() {
			if q.Method == "PATCH" && q.Status == 503 {
				return true
			}
		}
		return false
	})
	st, err := r.b.JetStream().Stream(context.Background(), schema.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := st.Info(context.Background()); info.State.Msgs != 1 {
		t.Fatalf("results stream holds %d messages during the outage, want 1", info.State.Msgs)
	}
	r.api.SetDown(false)
	r.wait("Sent after the outage", func(v *smsapi.View) bool { return status(v, id) == schema.StatusSent })
}

func ptr[T any](v T) *T { return &v }
