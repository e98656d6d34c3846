package inbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/inbox"
	"github.com/sensorsreport/smsgw/services/modem/itest/brokertest"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// startJS runs a real nats-server with JetStream and the events stream as
// the poller creates it (dedup window included); noStream leaves it out.
func startJS(t *testing.T, noStream bool) jetstream.JetStream {
	t.Helper()
	js := brokertest.JetStream(t, brokertest.Start(t, &server.Options{JetStream: true}))
	if !noStream {
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: schema.EventsStream, Subjects: []string{schema.EventsFilter},
			Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	return js
}

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newInbox(t *testing.T, js jetstream.JetStream, dir string, clk *clock) *inbox.Inbox {
	t.Helper()
	in, err := inbox.New(inbox.Config{Dir: dir, Timeout: 10 * time.Minute, IMEI: func() string { return "490154203237518" },
		Log: zaptest.NewLogger(t), Now: clk.Now}, js)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// events returns every event in the stream.
func events(t *testing.T, js jetstream.JetStream) []schema.Received {
	t.Helper()
	s, err := js.Stream(t.Context(), schema.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []schema.Received
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var ev schema.Received
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != ev.ID {
			t.Errorf("Nats-Msg-Id %q, event id %q", m.Header.Get(jetstream.MsgIDHeader), ev.ID)
		}
		out = append(out, ev)
	}
	return out
}

func pdus(t *testing.T, in modemsim.Incoming, ref int) [][]byte {
	t.Helper()
	p, err := modemsim.DeliverPDUs(in, ref)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func receive(t *testing.T, in *inbox.Inbox, tpdu []byte) {
	t.Helper()
	if err := in.Receive(t.Context(), tpdu); err != nil {
		t.Fatal(err)
	}
}

var scts = time.Date(2026, 12, 1, 9, 30, 15, 0, time.FixedZone("", 2*3600))

func TestSinglesExactTextAndStableIDs(t *testing.T) {
	js := startJS(t, false)
	clk := &clock{t: time.Now()}
	in := newInbox(t, js, t.TempDir(), clk)
	texts := []string{"ACK", "{[~|€^\\]}", "Привет 😀 👍🏽", "STOP"}
	for _, text := range texts {
		p := pdus(t, modemsim.Incoming{From: "+40711111111", Text: text, SCTS: scts}, 1)
		if len(p) != 1 {
			t.Fatalf("%q: %d parts", text, len(p))
		}
		receive(t, in, p[0])
		receive(t, in, p[0]) // read again after a crash before AT+CMGD: same id, dropped
	}
	evs := events(t, js)
	if len(evs) != len(texts) {
		t.Fatalf("%d events, want %d (repeats must be dropped)", len(evs), len(texts))
	}
	for i, ev := range evs {
		want := schema.Received{Event: "sms.received", ID: ev.ID, From: "+40711111111", Text: texts[i], Parts: 1, Complete: true, Modem: "490154203237518"}
		if !ev.ReceivedAt.Equal(scts) || ev.ReceivedAt.Format(time.RFC3339) != "2026-12-01T09:30:15+02:00" {
			t.Errorf("received_at %v", ev.ReceivedAt)
		}
		ev.ReceivedAt = time.Time{}
		if ev != want || !strings.HasPrefix(ev.ID, "rcv_") {
			t.Errorf("event %+v\nwant  %+v", ev, want)
		}
	}
}

func TestConcatenatedAcrossRestartsInAnyOrder(t *testing.T) {
	js := startJS(t, false)
	clk := &clock{t: time.Now()}
	dir := t.TempDir()
	long := strings.Repeat("Alarm at pump 7 😀 ", 12) // UCS-2, several parts
	p := pdus(t, modemsim.Incoming{From: "+40722222222", Text: long, Ref16: true, SCTS: scts}, 0xBEEF)
	if len(p) < 3 {
		t.Fatalf("%d parts", len(p))
	}
	gsm := strings.Repeat("x{", 100) // GSM 7-bit with extension characters, 8-bit ref
	q := pdus(t, modemsim.Incoming{From: "+40722222222", Text: gsm, SCTS: scts}, 7)

	in := newInbox(t, js, dir, clk)
	receive(t, in, p[2])
	receive(t, in, q[1])
	receive(t, in, p[0])
	receive(t, in, p[0]) // a duplicate part
	if n := len(events(t, js)); n != 0 {
		t.Fatalf("%d events before any message is complete", n)
	}
	in = newInbox(t, js, dir, clk) // restart: partials come from disk
	for _, part := range p[1:] {
		receive(t, in, part)
	}
	receive(t, in, q[0])
	receive(t, in, p[1]) // the last part read again after a crash: no new event
	clk.Add(11 * time.Minute)
	in.Sweep(t.Context()) // ... not even as an "incomplete" one later
	evs := events(t, js)
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	if evs[0].Text != long || evs[0].Parts != len(p) || !evs[0].Complete {
		t.Errorf("UCS-2 message: %+v", evs[0])
	}
	if evs[1].Text != gsm || evs[1].Parts != 2 || !evs[1].Complete {
		t.Errorf("GSM message: %+v", evs[1])
	}
}

func TestPartialForwardedAsIncompleteAfterTimeout(t *testing.T) {
	js := startJS(t, false)
	clk := &clock{t: time.Now()}
	in := newInbox(t, js, t.TempDir(), clk)
	p := pdus(t, modemsim.Incoming{From: "+40733333333", Text: strings.Repeat("abc", 120), SCTS: scts}, 9)
	receive(t, in, p[0])
	receive(t, in, p[2])
	in.Sweep(t.Context())
	if n := len(events(t, js)); n != 0 {
		t.Fatalf("forwarded before the timeout: %d", n)
	}
	clk.Add(10 * time.Minute)
	in.Sweep(t.Context())
	in.Sweep(t.Context()) // once only
	evs := events(t, js)
	if len(evs) != 1 || evs[0].Complete || evs[0].Parts != 3 || evs[0].Text != strings.Repeat("abc", 120)[:153]+strings.Repeat("abc", 120)[306:] {
		t.Fatalf("incomplete event: %+v", evs)
	}
	// The missing part arriving late does not make a second message.
	receive(t, in, p[1])
	clk.Add(11 * time.Minute)
	in.Sweep(t.Context())
	if n := len(events(t, js)); n != 1 {
		t.Errorf("%d events after the late part", n)
	}
}

func TestNotSafeUntilPublishedAndGarbageQuarantined(t *testing.T) {
	js := startJS(t, true) // no stream: every publish fails
	clk := &clock{t: time.Now()}
	dir := t.TempDir()
	in := newInbox(t, js, dir, clk)
	p := pdus(t, modemsim.Incoming{From: "+40711111111", Text: "hi", SCTS: scts}, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := in.Receive(ctx, p[0]); err == nil {
		t.Fatal("Receive returned nil although nothing was published")
	}
	for _, bad := range [][]byte{{}, {0x04}, {0x01, 0x00}, {0x06, 0x01}, []byte("\x04\x0b\x91garbage")} {
		if err := in.Receive(t.Context(), bad); err != nil {
			t.Errorf("%x: %v; garbage must be quarantined, not left to fill the SIM", bad, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "inbox", "invalid", "*.hex"))
	if len(files) != 5 {
		t.Errorf("%d quarantined files, want 5", len(files))
	}
	if _, err := os.Stat(filepath.Join(dir, "inbox", "partial")); errors.Is(err, os.ErrNotExist) {
		t.Error("no partial directory")
	}
}
