package dispatch_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/services/poller/internal/dispatch"
	"github.com/sensorsreport/smsgw/shared/schema"
)

func heldBy(r *rig, id string) bool { return r.modemInfo(id).Holding }

// released reads sms_poller_held_jobs_released_total{outcome}.
func released(r *rig, outcome string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sms_poller_held_jobs_released_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func yes() *atomic.Bool { var b atomic.Bool; b.Store(true); return &b }

func (r *rig) seedCC(cc, phone string) string {
	return r.api.Seed(smsapi.SMS{PhoneNumber: phone, Message: "m", Tenant: "t1", Timestamp: time.Now(), CountryCode: &cc})
}

func entrustedCount(v *smsapi.View, ids []string) int {
	n := 0
	for _, id := range ids {
		if status(v, id) == schema.StatusEntrusted {
			n++
		}
	}
	return n
}

func (r *rig) modemInfo(id string) dispatch.ModemInfo {
	for _, m := range r.d.Modems() {
		if m.ID == id {
			return m
		}
	}
	return dispatch.ModemInfo{}
}

// MAX_QUEUED_JOBS holds per ready modem: a second modem doubles how far
// the poller claims ahead, and a modem that falls silent takes its share
// away again, all without a restart.
func TestQueueDepthFollowsTheReadyModems(t *testing.T) {
	r := newRig(t, 2)
	var ids []string
	for range 8 {
		ids = append(ids, r.seedCC("RO", "+40722000111"))
	}
	r.beat(t.Context(), "m1", "a", yes())
	r.wait("two claims for one modem", func(v *smsapi.View) bool { return entrustedCount(v, ids) == 2 })
	before := nextCalls(r.api)
	time.Sleep(300 * time.Millisecond) // several poll intervals; asserting that nothing happens
	if after := nextCalls(r.api); after != before {
		t.Fatalf("claimed %d more with one modem and a full queue", after-before)
	}

	ctx2, stop2 := context.WithCancel(t.Context())
	r.beat(ctx2, "m2", "b", yes())
	r.wait("four claims for two modems", func(v *smsapi.View) bool { return entrustedCount(v, ids) == 4 })
	r.eventually("four jobs queued", func() bool { n, _ := r.b.JobsPending(context.Background()); return n == 4 })
	if err := testutil.CollectAndCompare(r.reg, strings.NewReader(`
# HELP sms_poller_modem_up Every modem heard from in the last hour: 1 while its fresh heartbeat says ready. countries is its MODEM_COUNTRIES (empty: any); state is ready, not_ready, limited (MODEM_RATE_LIMIT reached), silent or conflict (two modems with one MODEM_ID).
# TYPE sms_poller_modem_up gauge
sms_poller_modem_up{countries="",modem="m1",state="ready"} 1
sms_poller_modem_up{countries="",modem="m2",state="ready"} 1
`), "sms_poller_modem_up"); err != nil {
		t.Fatal(err)
	}

	// m2 leaves: once its heartbeat expires, one modem's share is queued.
	stop2()
	r.eventually("m2 silent", func() bool { return r.modemInfo("m2").State == "silent" })
	for range 3 {
		msg, job := r.pull()
		r.finish(msg, job, schema.StatusSent)
	}
	r.eventually("the queue refilled to one modem's share", func() bool {
		n, _ := r.b.JobsPending(context.Background())
		return n == 2
	})
	before = nextCalls(r.api)
	time.Sleep(300 * time.Millisecond)
	if n, _ := r.b.JobsPending(context.Background()); n != 2 || nextCalls(r.api) != before {
		t.Fatalf("jobs queued = %d (want 2), %d more claims with one modem left", n, nextCalls(r.api)-before)
	}
}

// A country is claimed only while a ready modem serves it.
func TestClaimsOnlyCountriesAReadyModemServes(t *testing.T) {
	r := newRigWith(t, rigOpts{maxQueued: 2, countries: []string{"RO", "MD"}})
	ro := r.seedCC("RO", "+40722000111")
	md := r.seedCC("MD", "+37369000111")
	r.beat(t.Context(), "ro-sim", "a", yes(), "RO")
	r.wait("the RO claim", func(v *smsapi.View) bool { return status(v, ro) == schema.StatusEntrusted })
	time.Sleep(300 * time.Millisecond) // several poll intervals; asserting that nothing happens
	for _, q := range r.api.Requests() {
		if strings.HasSuffix(q.Path, "/MD") {
			t.Fatalf("claimed MD with only an RO modem: %s", q.Path)
		}
	}
	if m := r.modemInfo("ro-sim"); !m.Ready || strings.Join(m.Countries, ",") != "RO" {
		t.Fatalf("ro-sim = %+v", m)
	}
	r.beat(t.Context(), "md-sim", "b", yes(), "MD")
	r.wait("the MD claim", func(v *smsapi.View) bool { return status(v, md) == schema.StatusEntrusted })
}

// Two processes beating with one MODEM_ID: neither counts, and the
// poller says why.
func TestTwoModemsWithOneIDClaimNothing(t *testing.T) {
	r := newRig(t, 2)
	r.beat(t.Context(), "twin", "a", yes())
	r.beat(t.Context(), "twin", "b", yes())
	r.eventually("the conflict seen", func() bool { return r.modemInfo("twin").State == "conflict" })
	if err := r.d.ModemReady(); err == nil || !strings.Contains(err.Error(), "MODEM_ID") {
		t.Fatalf("ModemReady = %v; want the MODEM_ID conflict named", err)
	}
	id := r.seedCC("RO", "+40722000111")
	before := nextCalls(r.api)
	time.Sleep(300 * time.Millisecond) // several poll intervals; asserting that nothing happens
	if nextCalls(r.api) != before {
		t.Fatal("claimed for two modems sharing one MODEM_ID")
	}
	if m, _ := r.api.Get(id); m.Status != schema.StatusPending {
		t.Fatalf("SMS status %v, want Pending", m.Status)
	}
}

// A heartbeat whose body names another modem than its subject is ignored:
// the subject is what the broker's permissions vouch for.
func TestHeartbeatMustMatchItsSubject(t *testing.T) {
	r := newRig(t, 2)
	b := []byte(`{"v":1,"id":"other","ready":true,"valid_for":"1s","at":"2026-01-01T00:00:00Z"}`)
	if err := r.modem.Publish(schema.StatusSubjectFor("m1"), b); err != nil {
		t.Fatal(err)
	}
	r.beat(t.Context(), "m2", "a", yes())
	r.eventually("m2 heard", func() bool { return r.modemInfo("m2").Ready })
	for _, m := range r.d.Modems() {
		if m.ID != "m2" {
			t.Fatalf("modem listed from a mismatched heartbeat: %+v", m)
		}
	}
}

// A modem that dies holding a job (its heartbeat names the job's ack
// subject, then stops) has the job handed to another modem at once, long
// before JOB_ACK_WAIT.
func TestSilentModemsJobGoesToAnother(t *testing.T) {
	r := newRigWith(t, rigOpts{maxQueued: 2, ackWait: time.Minute})
	id := r.seedCC("RO", "+40722000111")
	var holding atomic.Value
	holding.Store("")
	ctxA, killA := context.WithCancel(t.Context())
	r.beatWith(ctxA, func() schema.ModemStatus {
		return schema.ModemStatus{V: 1, ID: "pi-a", Instance: "a", Ready: true, Holding: holding.Load().(string)}
	})
	msg, job := r.pull()
	if job.SmsID != id {
		t.Fatalf("job %+v", job)
	}
	holding.Store(msg.Reply())
	r.eventually("pi-a's heartbeat names the job", func() bool { return heldBy(r, "pi-a") })
	killA() // SIGKILL: no result, no ack, no more heartbeats

	// Well before the minute of JOB_ACK_WAIT, the job comes back.
	cons, err := r.mjs.Consumer(context.Background(), schema.JobsStream, schema.JobsConsumerFor("RO"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
	if err != nil {
		t.Fatalf("the silent modem's job never came back: %v", err)
	}
	if md, _ := again.Metadata(); md == nil || md.NumDelivered != 2 || string(again.Data()) != string(msg.Data()) {
		t.Fatalf("redelivery %+v of %s", md, again.Data())
	}
	if got := released(r, "nak"); got != 1 {
		t.Fatalf("released nak = %v, want 1", got)
	}
	r.finish(again, job, schema.StatusSent)
	r.wait("Sent upstream", func(v *smsapi.View) bool { return status(v, id) == schema.StatusSent })
}

// A heartbeat naming anything but a job's ack subject is never published
// to: the poller's connection may publish everywhere.
func TestHeldSubjectFromAHeartbeatIsChecked(t *testing.T) {
	r := newRig(t, 2)
	bad := []string{"sms.jobs.RO", "$JS.ACK.SMS_JOBS.modem-RO.>", "$JS.ACK.SMS_RESULTS.poller.1.1.1.1.0", "$JS.ACK.SMS_JOBS.modem-RO.1.1.1.1.0.x",
		"$JS.ACK.SMS_JOBS.modem.1.1.1.1.0", "$JS.ACK.SMS_JOBS.modem-ro.1.1.1.1.0", "$JS.ACK.SMS_JOBS.modem-RO.1.1.1.x.0", "$JS.ACK.SMS_JOBS.modem-RO.1.1.1.1"}
	for i, bad := range bad {
		ctx, stop := context.WithCancel(t.Context())
		id := fmt.Sprintf("evil%d", i)
		r.beatWith(ctx, func() schema.ModemStatus {
			return schema.ModemStatus{V: 1, ID: id, Instance: "x", Ready: true, Holding: bad}
		})
		r.eventually(id+" heard", func() bool { return heldBy(r, id) })
		stop()
	}
	r.eventually("every bad subject refused", func() bool { return released(r, "refused") == float64(len(bad)) })
	if n := r.stored(schema.JobsStream); n != 0 {
		t.Fatalf("%d messages in the jobs stream; the poller published a modem's subject", n)
	}
	if got := released(r, "nak"); got != 0 {
		t.Fatalf("released nak = %v, want 0", got)
	}
}
