package schema

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEventJSONIsTheWebhookInterface(t *testing.T) {
	r := Received{Event: EventReceived, ID: "rcv_1", From: "+40711111111", Text: "ACK",
		ReceivedAt: time.Date(2026, 12, 1, 9, 30, 15, 0, time.FixedZone("", 7200)), Parts: 3, Complete: true, Modem: "490154203237518"}
	b, _ := json.Marshal(r)
	want := `{"event":"sms.received","id":"rcv_1","from":"+40711111111","text":"ACK","received_at":"2026-12-01T09:30:15+02:00","parts":3,"complete":true,"modem":"490154203237518"}`
	if string(b) != want {
		t.Errorf("received\n got %s\nwant %s", b, want)
	}
	d := Delivery{Event: EventDelivery, ID: "dlv_1", SmsID: "42", Tenant: "acme", To: "+40722222222", Status: DeliveryDelivered,
		Parts: 2, DeliveredParts: 2, At: time.Date(2026, 12, 1, 9, 31, 0, 0, time.UTC)}
	b, _ = json.Marshal(d)
	want = `{"event":"sms.delivery","id":"dlv_1","sms_id":"42","tenant":"acme","to":"+40722222222","status":"delivered","parts":2,"delivered_parts":2,"at":"2026-12-01T09:31:00Z"}`
	if string(b) != want {
		t.Errorf("delivery\n got %s\nwant %s", b, want)
	}
	if r.Subject() != "sms.events.received" || d.Subject() != "sms.events.delivery" {
		t.Error("subjects")
	}
}

func TestEventIDIsStableAndUnambiguous(t *testing.T) {
	// A known answer: the id must never change between releases, or a
	// repeat after an upgrade would reach the webhook as a new event.
	if got := EventID("rcv", "a", "b"); got != "rcv_d3bfd0a218bb20b3c8a571e4fff25d38" {
		t.Fatalf("EventID = %s, want %s", got, "rcv_d3bfd0a218bb20b3c8a571e4fff25d38")
	}
	if EventID("rcv", "ab", "c") == EventID("rcv", "a", "bc") {
		t.Fatal("field boundaries are ambiguous")
	}
}

func TestDecodeEventHeader(t *testing.T) {
	for body, ok := range map[string]bool{
		`{"event":"sms.received","id":"rcv_1"}`:                                 true,
		`{"event":"sms.delivery","id":"dlv_1"}`:                                 true,
		`{"event":"sms.other","id":"x"}`:                                        false,
		`{"event":"sms.received","id":""}`:                                      false,
		`{"event":"sms.received","id":"a\nb"}`:                                  false,
		`{"event":"sms.received","id":"é"}`:                                     false,
		`{"event":"sms.received","id":` + `"` + strings.Repeat("a", 129) + `"}`: false,
		`[]`:       false,
		`not json`: false,
		``:         false,
	} {
		_, err := DecodeEventHeader([]byte(body))
		if ok != (err == nil) || (err != nil && !errors.Is(err, ErrBadEvent)) {
			t.Errorf("%q: %v", body, err)
		}
	}
}

func FuzzDecodeEventHeader(f *testing.F) {
	f.Add([]byte(`{"event":"sms.received","id":"rcv_1"}`))
	f.Add([]byte(`{"event":"sms.delivery","id":"\u0000"}`))
	f.Add([]byte(`{"id":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeEventHeader(b)
		if err != nil {
			return
		}
		// Whatever passes is safe as an HTTP header value.
		for i := 0; i < len(h.ID); i++ {
			if h.ID[i] <= ' ' || h.ID[i] > '~' {
				t.Fatalf("id %q passed", h.ID)
			}
		}
		if h.Event != EventReceived && h.Event != EventDelivery {
			t.Fatalf("event %q passed", h.Event)
		}
	})
}
