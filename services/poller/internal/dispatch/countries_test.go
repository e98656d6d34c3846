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
