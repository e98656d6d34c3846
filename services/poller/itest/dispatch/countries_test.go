package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// MAX_QUEUED_JOBS is kept per country over the modems serving it: the
// jobs of a country whose only modem stopped being ready (its SIM
// rate-limited, say) wait for it without holding up the other countries.
func TestQueuedJobsOfAnUnservedCountryHoldUpNoOther(t *testing.T) {
	r := newRigWith(t, rigOpts{maxQueued: 1, countries: []string{"RO", "MD"}})
	var ro, md []string
	for range 3 {
		ro = append(ro, r.seedCC("RO", "+40722000111"))
		md = append(md, r.seedCC("MD", "+37369000111"))
	}
	mdReady := yes()
	r.beat(t.Context(), "ro-sim", "a", yes(), "RO")
	r.beat(t.Context(), "md-sim", "b", mdReady, "MD")
	r.wait("one claim per country", func(v *smsapi.View) bool { return entrustedCount(v, ro) == 1 && entrustedCount(v, md) == 1 })
	before := nextCalls(r.api)
	time.Sleep(300 * time.Millisecond) // several poll intervals; asserting that nothing happens
	if after := nextCalls(r.api); after != before {
		t.Fatalf("claimed %d more with a full queue for each country", after-before)
	}

	mdReady.Store(false) // the MD job waits in the queue for its modem
	r.eventually("md-sim not ready", func() bool { return !r.modemInfo("md-sim").Ready })
	for i := range 3 {
		msg, job := r.pull()
		r.finish(msg, job, schema.StatusSent)
		if i < 2 {
			r.wait("the next RO claim", func(v *smsapi.View) bool { return entrustedCount(v, ro) == 1 && sentCount(v, ro) == i+1 })
		}
	}
	r.wait("every RO SMS sent", func(v *smsapi.View) bool { return sentCount(v, ro) == 3 })
	if n := func() int { c, _ := r.b.JobsByCountry(context.Background()); return c["MD"] }(); n != 1 {
		t.Fatalf("%d MD jobs queued, want the one waiting for its modem", n)
	}
}

func sentCount(v *smsapi.View, ids []string) int {
	n := 0
	for _, id := range ids {
		if status(v, id) == schema.StatusSent {
			n++
		}
	}
	return n
}

// A stranded claim of a country taken out of SMS_COUNTRIES is not queued
// again at start: no jobs consumer serves it, so it would wait for ever.
// The API hands it out again after its trust timeout.
func TestStrandedClaimOfAnUnclaimedCountryIsNotRequeued(t *testing.T) {
	r := newRigWith(t, rigOpts{noRun: true})
	gb := "GB"
	id := r.api.Seed(smsapi.SMS{PhoneNumber: "+447911123456", Message: "stranded", Tenant: "t1",
		Status: schema.StatusEntrusted, RetryCount: 1, CountryCode: &gb, SentAt: ptr(time.Now())})
	job := schema.Job{V: 1, ID: schema.JobID(id, 1), SmsID: id, Tenant: "t1", PhoneNumber: "+447911123456",
		Message: "stranded", CountryCode: "GB", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := r.claims.Issue(context.Background(), job, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	fresh := r.seed("fresh", nil, 0)
	r.start(2)
	r.heartbeat(true)
	msg, j := r.pull()
	if j.SmsID != fresh {
		t.Fatalf("job %+v, want the fresh RO SMS", j)
	}
	r.finish(msg, j, schema.StatusSent)
	r.wait("the fresh SMS Sent", func(v *smsapi.View) bool { return status(v, fresh) == schema.StatusSent })
	r.eventually("the stream empty", func() bool { return r.stored(schema.JobsStream) == 0 })
	if byCC, _ := r.b.JobsByCountry(context.Background()); byCC["GB"] != 0 {
		t.Fatalf("the GB claim was queued: %v", byCC)
	}
	if m, _ := r.api.Get(id); m.Status != schema.StatusEntrusted {
		t.Fatalf("the stranded SMS is %v, want left Entrusted for the API", m.Status)
	}
}
