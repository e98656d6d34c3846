//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// A Romanian-only and a Moldovan-only modem (MODEM_COUNTRIES) on a poller
// claiming RO and MD: each SIM sends only its country's numbers, every SMS
// once. While no ready modem serves MD, the poller claims no MD SMS at
// all; the poller's metrics show each modem's countries.
func TestEachSIMSendsOnlyItsCountry(t *testing.T) {
	o := harness.Options{Countries: []string{"RO", "MD"}, ModemEnv: []string{"MODEM_ID=ro", "MODEM_COUNTRIES=RO"}}
	o.Sim.PartLatency = 50 * time.Millisecond
	st := start(t, o)

	seq := 0
	seed := func(cc, phone string, n int) (ids []string, text map[string]string) {
		text = map[string]string{}
		for range n {
			seq++
			msg := fmt.Sprintf("%s alarm %02d", cc, seq)
			id := st.Seed(smsapi.SMS{PhoneNumber: phone, Message: msg, Tenant: "tenant-a", CountryCode: ptr(cc)})
			ids = append(ids, id)
			text[id] = msg
		}
		return ids, text
	}
	mdIDs, mdText := seed("MD", "+37369000111", 10)
	roIDs, roText := seed("RO", "+40722000111", 10)
	waitFinal(t, st, roIDs, time.Minute)
	// The RO modem sent ten SMS meanwhile, the poller polled many times:
	// no MD SMS was claimed, since no ready modem serves MD.
	for _, id := range mdIDs {
		if m, _ := st.API.Get(id); m.Status != schema.StatusPending {
			t.Fatalf("MD SMS %s is %v with no MD modem, want Pending", id, m.Status)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	md, err := st.AddModem(ctx, "md", modemsim.Config{PartLatency: 50 * time.Millisecond}, "MODEM_COUNTRIES=md", "MODEM_COUNTRY=MD")
	if err != nil {
		t.Fatal(err)
	}
	more, moreText := seed("RO", "+40722000222", 10)
	roIDs = append(roIDs, more...)
	for id, s := range moreText {
		roText[id] = s
	}
	waitFinal(t, st, append(append([]string{}, mdIDs...), roIDs...), 2*time.Minute)

	sims := map[string]*modemsim.Sim{"ro": st.Sim, "md": md.Sim}
	for name, prefix := range map[string]string{"ro": "+40", "md": "+373"} {
		for _, m := range sims[name].Received() {
			if !strings.HasPrefix(m.To, prefix) {
				t.Errorf("the %s SIM sent %q to %s", name, m.Text, m.To)
			}
		}
	}
	perModem, times := received(sims)
	for ids, texts := range map[*[]string]map[string]string{&roIDs: roText, &mdIDs: mdText} {
		for _, id := range *ids {
			if m, _ := st.API.Get(id); m.Status != schema.StatusSent || times[texts[id]] != 1 {
				t.Errorf("%s is %v, received %d times; want Sent once", id, m.Status, times[texts[id]])
			}
		}
	}
	if perModem["ro"] != 20 || perModem["md"] != 10 {
		t.Errorf("sent per modem %v, want ro 20 and md 10", perModem)
	}
	body := pollerMetrics(t, st)
	for _, series := range []string{`sms_poller_modem_up{countries="RO",modem="ro",state="ready"} 1`, `sms_poller_modem_up{countries="MD",modem="md",state="ready"} 1`} {
		if !strings.Contains(body, series) {
			t.Errorf("poller metrics lack %s:\n%s", series, grepLines(body, "modem_up"))
		}
	}
	// sms-poller check lists each modem with its state and countries.
	r := execute(t, st.Poller.Command(ctxT(t, time.Minute), "check"))
	if r.code != 0 || !strings.Contains(r.stdout, "md ready (MD)") || !strings.Contains(r.stdout, "ro ready (RO)") {
		t.Errorf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
