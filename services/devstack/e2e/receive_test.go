//go:build e2e

package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
)

const (
	hookSecret  = "e2e-webhook-secret"
	modemNumber = "+40722999099"
	failNumber  = "+40722666666"
)

// hook is the customer's webhook endpoint: it checks every request the way
// the README tells receivers to and keeps the events it accepted.
type hook struct {
	t       *testing.T
	mu      sync.Mutex
	down    bool
	refused int
	events  []map[string]any
	ids     map[string]string // id -> raw body, to see that a repeat is identical
	changed chan struct{}
}

func newHook(t *testing.T) (*hook, string) {
	h := &hook{t: t, ids: map[string]string{}, changed: make(chan struct{}, 1)}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL + "/sms-events"
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write(body)
	sigOK := hmac.Equal([]byte(r.Header.Get("X-Smsgw-Signature")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil))))
	var ev map[string]any
	_ = json.Unmarshal(body, &ev)
	h.mu.Lock()
	defer func() {
		h.mu.Unlock()
		select {
		case h.changed <- struct{}{}:
		default:
		}
	}()
	switch {
	case r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json":
		h.t.Errorf("request %s %q", r.Method, r.Header.Get("Content-Type"))
	case !sigOK:
		h.t.Errorf("bad signature %q on %s", r.Header.Get("X-Smsgw-Signature"), body)
	case ev["id"] != r.Header.Get("Idempotency-Key") || ev["event"] != r.Header.Get("X-Smsgw-Event"):
		h.t.Errorf("headers %v do not match the body %s", r.Header, body)
	}
	if h.down {
		h.refused++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	id, _ := ev["id"].(string)
	if prev, ok := h.ids[id]; ok {
		if prev != string(body) {
			h.t.Errorf("id %s repeated with a different body:\n%s\n%s", id, prev, body)
		}
	} else {
		h.ids[id] = string(body)
		h.events = append(h.events, ev)
	}
	w.WriteHeader(http.StatusOK)
}

func (h *hook) setDown(v bool) { h.mu.Lock(); h.down = v; h.mu.Unlock() }

// await waits until cond holds for the distinct events accepted so far.
func (h *hook) await(t *testing.T, d time.Duration, what string, cond func([]map[string]any) bool) []map[string]any {
	t.Helper()
	deadline := time.After(d)
	for {
		h.mu.Lock()
		evs := append([]map[string]any(nil), h.events...)
		h.mu.Unlock()
		if cond(evs) {
			return evs
		}
		select {
		case <-h.changed:
		case <-deadline:
			t.Fatalf("webhook never saw %s; got %v", what, evs)
		}
	}
}

func of(evs []map[string]any, kind string) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e["event"] == kind {
			out = append(out, e)
		}
	}
	return out
}

func receiveStack(t *testing.T, url string, modemEnv ...string) *harness.Stack {
	return start(t, harness.Options{
		Sim:       modemsim.Config{Number: modemNumber, FailRecipient: failNumber, StoreCapacity: 10},
		PollerEnv: []string{"INCOMING_WEBHOOK_URL=" + url, "INCOMING_WEBHOOK_SECRET=" + hookSecret},
		ModemEnv:  append([]string{"MODEM_NUMBER=" + modemNumber}, modemEnv...),
	})
}

func waitStoreEmpty(t *testing.T, st *harness.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.Sim.WaitStore(ctx, "an empty SIM store", func(stored, held int) bool { return stored == 0 && held == 0 }); err != nil {
		t.Fatalf("%v: %d left", err, len(st.Sim.Store()))
	}
}

func TestIncomingSMSAndDeliveryReportsReachTheWebhook(t *testing.T) {
	h, url := newHook(t)
	st := receiveStack(t, url)

	in := []modemsim.Incoming{
		{From: "+40711000001", Text: "ACK"},
		{From: "+40711000002", Text: "Ext {[~|€^\\]} chars"},
		{From: "+40711000003", Text: "Ответ 😀 👍🏽 ok"},
		{From: "+40711000004", Text: strings.Repeat("three-part GSM message. ", 18)[:400]},
		{From: "+40711000005", Text: strings.Repeat("two parts 😀 out of order ", 4), Order: []int{2, 1}, Ref16: true, Ref: 0x4242},
		{From: "+40711000006", Text: "plain"},
	}
	for _, m := range in {
		if _, err := st.Sim.Deliver(m); err != nil {
			t.Fatal(err)
		}
	}
	// Sent SMS: two parts to a good number, one to a number that fails
	// permanently, one to the modem's own number (loopback).
	long := strings.Repeat("Delivery report for both parts. ", 6)
	okID := st.Seed(smsapi.SMS{PhoneNumber: "+40722000111", Message: long, Tenant: "tenant-a", CountryCode: ptr("RO")})
	failID := st.Seed(smsapi.SMS{PhoneNumber: failNumber, Message: "to a dead number", Tenant: "tenant-b", CountryCode: ptr("RO")})
	loopID := st.Seed(smsapi.SMS{PhoneNumber: modemNumber, Message: "loop 42", Tenant: "tenant-a", CountryCode: ptr("RO")})

	evs := h.await(t, 60*time.Second, "every event", func(evs []map[string]any) bool {
		return len(of(evs, "sms.received")) >= len(in)+1 && len(of(evs, "sms.delivery")) >= 3
	})
	got := map[string]map[string]any{}
	for _, e := range of(evs, "sms.received") {
		got[e["from"].(string)+"|"+e["text"].(string)] = e
	}
	for _, m := range in {
		e, ok := got[m.From+"|"+m.Text]
		if !ok {
			t.Errorf("incoming %q from %s not forwarded exactly", short(m.Text), m.From)
			continue
		}
		if e["complete"] != true || e["modem"] != "490154203237518" || e["received_at"] == "" {
			t.Errorf("event %v", e)
		}
	}
	if _, ok := got[modemNumber+"|loop 42"]; !ok {
		t.Errorf("the loopback SMS did not come back: %v", got)
	}
	if len(of(evs, "sms.received")) != len(in)+1 {
		t.Errorf("%d received events, want %d", len(of(evs, "sms.received")), len(in)+1)
	}
	dl := map[string]map[string]any{}
	for _, e := range of(evs, "sms.delivery") {
		if _, dup := dl[e["sms_id"].(string)]; dup {
			t.Errorf("two delivery events for %s", e["sms_id"])
		}
		dl[e["sms_id"].(string)] = e
	}
	check := func(id, tenant, to, status string, parts, delivered float64, reason string) {
		e := dl[strings.ToLower(id)]
		if e == nil {
			e = dl[id]
		}
		if e == nil || e["tenant"] != tenant || e["to"] != to || e["status"] != status || e["parts"] != parts ||
			e["delivered_parts"] != delivered || (reason != "" && e["reason"] != reason) || e["at"] == "" {
			t.Errorf("delivery of %s: %v", id, e)
		}
	}
	check(okID, "tenant-a", "+40722000111", "delivered", 2, 2, "")
	check(failID, "tenant-b", failNumber, "failed", 1, 0, "incompatible destination")
	check(loopID, "tenant-a", modemNumber, "delivered", 1, 1, "")
	waitStoreEmpty(t, st)
	// The gauges follow the next AT+CPMS? after the last delete: another
	// process, so poll its metrics.
	for deadline := time.Now().Add(15 * time.Second); ; {
		metrics := scrape(t, st.ModemHTTP)
		if strings.Contains(metrics, "sms_modem_sim_storage_used 0\n") && strings.Contains(metrics, "sms_modem_sim_storage_total 10\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("storage gauges never showed an empty store of 10:\n%s", grepLines(metrics, "sms_modem_sim_storage"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestReceiveLosesNothingWhenTheWebhookIsDownAndTheModemIsKilled(t *testing.T) {
	h, url := newHook(t)
	st := receiveStack(t, url)

	// The webhook is down for 20 s while messages arrive.
	h.setDown(true)
	downSince := time.Now()
	for i := range 3 {
		if _, err := st.Sim.Deliver(modemsim.Incoming{From: "+40711000010", Text: fmt.Sprintf("while down %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitStoreEmpty(t, st)                              // in the broker, off the SIM, although not forwarded
	time.Sleep(20*time.Second - time.Since(downSince)) // the outage itself, not a synchronisation
	h.mu.Lock()
	refused := h.refused
	h.mu.Unlock()
	if refused < 2 {
		t.Errorf("the webhook was tried %d times while down", refused)
	}
	h.setDown(false)
	h.await(t, 30*time.Second, "the three messages after the outage", func(evs []map[string]any) bool { return len(evs) == 3 })

	// SIGKILL between reading a message (published) and deleting it.
	deletes := countPrefix(st.Sim.Commands(), "AT+CMGD")
	st.Sim.HangOn("AT+CMGD")
	if _, err := st.Sim.Deliver(modemsim.Incoming{From: "+40711000011", Text: "killed before delete"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.Sim.WaitCommand(ctx, "AT+CMGD", deletes+1); err != nil {
		t.Fatal(err)
	}
	if err := st.Modem.Kill(); err != nil {
		t.Fatal(err)
	}
	if len(st.Sim.Store()) != 1 {
		t.Fatalf("store has %d entries; the message should still be on the SIM", len(st.Sim.Store()))
	}
	st.Sim.Unhang()
	if err := st.Modem.Start(); err != nil {
		t.Fatal(err)
	}
	evs := h.await(t, 60*time.Second, "the message read before the kill", func(evs []map[string]any) bool { return len(evs) == 4 })
	if evs[3]["text"] != "killed before delete" {
		t.Errorf("last event %v", evs[3])
	}
	waitStoreEmpty(t, st)
	// Repeats (the handler checks they carry the same id and body) are
	// allowed; another distinct event is not.
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.ids); n != 4 {
		t.Errorf("%d distinct event ids, want 4", n)
	}
}

func countPrefix(cmds []string, prefix string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(strings.ToUpper(c), prefix) {
			n++
		}
	}
	return n
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// metricAtLeast polls the modem's metrics until the sample named (with its
// labels, e.g. `x_count`) reaches min.
func metricAtLeast(t *testing.T, st *harness.Stack, name string, min float64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, l := range strings.Split(scrape(t, st.ModemHTTP), "\n") {
			var v float64
			if rest, ok := strings.CutPrefix(l, name+" "); ok {
				if _, err := fmt.Sscan(rest, &v); err == nil && v >= min {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %v", name, min)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestCanaryRoundTripAndFailure(t *testing.T) {
	h, url := newHook(t)
	st := receiveStack(t, url, "CANARY_INTERVAL=2s", "CANARY_TIMEOUT=3s")
	metricAtLeast(t, st, "sms_modem_canary_roundtrip_seconds_count", 1, 30*time.Second)
	st.Sim.SetLoopback(false)
	metricAtLeast(t, st, "sms_modem_canary_failures_total", 1, 30*time.Second)
	st.Sim.SetLoopback(true)

	// By hand, with the service stopped: it owns the port.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.Modem.Stop(); err != nil {
		t.Fatal(err)
	}
	out, err := st.Modem.Command(ctx, "canary").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "canary came back after") {
		t.Fatalf("sms-modem canary: %v\n%s\nSIM commands: %q", err, out, st.Sim.Commands()[max(0, len(st.Sim.Commands())-30):])
	}
	out, _ = st.Modem.Command(ctx, "diag").CombinedOutput()
	if !strings.Contains(string(out), "Canary        came back after") {
		t.Errorf("diag does not show the canary:\n%s", out)
	}
	// Nothing of it reached the webhook as an incoming SMS, and the SIM is clean.
	h.mu.Lock()
	for _, e := range h.events {
		if e["event"] == "sms.received" {
			t.Errorf("forwarded: %v", e)
		}
	}
	h.mu.Unlock()
	waitStoreEmpty(t, st)
}
