package sender_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// addCountries creates the jobs consumers of more countries, as the poller
// does for its SMS_COUNTRIES.
func (e *env) addCountries(ccs ...string) {
	e.t.Helper()
	for _, cc := range ccs {
		if _, err := e.js.CreateOrUpdateConsumer(ctxT(e.t), schema.JobsStream, jetstream.ConsumerConfig{
			Durable: schema.JobsConsumerFor(cc), AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: 3 * time.Second, MaxDeliver: 5, MaxAckPending: 64,
			FilterSubject: schema.JobSubject(cc), DeliverPolicy: jetstream.DeliverAllPolicy,
		}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// queued returns how many jobs of country cc are stored and never delivered.
func (e *env) queued(cc string) (undelivered uint64, delivered uint64) {
	e.t.Helper()
	c, err := e.js.Consumer(ctxT(e.t), schema.JobsStream, schema.JobsConsumerFor(cc))
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := c.Info(ctxT(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	return info.NumPending, info.Delivered.Consumer
}

func jobFor(cc, phone string) schema.Job {
	j := newJob(phone, "alarm for "+cc)
	j.CountryCode = cc
	return j
}

// receivedTo lists the numbers the simulated network got an SMS for.
func (e *env) receivedTo() []string {
	var to []string
	for _, r := range e.sim.Received() {
		to = append(to, r.To)
	}
	slices.Sort(to)
	return to
}

// A modem for some countries sends only their jobs; the others' are never
// even delivered to it. With one country it waits in a long pull, with
// several it goes round their consumers.
func TestModemTakesOnlyItsCountriesJobs(t *testing.T) {
	for name, countries := range map[string][]string{"one country": {"MD"}, "two countries": {"MD", "RO"}} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpt{})
			e.addCountries("MD", "GB")
			cfg := defaultConfig()
			cfg.Countries = countries
			e.start(cfg)
			md, gb, ro := jobFor("MD", "+37369000111"), jobFor("GB", "+447911123456"), jobFor("RO", "+40722000222")
			e.publish(gb)
			e.publish(md)
			e.publish(ro)
			want := []string{"+37369000111"}
			if len(countries) == 2 {
				want = append(want, "+40722000222")
			}
			for range want {
				if r := e.nextResult(); r.Status != schema.StatusSent {
					t.Fatalf("result %+v", r)
				}
			}
			if got := e.receivedTo(); !slices.Equal(got, want) {
				t.Fatalf("sent to %v, want %v", got, want)
			}
			if n, d := e.queued("GB"); n != 1 || d != 0 {
				t.Fatalf("GB job: %d pending, %d delivered; want it untouched", n, d)
			}
			if len(countries) == 1 {
				if n, d := e.queued("RO"); n != 1 || d != 0 {
					t.Fatalf("RO job: %d pending, %d delivered; want it untouched", n, d)
				}
			}
		})
	}
}

// Without MODEM_COUNTRIES the modem serves every jobs consumer, also one
// the poller creates while it runs.
func TestModemForAnyCountryServesEveryConsumer(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.addCountries("MD")
	e.start(defaultConfig())
	e.publish(jobFor("MD", "+37369000111"))
	e.publish(jobFor("RO", "+40722000222"))
	for range 2 {
		if r := e.nextResult(); r.Status != schema.StatusSent {
			t.Fatalf("result %+v", r)
		}
	}
	e.addCountries("GB")
	e.publish(jobFor("GB", "+447911123456"))
	// As the poller does after each job it queues.
	if err := e.js.Conn().Publish(schema.WakeSubjectFor("GB"), nil); err != nil {
		t.Fatal(err)
	}
	if r := e.nextResult(); r.Status != schema.StatusSent {
		t.Fatalf("result %+v", r)
	}
	if got := e.receivedTo(); !slices.Equal(got, []string{"+37369000111", "+40722000222", "+447911123456"}) {
		t.Fatalf("sent to %v", got)
	}
}

// A modem on several consumers that has found them all empty is woken by
// the poller's note when a job is queued: it does not wait for its
// periodic re-check.
func TestWakeUpBringsTheJobAtOnce(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.addCountries("MD")
	cfg := defaultConfig()
	cfg.Countries = []string{"RO", "MD"}
	e.start(cfg)
	// Two rounds of the idle modem: it is waiting now.
	first := jobFor("MD", "+37369000111")
	e.publish(first)
	e.nextResult()
	e.waitAcked()

	j := jobFor("MD", "+37369000333")
	start := time.Now()
	e.publish(j)
	if err := e.js.Conn().Publish(schema.WakeSubjectFor("MD"), nil); err != nil {
		t.Fatal(err)
	}
	r := e.nextResult()
	checkResult(t, r, j, schema.StatusSent, "")
	// The re-check comes after 5 s; the woken modem sends well before.
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the woken modem took %s to send", took)
	}
}

// Should a job for a country outside MODEM_COUNTRIES reach the modem all
// the same, it is handed back unsent and counted; nothing is reported.
func TestJobOfAnotherCountryIsRefused(t *testing.T) {
	e := newEnv(t, envOpt{})
	cfg := defaultConfig()
	cfg.Countries = []string{"RO"}
	reg := prometheus.NewRegistry()
	cfg.Reg = reg
	e.addCountries("RO") // the stray job, handed back, must not hold up the next
	e.start(cfg)
	stray := jobFor("MD", "+37369000111")
	stray.CountryCode = "MD"
	// Queued on RO's subject by mistake.
	data := mustJSON(t, stray)
	if _, err := e.js.Publish(ctxT(t), schema.JobSubject("RO"), data, jetstream.WithMsgID(stray.ID)); err != nil {
		t.Fatal(err)
	}
	ok := jobFor("RO", "+40722000222")
	e.publish(ok)
	checkResult(t, e.nextResult(), ok, schema.StatusSent, "")
	deadline := time.Now().Add(wait)
	for refused(t, reg) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the stray job was not refused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.receivedTo(); !slices.Equal(got, []string{"+40722000222"}) {
		t.Fatalf("sent to %v", got)
	}
	if _, stored := e.pending(); stored != 1 {
		t.Fatalf("%d jobs stored; want the stray one kept", stored)
	}
	if _, err := e.results.Next(jetstream.FetchMaxWait(200 * time.Millisecond)); err == nil {
		t.Fatal("a result was published for the refused job")
	}
}

// refused is sms_modem_jobs_refused_total{reason="country"}.
func refused(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sms_modem_jobs_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "country" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
