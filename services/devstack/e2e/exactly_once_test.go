//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// metric reads one sample from a service's /metrics: name with its labels
// as they are printed, e.g. `sms_poller_results_refused_total{reason="not_issued"}`.
func metric(t *testing.T, addr, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// eventually polls an observable condition of separate processes.
func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The API's trust timeout is shorter than a send: it re-queues the SMS the
// gateway is sending, and the gateway claims it again. The second claim is
// answered from the ledger; the phone gets the SMS once.
func TestReclaimAfterTrustTimeoutIsNotSentTwice(t *testing.T) {
	st := start(t, harness.Options{
		PollInterval: 200 * time.Millisecond,
		API:          smsapi.Options{TrustTimeout: 2 * time.Second, TaskInterval: 300 * time.Millisecond, MaxRetryCount: 20},
		// One part takes longer than the trust timeout.
		Sim: modemsim.Config{PartLatency: 5 * time.Second},
	})
	var ws []want
	for i := range 3 {
		text := fmt.Sprintf("re-queued while sending %d", i)
		id := st.Seed(smsapi.SMS{PhoneNumber: "+40722000111", Message: text, Tenant: "tenant-a", TTL: ptr(60), CountryCode: ptr("RO")})
		ws = append(ws, want{id: id, text: text, status: schema.StatusSent})
	}
	waitFinal(t, st, ids(ws), 3*time.Minute)
	checkOutcome(t, st, ws, nil)
	reclaimed := 0
	for _, w := range ws {
		if m, _ := st.API.Get(w.id); m.RetryCount > 1 {
			reclaimed++
		}
	}
	if reclaimed == 0 {
		t.Fatal("no SMS was claimed twice: the test did not reproduce a re-queue")
	}
	t.Logf("%d of %d SMS were claimed more than once", reclaimed, len(ws))
}

// The API enforces tokens and the identity provider is down when the result
// comes back: the PATCH is answered 401. The result is kept and reported
// once the provider is back, never dropped.
func TestReportAnswered401WhileTheIdentityProviderIsDown(t *testing.T) {
	st := start(t, harness.Options{
		PollInterval: 200 * time.Millisecond, AccessTTL: 2 * time.Second, RefreshTTL: 4 * time.Second,
		API: smsapi.Options{RequireToken: true},
		Sim: modemsim.Config{PartLatency: 4 * time.Second},
	})
	text := "sent while keycloak is down"
	id := st.Seed(smsapi.SMS{PhoneNumber: "+40722000111", Message: text, Tenant: "tenant-a", CountryCode: ptr("RO")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.API.WaitFor(ctx, func(v *smsapi.View) bool { m, _ := v.Get(id); return m.Status == schema.StatusEntrusted }); err != nil {
		t.Fatal(err)
	}
	st.OIDC.SetDown(true)
	if err := st.API.WaitFor(ctx, func(v *smsapi.View) bool {
		for _, q := range v.Requests() {
			if q.Method == http.MethodPatch && q.Status == http.StatusUnauthorized {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("no PATCH was refused with 401: %v", err)
	}
	if m, _ := st.API.Get(id); m.Status != schema.StatusEntrusted {
		t.Fatalf("status %v while the report cannot be made", m.Status)
	}
	time.Sleep(3 * time.Second) // the outage goes on: retries keep failing, nothing is dropped
	st.OIDC.SetDown(false)
	waitFinal(t, st, []string{id}, 2*time.Minute)
	checkOutcome(t, st, []want{{id: id, text: text, status: schema.StatusSent}}, nil)
	if n := metric(t, st.PollerHTTP, "sms_poller_dead_letters_total"); n != 0 {
		t.Fatalf("%v dead letters", n)
	}
}

// The API's clock (its Date header and its time stamps) is two hours ahead
// of, or behind, the gateway's: valid SMS are sent, expired ones expire, on
// the API's time.
func TestAPIClockSkew(t *testing.T) {
	for _, off := range []time.Duration{2 * time.Hour, -2 * time.Hour} {
		t.Run(off.String(), func(t *testing.T) {
			st := start(t, harness.Options{PollInterval: 200 * time.Millisecond, APIClockOffset: off})
			apiNow := time.Now().Add(off)
			var ws []want
			add := func(text string, age time.Duration, status schema.Status) {
				id := st.Seed(smsapi.SMS{PhoneNumber: "+40722000111", Message: text, Tenant: "tenant-a",
					Timestamp: apiNow.Add(-age), CountryCode: ptr("RO")})
				ws = append(ws, want{id: id, text: text, status: status})
			}
			add("valid on the API's clock", time.Minute, schema.StatusSent)
			add("expired on the API's clock", 40*time.Minute, schema.StatusExpired)
			add("valid, ten minutes left", 20*time.Minute, schema.StatusSent)
			waitFinal(t, st, ids(ws), 2*time.Minute)
			checkOutcome(t, st, ws, nil)
			// The validity period the modem set is the TTL left on the API's clock.
			for _, m := range st.Sim.Received() {
				if m.ValidityPeriod > 35*time.Minute {
					t.Errorf("%q: validity period %s beyond the 30 min TTL", m.Text, m.ValidityPeriod)
				}
			}
			skew := metric(t, st.PollerHTTP, "sms_poller_clock_skew_seconds")
			if d := time.Duration(skew * float64(time.Second)); (d - off).Abs() > 5*time.Second {
				t.Errorf("measured skew %s, want about %s", d, off)
			}
		})
	}
}

// An API built before c1cd56f answers 400 to every SMS call without a
// tenant. The gateway claims, sends and reports all the same, and a
// restart's recovery (by id, with the tenant) works too.
func TestLegacyAPIGeneration(t *testing.T) {
	st := start(t, harness.Options{PollInterval: 200 * time.Millisecond, API: smsapi.Options{LegacyTenant400: true},
		Sim: modemsim.Config{PartLatency: 200 * time.Millisecond}})
	ws := seedMixed(st, 6, "legacy ")
	for i := range ws {
		ws[i].status = schema.StatusSent
	}
	// Restart the poller mid-run: recovery must not depend on the list.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.API.WaitFor(ctx, func(v *smsapi.View) bool {
		for _, w := range ws {
			if m, _ := v.Get(w.id); m.Status == schema.StatusSent {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Poller.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := st.Poller.Start(); err != nil {
		t.Fatal(err)
	}
	var gb []want
	for _, w := range ws {
		if !strings.HasPrefix(w.phone, "+44") {
			gb = append(gb, w)
		}
	}
	waitFinal(t, st, ids(gb), 2*time.Minute)
	checkOutcome(t, st, gb, nil)
}

// A result published with the modem's own credentials for an SMS that was
// never claimed leaves that SMS untouched.
func TestForgedResultLeavesTheSMSUntouched(t *testing.T) {
	st := start(t, harness.Options{PollInterval: 200 * time.Millisecond})
	// Moldova is not among the poller's countries: it is never claimed.
	id := st.Seed(smsapi.SMS{PhoneNumber: "+37369000111", Message: "never claimed", Tenant: "tenant-a", CountryCode: ptr("MD")})
	nc, err := nats.Connect(st.NATSURL, nats.UserInfo(harness.NATSUser, harness.NATSPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	forged := schema.Result{V: schema.Version, JobID: schema.JobID(id, 1), SmsID: id, Tenant: "tenant-a",
		Status: schema.StatusSent, SentAt: time.Now().UTC(), References: []int{1}, Parts: 1}
	b, _ := json.Marshal(forged)
	if err := nc.Publish(forged.Subject(), b); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the forged result refused", time.Minute, func() bool {
		return metric(t, st.PollerHTTP, `sms_poller_results_refused_total{reason="not_issued"}`) >= 1
	})
	if m, _ := st.API.Get(id); m.Status != schema.StatusPending || m.TrackingID != nil {
		t.Fatalf("forged SMS is %+v, want untouched", m)
	}
	for _, q := range st.API.Requests() {
		if q.Method == http.MethodPatch && strings.Contains(q.Path, id) {
			t.Fatalf("the forged result reached the API: %+v", q)
		}
	}
}
