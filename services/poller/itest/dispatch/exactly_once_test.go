package dispatch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// counter reads a counter of the rig's registry by name and labels.
func (r *rig) counter(name string, labels ...string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.Label {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// A crashed poller's claim record names an SMS still Entrusted upstream: the
// next start re-queues it, beside claiming, against both API generations,
// and never takes an Entrusted SMS it has no record of (another gateway's).
func TestStrandedClaimIsRequeuedAtStart(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		name := "current API"
		if legacy {
			name = "API before c1cd56f (400 without a tenant)"
		}
		t.Run(name, func(t *testing.T) {
			r := newRigWith(t, rigOpts{api: smsapi.Options{LegacyTenant400: legacy}, noRun: true})
			cc := "RO"
			ours := r.api.Seed(smsapi.SMS{PhoneNumber: "+40722000111", Message: "stranded", Tenant: "t1",
				Status: schema.StatusEntrusted, RetryCount: 1, CountryCode: &cc, SentAt: ptr(time.Now())})
			theirs := r.api.Seed(smsapi.SMS{PhoneNumber: "+40722000222", Message: "another gateway's", Tenant: "t1",
				Status: schema.StatusEntrusted, RetryCount: 1, CountryCode: &cc, SentAt: ptr(time.Now())})
			fresh := r.seed("fresh", nil, 0)
			// The crashed run recorded its claim and died before the publish.
			job := schema.Job{V: 1, ID: schema.JobID(ours, 1), SmsID: ours, Tenant: "t1", PhoneNumber: "+40722000111",
				Message: "stranded", CountryCode: "RO", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
			if err := r.claims.Issue(context.Background(), job, nil, time.Now()); err != nil {
				t.Fatal(err)
			}
			r.start(2)
			r.heartbeat(true)
			got := map[string]schema.Job{}
			for range 2 {
				msg, j := r.pull()
				got[j.SmsID] = j
				r.finish(msg, j, schema.StatusSent)
			}
			if got[ours].ID != job.ID || got[fresh].SmsID != fresh {
				t.Fatalf("jobs %+v, want the stranded claim and the fresh SMS", got)
			}
			r.wait("both Sent", func(v *smsapi.View) bool {
				return status(v, ours) == schema.StatusSent && status(v, fresh) == schema.StatusSent
			})
			// A second start finds nothing open: no job again.
			r.restart(2)
			before := nextCalls(r.api)
			r.wait("the restart's claim poll", func(v *smsapi.View) bool {
				n := 0
				for _, q := range v.Requests() {
					if strings.Contains(q.Path, "/provider/next/") {
						n++
					}
				}
				return n > before+1
			})
			if n := r.stored(schema.JobsStream); n != 0 {
				t.Fatalf("%d jobs queued after the restart", n)
			}
			if m, _ := r.api.Get(theirs); m.Status != schema.StatusEntrusted {
				t.Fatalf("another gateway's SMS is %s, want untouched", m.Status)
			}
			if ms := r.api.Mistakes(); len(ms) > 0 {
				t.Fatalf("client mistakes: %v", ms)
			}
		})
	}
}

// Recovery that cannot read its SMS (the API fails those calls) keeps
// retrying beside the claim loop instead of holding it up.
func TestRecoveryDoesNotBlockClaiming(t *testing.T) {
	byID := regexp.MustCompile(`^/api/sms/[0-9a-f]{24}$`)
	r := newRigWith(t, rigOpts{noRun: true, wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
			if q.Method == http.MethodGet && byID.MatchString(q.URL.Path) {
				http.Error(w, `{"Errors":["down"]}`, http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, q)
		})
	}})
	stuck := schema.Job{V: 1, ID: "66cdd7b2e4b0a1c2d3e4f5ff.1", SmsID: "66cdd7b2e4b0a1c2d3e4f5ff", Tenant: "t1", CountryCode: "RO"}
	if err := r.claims.Issue(context.Background(), stuck, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	id := r.seed("claimed meanwhile", nil, 0)
	r.start(2)
	r.heartbeat(true)
	msg, job := r.pull()
	if job.SmsID != id {
		t.Fatalf("job for %s, want the fresh SMS", job.SmsID)
	}
	r.finish(msg, job, schema.StatusSent)
	r.wait("Sent", func(v *smsapi.View) bool { return status(v, id) == schema.StatusSent })
}

// A result published with the modem's credentials for an SMS this poller
// never claimed, or with a status a modem may not report, is refused: the
// SMS is left untouched.
func TestForgedResultsAreRefused(t *testing.T) {
	r := newRig(t, 2)
	md := "MD" // a country this poller never claims for
	id := r.api.Seed(smsapi.SMS{PhoneNumber: "+37369000111", Message: "never claimed", Tenant: "t1", CountryCode: &md})
	r.publishResult(schema.Result{V: 1, JobID: schema.JobID(id, 1), SmsID: id, Tenant: "t1", Status: schema.StatusSent})
	r.eventually("the forged result refused", func() bool { return r.counter("sms_poller_results_refused_total", "reason", "not_issued") == 1 })

	// A real job, then a result for it with a status no modem reports.
	claimed := r.seed("claimed", nil, 0)
	r.heartbeat(true)
	msg, job := r.pull()
	if job.SmsID != claimed {
		t.Fatalf("job for %s", job.SmsID)
	}
	bad, _ := json.Marshal(schema.Result{V: 1, JobID: job.ID, SmsID: job.SmsID, Tenant: job.Tenant, Status: schema.StatusPending})
	if _, err := r.mjs.Publish(context.Background(), schema.ResultsSubject+".pending", bad); err != nil {
		t.Fatal(err)
	}
	r.eventually("the bad status refused", func() bool { return r.counter("sms_poller_results_refused_total", "reason", "status") == 1 })
	// Garbage on the results subject.
	if _, err := r.mjs.Publish(context.Background(), schema.ResultsSubject+".sent", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	r.eventually("the undecodable result refused", func() bool { return r.counter("sms_poller_results_refused_total", "reason", "undecodable") == 1 })

	if m, _ := r.api.Get(id); m.Status != schema.StatusPending {
		t.Fatalf("forged SMS is %s, want Pending", m.Status)
	}
	if m, _ := r.api.Get(claimed); m.Status != schema.StatusEntrusted {
		t.Fatalf("claimed SMS is %s after a Pending result, want Entrusted", m.Status)
	}
	for _, q := range r.api.Requests() {
		if q.Method == http.MethodPatch {
			t.Fatalf("a PATCH went out: %+v", q)
		}
	}
	r.finish(msg, job, schema.StatusSent)
	r.wait("the real result reported", func(v *smsapi.View) bool { return status(v, claimed) == schema.StatusSent })
}

// An SMS deleted upstream while it was being sent: its result is given up
// into the dead-letter stream, not retried forever nor silently dropped.
func TestResultForADeletedSMSIsDeadLettered(t *testing.T) {
	r := newRig(t, 2)
	id := r.seed("deleted meanwhile", nil, 0)
	r.heartbeat(true)
	msg, job := r.pull()
	if err := r.up.Client.Delete(context.Background(), id, "t1"); err != nil {
		t.Fatal(err)
	}
	r.finish(msg, job, schema.StatusSent)
	r.eventually("a dead letter", func() bool { return r.stored(schema.DeadStream) == 1 })
	// Counted right after the store confirmed it.
	r.eventually("the dead letter counted", func() bool { return r.counter("sms_poller_dead_letters_total") == 1 })
	r.eventually("the result gone from SMS_RESULTS", func() bool { return r.stored(schema.ResultsStream) == 0 })
	cons, err := r.b.JetStream().OrderedConsumer(context.Background(), schema.DeadStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var dl schema.DeadLetter
	if err := json.Unmarshal(m.Data(), &dl); err != nil || dl.Result.SmsID != id || dl.Result.Status != schema.StatusSent || !strings.Contains(dl.Reason, "no longer exists") {
		t.Fatalf("dead letter %+v (%v)", dl, err)
	}
}

// The API's background task overwrote the PATCH (the answer does not show
// it): the report re-reads and applies it again.
func TestOverwrittenStatusIsAppliedAgain(t *testing.T) {
	var swallowed atomic.Bool
	r := newRigWith(t, rigOpts{maxQueued: 2, wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
			if q.Method == http.MethodPatch && swallowed.CompareAndSwap(false, true) {
				// As if the task's full-record write landed after ours.
				q.Body = io.NopCloser(strings.NewReader(`{}`))
				q.ContentLength = 2
			}
			h.ServeHTTP(w, q)
		})
	}})
	id := r.seed("overwritten", nil, 0)
	r.heartbeat(true)
	msg, job := r.pull()
	r.finish(msg, job, schema.StatusSent)
	r.wait("Sent", func(v *smsapi.View) bool { return status(v, id) == schema.StatusSent })
	if !swallowed.Load() {
		t.Fatal("the first PATCH was not overwritten")
	}
	// Re-applied within the report, not left for a later redelivery.
	if n := r.counter("sms_poller_reports_total", "outcome", "retry"); n != 0 {
		t.Fatalf("%v retries; the overwritten update was not applied again at once", n)
	}
}

// A claim whose answer cannot be used (fields of the wrong type) is
// reported Failed at once with the Id and Tenant that could be read.
func TestUnusableClaimIsFailedAtOnce(t *testing.T) {
	ts := regexp.MustCompile(`"Timestamp":"[^"]*"`)
	r := newRigWith(t, rigOpts{maxQueued: 2, wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
			if !strings.Contains(q.URL.Path, "/provider/next/") {
				h.ServeHTTP(w, q)
				return
			}
			rec := &bufferedWriter{header: http.Header{}}
			h.ServeHTTP(rec, q)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.code)
			_, _ = w.Write(ts.ReplaceAll(rec.body.Bytes(), []byte(`"Timestamp":5`)))
		})
	}})
	id := r.seed("wrong types", nil, 0)
	r.heartbeat(true)
	r.wait("Failed", func(v *smsapi.View) bool { return status(v, id) == schema.StatusFailed })
	if n := r.stored(schema.JobsStream); n != 0 {
		t.Fatalf("%d jobs queued for an unusable SMS", n)
	}
	if n := r.counter("sms_poller_claims_refused_total", "reason", "invalid"); n != 1 {
		t.Fatalf("claims refused %v", n)
	}
}

type bufferedWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header         { return b.header }
func (b *bufferedWriter) WriteHeader(code int)        { b.code = code }
func (b *bufferedWriter) Write(p []byte) (int, error) { return b.body.Write(p) }

// A message no job can carry is Failed at claim instead of clogging the
// queue; a valid SMS behind it flows.
func TestOversizedMessageIsFailedAtOnce(t *testing.T) {
	r := newRig(t, 2)
	big := r.seed(strings.Repeat("€", 40_000), nil, 0) // 120 KB of UTF-8
	ok := r.seed("behind it", nil, 0)
	r.heartbeat(true)
	r.wait("Failed", func(v *smsapi.View) bool { return status(v, big) == schema.StatusFailed })
	msg, job := r.pull()
	if job.SmsID != ok {
		t.Fatalf("job for %s", job.SmsID)
	}
	r.finish(msg, job, schema.StatusSent)
	r.wait("Sent", func(v *smsapi.View) bool { return status(v, ok) == schema.StatusSent })
}

// An SMS without a tenant can never be reported: it is not sent, and it is
// kept in the dead-letter stream for an operator.
func TestSMSWithoutTenantIsDeadLettered(t *testing.T) {
	r := newRig(t, 2)
	cc := "RO"
	id := r.api.Seed(smsapi.SMS{PhoneNumber: "+40722000111", Message: "no tenant", CountryCode: &cc})
	r.heartbeat(true)
	r.eventually("a dead letter", func() bool { return r.stored(schema.DeadStream) == 1 })
	if n := r.stored(schema.JobsStream); n != 0 {
		t.Fatalf("%d jobs queued for an SMS without a tenant", n)
	}
	if n := r.counter("sms_poller_claims_refused_total", "reason", "no_tenant"); n != 1 {
		t.Fatalf("claims refused %v", n) // counted before the dead letter is written
	}
	if m, _ := r.api.Get(id); m.Status != schema.StatusEntrusted {
		t.Fatalf("status %s", m.Status)
	}
}

// A job that exhausted its deliveries may have been sent by one of them:
// Unknown, never Failed (which would invite a resend).
func TestDeadJobBecomesUnknown(t *testing.T) {
	r := newRig(t, 2)
	id := r.seed("never finished", nil, 0)
	job := schema.Job{V: 1, ID: schema.JobID(id, 1), SmsID: id, Tenant: "t1", PhoneNumber: "+40722000111", Message: "x"}
	if err := r.claims.Issue(context.Background(), job, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(job)
	r.api.Seed(smsapi.SMS{}) // unrelated record: the dead job must be matched by id
	if err := r.d.DeadJob(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	r.wait("Unknown", func(v *smsapi.View) bool { return status(v, id) == schema.StatusUnknown })
}

// The modem's time comes from the poller, which has it from the API.
func TestClockAnswersTheModem(t *testing.T) {
	r := newRig(t, 2)
	r.heartbeat(true) // the claim loop polls an empty queue: the API answers
	r.eventually("a trusted time", func() bool { _, _, err := r.clk.Now(); return err == nil })
	m, err := r.modem.Request(schema.ClockSubject, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := schema.Decode[schema.ClockReading](m.Data)
	if err != nil || cr.Error != "" || cr.Source != "reference" || time.Since(cr.Now).Abs() > 5*time.Second {
		t.Fatalf("clock reading %+v (%v)", cr, err)
	}
}

// A failover can bring a second result for a job that is already reported:
// the first modem sent and reported it, died before its ack, and the modem
// that got the job back found it attempted elsewhere and says Unknown. The
// Unknown is refused; the SMS stays Sent. (The results stream's dedup
// window absorbs the same job id for a while; this holds after it too.)
func TestUnknownAfterReportIsRefused(t *testing.T) {
	r := newRig(t, 2)
	id := r.seed("sent, then Unknown", nil, 0)
	r.heartbeat(true)
	msg, job := r.pull()
	r.finish(msg, job, schema.StatusSent)
	r.wait("Sent", func(v *smsapi.View) bool { return status(v, id) == schema.StatusSent })
	r.eventually("the claim record reported", func() bool {
		rec, err := r.claims.Get(context.Background(), job.Tenant, id)
		return err == nil && rec.State == "reported"
	})
	patches := func() int {
		n := 0
		for _, q := range r.api.Requests() {
			if q.Method == http.MethodPatch {
				n++
			}
		}
		return n
	}
	before := patches()
	late, _ := json.Marshal(schema.Result{V: 1, JobID: job.ID, SmsID: id, Tenant: job.Tenant, Status: schema.StatusUnknown, Code: "attempted_elsewhere"})
	if _, err := r.mjs.Publish(context.Background(), schema.ResultsSubject+".unknown", late); err != nil { // no msg id: past the dedup window
		t.Fatal(err)
	}
	r.eventually("the late Unknown refused", func() bool {
		return r.counter("sms_poller_results_refused_total", "reason", "already_reported") == 1
	})
	if m, _ := r.api.Get(id); m.Status != schema.StatusSent {
		t.Fatalf("SMS is %v after the late Unknown, want Sent", m.Status)
	}
	if n := patches(); n != before {
		t.Fatalf("%d PATCHes after the late Unknown, want none", n-before)
	}
}
