//go:build e2e

// Package e2e runs the real sms-poller and sms-modem binaries against the
// stand-ins and checks what the simulated modem received against what the
// API stand-in recorded. Run with `make e2e` (SMSGW_BIN names the binaries).
package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

func binDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SMSGW_BIN")
	if dir == "" {
		t.Fatal("SMSGW_BIN is not set: run the end-to-end tests with `make e2e`")
	}
	for _, b := range []string{"sms-poller", "sms-modem"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("%s: %v (run make build)", b, err)
		}
	}
	return dir
}

func start(t *testing.T, o harness.Options) *harness.Stack {
	t.Helper()
	o.Bin = binDir(t)
	o.Dir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := harness.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		if t.Failed() {
			for _, name := range []string{"poller.log", "modem.log"} {
				if b, err := os.ReadFile(filepath.Join(o.Dir, name)); err == nil {
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					t.Logf("last lines of %s:\n%s", name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
				}
			}
		}
	})
	return st
}

func ptr[T any](v T) *T { return &v }

type want struct {
	id, text, phone string
	status          schema.Status
}

func waitFinal(t *testing.T, st *harness.Stack, ids []string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := st.WaitFinal(ctx, ids); err != nil {
		t.Fatalf("not all SMS reached a final status: %v; still open: %v", err, st.Pending(ids))
	}
}

// deliveries counts how many times the modem received each text.
func deliveries(st *harness.Stack) map[string]int {
	n := map[string]int{}
	for _, m := range st.Sim.Received() {
		n[m.Text]++
	}
	return n
}

// checkOutcome asserts statuses, exactly-once delivery of every Sent SMS
// (and no delivery of the others), the Sent fields, and a clean API log.
func checkOutcome(t *testing.T, st *harness.Stack, ws []want, allowUnknown map[string]bool) {
	t.Helper()
	got := deliveries(st)
	for _, w := range ws {
		m, ok := st.API.Get(w.id)
		if !ok {
			t.Fatalf("%s vanished", w.id)
		}
		switch {
		case m.Status == schema.StatusUnknown && allowUnknown != nil:
			if got[w.text] > 1 {
				t.Errorf("%s: Unknown but delivered %d times", w.id, got[w.text])
			}
			continue
		case m.Status != w.status:
			t.Errorf("%s (%q): status %v, want %v", w.id, short(w.text), m.Status, w.status)
		}
		if w.status == schema.StatusSent {
			if got[w.text] != 1 {
				t.Errorf("%s (%q): delivered %d times, want exactly once", w.id, short(w.text), got[w.text])
			}
			if m.SentAt == nil || m.TrackingID == nil || !strings.HasPrefix(*m.TrackingID, "mr:") {
				t.Errorf("%s: Sent without SentAt/TrackingId: %+v", w.id, m)
			}
		} else if got[w.text] != 0 {
			t.Errorf("%s (%q): status %v but the modem received it %d times", w.id, short(w.text), m.Status, got[w.text])
		}
	}
	if ms := st.API.Mistakes(); len(ms) > 0 {
		t.Errorf("the API stand-in recorded client mistakes: %v", ms)
	}
}

func short(s string) string {
	if r := []rune(s); len(r) > 30 {
		return string(r[:30]) + "…"
	}
	return s
}

var phones = map[string][]string{
	"RO": {"+40722000111", "+40722000222", "0722 000 333", "+40 745 123 456"},
	"GB": {"+447911123456", "+447400123456"},
}

// mixedText returns a unique text of a kind chosen by i: GSM, long GSM,
// UCS-2, emoji, extension characters.
func mixedText(i int) string {
	switch i % 5 {
	case 0:
		return fmt.Sprintf("Alarm %d: door sensor opened", i)
	case 1:
		return fmt.Sprintf("Alarm %d: ", i) + strings.Repeat("freezer temperature above threshold; ", 6)
	case 2:
		return fmt.Sprintf("Alarmă %d: temperatura în camera a depășit pragul de 30 °C", i)
	case 3:
		return fmt.Sprintf("Alarm %d resolved ✅ 🌡️ back to normal", i)
	default:
		return fmt.Sprintf("Alarm %d: cost {approx} €5 [per] day ~ see |log| ^", i)
	}
}

func seedMixed(st *harness.Stack, n int, prefix string) []want {
	var ws []want
	for i := 0; i < n; i++ {
		cc := []string{"RO", "GB"}[i%2]
		phone := phones[cc][i%len(phones[cc])]
		text := prefix + mixedText(i)
		tenant := []string{"tenant-a", "tenant-b"}[(i/2)%2]
		id := st.Seed(smsapi.SMS{PhoneNumber: phone, Message: text, Tenant: tenant, CountryCode: ptr(cc), MessageType: ptr("Alarm")})
		ws = append(ws, want{id: id, text: text, phone: phone, status: schema.StatusSent})
	}
	return ws
}

func ids(ws []want) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.id
	}
	return out
}

func TestMixedTrafficTwoTenantsTwoCountries(t *testing.T) {
	st := start(t, harness.Options{Countries: []string{"RO", "GB"}, PollInterval: 200 * time.Millisecond})
	ws := seedMixed(st, 50, "")
	waitFinal(t, st, ids(ws), 3*time.Minute)
	checkOutcome(t, st, ws, nil)
	for _, r := range st.API.Requests() {
		if !r.Authorized {
			t.Errorf("API request without a valid bearer token: %s %s", r.Method, r.Path)
			break
		}
	}
	// The simulated network saw the exact text and number of parts.
	for _, m := range st.Sim.Received() {
		if m.Parts < 1 || len(m.Refs) != m.Parts {
			t.Errorf("message %q: %d parts but %d references", short(m.Text), m.Parts, len(m.Refs))
		}
	}
}

func TestBadInputAndStaleSMSNeverBlockTheQueue(t *testing.T) {
	st := start(t, harness.Options{PollInterval: 200 * time.Millisecond})
	huge := strings.Repeat("x", 153*10+1) // 11 parts: over the limit
	var ws []want
	add := func(phone, text string, status schema.Status, ttl *int, age time.Duration) {
		id := st.Seed(smsapi.SMS{PhoneNumber: phone, Message: text, Tenant: "tenant-a", TTL: ttl, Timestamp: time.Now().Add(-age), CountryCode: ptr("RO")})
		ws = append(ws, want{id: id, text: text, phone: phone, status: status})
	}
	add("not-a-number", "bad number", schema.StatusFailed, nil, 0)
	add("+40722000111", "good one behind a bad number", schema.StatusSent, nil, 0)
	add("+4072", "too short a number", schema.StatusFailed, nil, 0)
	add("+40722000111", "", schema.StatusFailed, nil, 0)
	add("+40722000111", huge, schema.StatusFailed, nil, 0)
	add("+40722000111", strings.Repeat("€", 40_000), schema.StatusFailed, nil, 0) // a job over 64 KiB
	add("+40722000111", "stale: ttl passed an hour ago", schema.StatusExpired, ptr(5), time.Hour)
	add("+40722000111", "stale alarm (30 min default ttl)", schema.StatusExpired, nil, 31*time.Minute)
	add("+40722000111", "\x1a\x1b AT+CMGS=1\r\nhostile bytes\x00 ok", schema.StatusSent, nil, 0)
	add("+40722000222", "the last good one", schema.StatusSent, nil, 0)
	waitFinal(t, st, ids(ws), 2*time.Minute)
	checkOutcome(t, st, ws, nil)
}

// TestCrashSafety kills the modem at random moments at least 10 times and
// the poller at least 5 times while 100 SMS flow; afterwards none is lost,
// none delivered twice, and Unknown appears only where a kill hit a send.
func TestCrashSafety(t *testing.T) {
	st := start(t, harness.Options{
		Countries: []string{"RO", "GB"}, PollInterval: 200 * time.Millisecond, AckWait: 3 * time.Second,
		Sim: modemsim.Config{PartLatency: 60 * time.Millisecond},
	})
	ws := seedMixed(st, 100, "crash ")
	all := ids(ws)
	rng := rand.New(rand.NewPCG(1, 2))
	modemKills, pollerKills := 0, 0
	for modemKills < 10 || pollerKills < 5 {
		time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond) // random kill moments, not synchronisation
		if len(st.Pending(all)) == 0 {
			break
		}
		p, name := st.Modem, "modem"
		if pollerKills < 5 && (modemKills >= 10 || rng.IntN(3) == 0) {
			p, name = st.Poller, "poller"
		}
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		if name == "modem" {
			modemKills++
		} else {
			pollerKills++
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("killed the modem %d times and the poller %d times", modemKills, pollerKills)
	if modemKills < 10 || pollerKills < 5 {
		t.Fatalf("all SMS finished before enough kills (modem %d, poller %d): make the run longer", modemKills, pollerKills)
	}
	waitFinal(t, st, all, 4*time.Minute)
	checkOutcome(t, st, ws, map[string]bool{})
	unknown := 0
	for _, id := range all {
		if m, _ := st.API.Get(id); m.Status == schema.StatusUnknown {
			unknown++
		}
	}
	if unknown > modemKills {
		t.Errorf("%d SMS are Unknown but the modem was killed only %d times: Unknown must come only from a kill mid-send", unknown, modemKills)
	}
	for _, id := range all {
		if m, _ := st.API.Get(id); m.Status == schema.StatusPending || m.Status == schema.StatusEntrusted {
			t.Errorf("%s left %v", id, m.Status)
		}
	}
	t.Logf("%d of %d SMS Unknown", unknown, len(all))
}

func TestOutages(t *testing.T) {
	st := start(t, harness.Options{
		Countries: []string{"RO", "GB"}, PollInterval: 200 * time.Millisecond, AckWait: 5 * time.Second,
		AccessTTL: 5 * time.Second, RefreshTTL: 10 * time.Second,
		Sim: modemsim.Config{PartLatency: 50 * time.Millisecond},
	})
	outage := 30 * time.Second
	if testing.Short() {
		outage = 5 * time.Second
	}
	var ws []want
	round := func(name string, begin, end func()) {
		t.Helper()
		batch := seedMixed(st, 4, name+" before ")
		waitFinal(t, st, ids(batch), time.Minute)
		begin()
		during := seedMixed(st, 6, name+" during ")
		time.Sleep(outage) // the outage itself: its length is what is under test
		end()
		waitFinal(t, st, ids(during), 2*time.Minute)
		ws = append(append(ws, batch...), during...)
	}
	round("api", func() { st.API.SetDown(true) }, func() { st.API.SetDown(false) })
	round("oidc", func() { st.OIDC.SetDown(true) }, func() { st.OIDC.SetDown(false) })
	round("unplug", func() {
		if err := st.Sim.Unplug(); err != nil {
			t.Fatal(err)
		}
	}, func() {
		if err := st.Sim.Replug(); err != nil {
			t.Fatal(err)
		}
	})
	checkOutcome(t, st, ws, nil)
}
