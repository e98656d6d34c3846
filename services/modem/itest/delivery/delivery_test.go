package delivery_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/delivery"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
	"github.com/sensorsreport/smsgw/services/modem/itest/brokertest"
	"github.com/sensorsreport/smsgw/shared/schema"
)

func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	js := brokertest.JetStream(t, brokertest.Start(t, &server.Options{JetStream: true}))
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: schema.EventsStream, Subjects: []string{schema.EventsFilter},
		Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	return js
}

func open(t *testing.T, js jetstream.JetStream, dir string) *delivery.Tracker {
	t.Helper()
	tr, err := delivery.Open(dir, js, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// report builds a status report with the simulator's encoder and decodes
// it with the modem's decoder, as on the wire.
func report(t *testing.T, mr int, to string, st byte, dt time.Time) *pdu.StatusReport {
	t.Helper()
	r, err := pdu.DecodeStatusReport(modemsim.StatusReportPDU(mr, to, t0, dt, st))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func apply(t *testing.T, tr *delivery.Tracker, r *pdu.StatusReport) {
	t.Helper()
	if err := tr.Report(t.Context(), r); err != nil {
		t.Fatal(err)
	}
}

func events(t *testing.T, js jetstream.JetStream) []schema.Delivery {
	t.Helper()
	s, err := js.Stream(t.Context(), schema.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(t.Context())
	var out []schema.Delivery
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var ev schema.Delivery
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func TestMultipartDeliveredOnceAllPartsAre(t *testing.T) {
	js := startJS(t)
	dir := t.TempDir()
	tr := open(t, js, dir)
	tr.Sent("sms-1", "acme", "+40711111111", 1, 2, 10)
	tr.Sent("sms-1", "acme", "+40711111111", 2, 2, 11)
	apply(t, tr, report(t, 11, "+40711111111", 0x00, t0.Add(time.Minute)))
	apply(t, tr, report(t, 10, "+40711111111", 0x21, t0.Add(time.Minute))) // SME busy: still pending
	if n := len(events(t, js)); n != 0 {
		t.Fatalf("%d events while a part is pending", n)
	}
	tr = open(t, js, dir) // restart between reports
	apply(t, tr, report(t, 10, "+40711111111", 0x00, t0.Add(2*time.Minute)))
	evs := events(t, js)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	want := schema.Delivery{Event: "sms.delivery", ID: evs[0].ID, SmsID: "sms-1", Tenant: "acme", To: "+40711111111",
		Status: "delivered", Parts: 2, DeliveredParts: 2, At: t0.Add(2 * time.Minute)}
	if !evs[0].At.Equal(want.At) {
		t.Errorf("at %v, want %v", evs[0].At, want.At)
	}
	evs[0].At = want.At
	if evs[0] != want {
		t.Errorf("event %+v\nwant  %+v", evs[0], want)
	}
}

func TestWrappedReferenceMatchesMostRecentUnmatchedPart(t *testing.T) {
	js := startJS(t)
	tr := open(t, js, t.TempDir())
	// 256 sends later the same MR comes round for the same recipient.
	tr.Sent("old", "acme", "+40711111111", 1, 1, 5)
	time.Sleep(2 * time.Millisecond) // distinct send times; ordering is by them
	tr.Sent("new", "acme", "+40711111111", 1, 1, 5)
	tr.Sent("other", "acme", "+40799999999", 1, 1, 5)
	apply(t, tr, report(t, 5, "+40711111111", 0x41, t0))
	apply(t, tr, report(t, 5, "+40711111111", 0x00, t0))
	evs := events(t, js)
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	if evs[0].SmsID != "new" || evs[0].Status != "failed" || evs[0].Reason != "incompatible destination" || evs[0].DeliveredParts != 0 {
		t.Errorf("first report matched %+v, want the most recent send failed", evs[0])
	}
	if evs[1].SmsID != "old" || evs[1].Status != "delivered" {
		t.Errorf("second report matched %+v", evs[1])
	}
	// A national form of the recipient in the report still matches.
	apply(t, tr, report(t, 5, "0799999999", 0x00, t0))
	if evs = events(t, js); len(evs) != 3 || evs[2].SmsID != "other" {
		t.Errorf("national recipient: %+v", evs)
	}
}

func TestFailedAsSoonAsOnePartFailsAndOnlyOnce(t *testing.T) {
	js := startJS(t)
	tr := open(t, js, t.TempDir())
	for i := 1; i <= 3; i++ {
		tr.Sent("sms-3", "t", "+40722222222", i, 3, 100+i)
	}
	apply(t, tr, report(t, 101, "+40722222222", 0x00, t0))
	apply(t, tr, report(t, 102, "+40722222222", 0x46, t0.Add(time.Hour)))
	apply(t, tr, report(t, 103, "+40722222222", 0x00, t0)) // after the verdict: no second event
	evs := events(t, js)
	if len(evs) != 1 || evs[0].Status != "failed" || evs[0].DeliveredParts != 1 || evs[0].Parts != 3 ||
		evs[0].Reason != "SM validity period expired" || !evs[0].At.Equal(t0.Add(time.Hour)) {
		t.Fatalf("events %+v", evs)
	}
}

func TestReportBeforeTheSendIsRecorded(t *testing.T) {
	js := startJS(t)
	tr := open(t, js, t.TempDir())
	apply(t, tr, report(t, 7, "+40711111111", 0x00, t0)) // faster than the sender's bookkeeping
	delivery.Install(tr)
	defer delivery.Install(nil)
	delivery.Sent("sms-7", "acme", "+40711111111", 1, 1, 7)
	evs := events(t, js)
	if len(evs) != 1 || evs[0].SmsID != "sms-7" || evs[0].Status != "delivered" {
		t.Fatalf("events %+v", evs)
	}
	delivery.Install(nil)
	delivery.Sent("ignored", "acme", "+40711111111", 1, 1, 8) // off: a no-op
}

// records lists the tracker's files.
func records(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "delivery", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// A record is written when a part is sent and when a report comes, and is
// gone once its event is in the broker: two durable writes per single-part
// SMS, and no file for the sweep to read again.
func TestRecordRemovedOncePublished(t *testing.T) {
	js := startJS(t)
	dir := t.TempDir()
	tr := open(t, js, dir)
	tr.Sent("sms-r", "t", "+40733333333", 1, 1, 9)
	if n := len(records(t, dir)); n != 1 {
		t.Fatalf("%d records after the send, want 1", n)
	}
	apply(t, tr, report(t, 9, "+40733333333", 0x00, t0))
	if evs := events(t, js); len(evs) != 1 || evs[0].Status != "delivered" {
		t.Fatalf("events %+v", evs)
	}
	if names := records(t, dir); len(names) != 0 {
		t.Fatalf("records left after the event: %v", names)
	}
}

// After a crash the sweep publishes a final record's event once, even when
// the crash came after the publish and before the removal, and removes a
// record an earlier version kept after publishing without publishing it.
func TestSweepFinishesWhatACrashLeft(t *testing.T) {
	js := startJS(t)
	dir := t.TempDir()
	tr := open(t, js, dir)
	tr.Sent("sms-c", "t", "+40744444444", 1, 1, 11)
	name := records(t, dir)[0]
	var rec map[string]any
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	// The report's save went through, the publish did not.
	rec["final"] = "delivered"
	parts := rec["parts"].([]any)
	parts[0].(map[string]any)["status"] = "delivered"
	final, _ := json.Marshal(rec)
	legacy := map[string]any{"sms_id": "sms-old", "tenant": "t", "to": "+40755555555", "total": 1,
		"parts": []any{map[string]any{"sent": true, "mr": 3, "status": "delivered"}}, "final": "delivered", "published": true}
	old, _ := json.Marshal(legacy)
	sweep := func() {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); tr.Run(ctx, time.Hour) }()
		deadline := time.Now().Add(10 * time.Second)
		for len(records(t, dir)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("records left: %v", records(t, dir))
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
	}
	for range 2 { // the second round: the crash came after the publish
		if err := os.WriteFile(name, final, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "delivery", "legacy.json"), old, 0o640); err != nil {
			t.Fatal(err)
		}
		sweep()
	}
	evs := events(t, js)
	if len(evs) != 1 || evs[0].SmsID != "sms-c" || evs[0].Status != "delivered" {
		t.Fatalf("events %+v, want one delivered for sms-c", evs)
	}
}
