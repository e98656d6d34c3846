package schema

import (
	"encoding/json"
	"testing"
	"time"
)

func TestDecodeChecksTheVersion(t *testing.T) {
	good, _ := json.Marshal(Job{V: Version, ID: "a.1"})
	if _, err := Decode[Job](good); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{`{"v":0}`, `{"v":99}`, `{}`, `not json`} {
		if _, err := Decode[Job]([]byte(raw)); err == nil {
			t.Errorf("accepted %s", raw)
		}
	}
}

func TestSubjectsNeverCarryUpstreamText(t *testing.T) {
	for cc, want := range map[string]string{"RO": "sms.jobs.RO", "ro": "sms.jobs.XX", "R.>": "sms.jobs.XX", "": "sms.jobs.XX", "GBR": "sms.jobs.XX"} {
		if got := JobSubject(cc); got != want {
			t.Errorf("JobSubject(%q) = %q, want %q", cc, got, want)
		}
	}
	if got := (Result{Status: StatusSent, JobID: "x.>"}).Subject(); got != "sms.results.sent" {
		t.Errorf("result subject %q", got)
	}
}

func TestTrackingIDAndExpiry(t *testing.T) {
	if got := (Result{References: []int{3, 4, 255}}).TrackingID(); got != "mr:3,4,255" {
		t.Errorf("TrackingID = %q", got)
	}
	if (Result{}).TrackingID() != "" {
		t.Error("no references must give no TrackingId")
	}
	now := time.Now()
	if !(Job{ExpiresAt: now}).Expired(now) || (Job{ExpiresAt: now.Add(time.Second)}).Expired(now) {
		t.Error("Expired boundary wrong")
	}
	if !StatusSent.Final() || StatusEntrusted.Final() || StatusPending.Final() {
		t.Error("Final wrong")
	}
}

func TestModemStatusRoundTrip(t *testing.T) {
	in := ModemStatus{V: 1, Ready: true, ValidFor: Duration(3 * time.Second), At: time.Unix(1, 0).UTC()}
	b, _ := json.Marshal(in)
	out, err := Decode[ModemStatus](b)
	if err != nil || out.ValidFor != in.ValidFor || !out.Ready {
		t.Fatalf("%+v %v (%s)", out, err, b)
	}
}

func TestJobsConsumerNames(t *testing.T) {
	if got := JobsConsumerFor("MD"); got != "modem-MD" {
		t.Errorf("JobsConsumerFor(MD) = %q", got)
	}
	if got := JobsConsumerFor("m.>"); got != "modem-XX" {
		t.Errorf("JobsConsumerFor(m.>) = %q", got)
	}
	for name, want := range map[string]string{"modem-RO": "RO", "modem-XX": "XX", "modem": "", "modem-ro": "", "modem-ROU": "", "poller": "", "modem-": ""} {
		cc, ok := JobsConsumerCountry(name)
		if cc != want || ok != (want != "") {
			t.Errorf("JobsConsumerCountry(%q) = %q, %v", name, cc, ok)
		}
	}
}
