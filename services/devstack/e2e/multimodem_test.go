//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// partLatency is each simulated modem's network time per SMS part: long
// enough that the modems, not the poller, bound the throughput.
const partLatency = 300 * time.Millisecond

// threeModems starts the stack's modem and two more (m2, m3), all with
// partLatency per part.
func threeModems(t *testing.T, o harness.Options) (*harness.Stack, map[string]*modemsim.Sim) {
	t.Helper()
	o.Sim.PartLatency = partLatency
	st := start(t, o)
	sims := map[string]*modemsim.Sim{"m1": st.Sim}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, id := range []string{"m2", "m3"} {
		m, err := st.AddModem(ctx, id, modemsim.Config{PartLatency: partLatency})
		if err != nil {
			t.Fatalf("modem %s: %v", id, err)
		}
		sims[id] = m.Sim
	}
	return st, sims
}

// seedLoad queues n single-part SMS with distinct texts.
func seedLoad(st *harness.Stack, n int, prefix string) (ids []string, text map[string]string) {
	text = map[string]string{}
	for i := range n {
		msg := fmt.Sprintf("%s %03d", prefix, i)
		id := st.Seed(smsapi.SMS{PhoneNumber: "+40722000111", Message: msg, Tenant: "tenant-a", CountryCode: ptr("RO")})
		ids = append(ids, id)
		text[id] = msg
	}
	return ids, text
}

// received counts every text each simulator received, over all of them.
func received(sims map[string]*modemsim.Sim) (perModem map[string]int, times map[string]int) {
	perModem, times = map[string]int{}, map[string]int{}
	for id, sim := range sims {
		for _, m := range sim.Received() {
			perModem[id]++
			times[m.Text]++
		}
	}
	return perModem, times
}

// Three modems on one poller share 90 SMS: each sends a fair share, every
// SMS exactly once. (make bench measures the speed-up; a share near a
// third each is what makes the run about three times faster.)
func TestThreeModemsShareTheLoad(t *testing.T) {
	st, sims := threeModems(t, harness.Options{})
	began := time.Now()
	ids, text := seedLoad(st, 90, "share")
	waitFinal(t, st, ids, 3*time.Minute)
	t.Logf("90 SMS on 3 modems in %s", time.Since(began).Round(time.Millisecond))

	perModem, times := received(sims)
	for _, id := range ids {
		m, _ := st.API.Get(id)
		if m.Status != schema.StatusSent {
			t.Errorf("%s is %v, want Sent", id, m.Status)
		}
		if n := times[text[id]]; n != 1 {
			t.Errorf("%q received %d times, want once", text[id], n)
		}
	}
	for id, n := range perModem {
		// A fair share of 30 each; the poller queues MAX_QUEUED_JOBS per
		// ready modem, so none can run far ahead of the others.
		if n < 20 || n > 40 {
			t.Errorf("modem %s sent %d of 90, want a fair share (20..40): %v", id, n, perModem)
		}
	}
	if len(perModem) != 3 {
		t.Errorf("modems that sent: %v, want all three", perModem)
	}
}

// One of three modems is SIGKILLed mid-run and not restarted. Every SMS
// still ends final, none reaches a phone twice, at most one (the one it
// may have been sending) is Unknown, and the job it held comes back long
// before JOB_ACK_WAIT (two minutes here): the poller hands it back when
// the heartbeat stops.
func TestKilledModemFailsOverWithoutDuplicates(t *testing.T) {
	st, sims := threeModems(t, harness.Options{AckWait: 2 * time.Minute})
	ids, text := seedLoad(st, 60, "failover")
	var victim *harness.ExtraModem
	for _, m := range st.Modems {
		if m.ID == "m2" {
			victim = m
		}
	}
	// Killed while it holds a job (sms_modem_job_in_progress 1), after it
	// sent a few.
	deadline := time.Now().Add(time.Minute)
	for len(victim.Sim.Received()) < 3 || !strings.Contains(httpGet(t, victim.HTTP+"/metrics"), "\nsms_modem_job_in_progress 1\n") {
		if time.Now().After(deadline) {
			t.Fatal("m2 never got going")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := victim.Proc.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, st, ids, 100*time.Second) // < JOB_ACK_WAIT
	// The hand-back comes when m2's last heartbeat runs out (30 s). Every SMS
	// can be final before that: m2 may have been killed after its result
	// was in but before its ack, and then the job it held comes back to m1,
	// which finds it attempted elsewhere; that Unknown must not replace Sent
	// (TestUnknownAfterReportIsRefused in the dispatcher covers that).
	released := `sms_poller_held_jobs_released_total{outcome="nak"} 1`
	deadline = time.Now().Add(time.Minute)
	for body := ""; !strings.Contains(body, released); body = httpGet(t, st.PollerHTTP+"/metrics") {
		if time.Now().After(deadline) {
			t.Fatalf("the poller did not hand back the killed modem's job:\n%s", grepLines(body, "held_jobs"))
		}
		time.Sleep(100 * time.Millisecond)
	}

	_, times := received(sims)
	unknown := 0
	for _, id := range ids {
		m, _ := st.API.Get(id)
		n := times[text[id]]
		switch {
		case m.Status == schema.StatusSent && n == 1:
		case m.Status == schema.StatusUnknown && n <= 1:
			unknown++
		default:
			t.Errorf("%s is %v and reached the phone %d times", id, m.Status, n)
		}
	}
	if unknown > 1 {
		t.Errorf("%d SMS Unknown, want at most one", unknown)
	}
}

// A modem with MODEM_RATE_LIMIT=3/m never sends more than three parts in
// any 60 seconds, the other two carry the rest, and the poller shows it
// limited with no headroom.
func TestRateLimitedModemKeepsItsLimit(t *testing.T) {
	o := harness.Options{}
	o.Sim.PartLatency = partLatency
	st := start(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sims := map[string]*modemsim.Sim{"m1": st.Sim}
	for _, add := range []struct{ id, limit string }{{"slow", "3/m"}, {"m3", ""}} {
		m, err := st.AddModem(ctx, add.id, modemsim.Config{PartLatency: partLatency}, "MODEM_RATE_LIMIT="+add.limit)
		if err != nil {
			t.Fatalf("modem %s: %v", add.id, err)
		}
		sims[add.id] = m.Sim
	}
	ids, text := seedLoad(st, 40, "limited")
	waitFinal(t, st, ids, 2*time.Minute)

	perModem, times := received(sims)
	for _, id := range ids {
		if m, _ := st.API.Get(id); m.Status != schema.StatusSent || times[text[id]] != 1 {
			t.Errorf("%s is %v, received %d times", id, m.Status, times[text[id]])
		}
	}
	slow := sims["slow"].Received()
	if len(slow) == 0 {
		t.Errorf("the limited modem sent nothing: %v", perModem)
	}
	for i := range slow {
		n := 0
		for _, m := range slow[i:] {
			if m.At.Sub(slow[i].At) < time.Minute {
				n++
			}
		}
		if n > 3 {
			t.Fatalf("the 3/m modem sent %d parts within a minute from %v", n, slow[i].At)
		}
	}
	if perModem["m1"]+perModem["m3"] < 40-3 {
		t.Errorf("the unlimited modems carried %d, want the rest: %v", perModem["m1"]+perModem["m3"], perModem)
	}
	// The poller sees it limited with no headroom left in its window.
	deadline := time.Now().Add(30 * time.Second)
	for {
		body := pollerMetrics(t, st)
		if strings.Contains(body, `sms_poller_modem_up{countries="",modem="slow",state="limited"} 0`) &&
			strings.Contains(body, `sms_poller_modem_rate_headroom{modem="slow",window="3/m"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poller never showed the limited modem:\n%s", grepLines(body, "modem"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func pollerMetrics(t *testing.T, st *harness.Stack) string {
	t.Helper()
	return httpGet(t, st.PollerHTTP+"/metrics")
}

// httpGet returns the body at http://addrPath.
func httpGet(t *testing.T, addrPath string) string {
	t.Helper()
	resp, err := http.Get("http://" + addrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
