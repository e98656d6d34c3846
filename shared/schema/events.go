package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Events the modem publishes and the poller forwards to
// INCOMING_WEBHOOK_URL. The JSON of an event is the webhook body byte for
// byte, so its fields are an interface: keep them.
const (
	EventsStream   = "SMS_EVENTS"
	EventsSubject  = "sms.events" // events are published on sms.events.<received|delivery>
	EventsFilter   = "sms.events.>"
	EventsConsumer = "webhook"

	EventReceived = "sms.received"
	EventDelivery = "sms.delivery"
)

// Received is an incoming SMS, reassembled.
type Received struct {
	Event      string    `json:"event"` // EventReceived
	ID         string    `json:"id"`
	From       string    `json:"from"`
	Text       string    `json:"text"`
	ReceivedAt time.Time `json:"received_at"` // the SMSC time stamp of the first part
	Parts      int       `json:"parts"`       // parts the message has (its header's total)
	Complete   bool      `json:"complete"`    // false: forwarded after the reassembly timeout with parts missing
	Modem      string    `json:"modem"`       // IMEI
}

// Delivery is the final delivery state of one sent SMS.
type Delivery struct {
	Event          string    `json:"event"` // EventDelivery
	ID             string    `json:"id"`
	SmsID          string    `json:"sms_id"`
	Tenant         string    `json:"tenant"`
	To             string    `json:"to"`
	Status         string    `json:"status"` // DeliveryDelivered or DeliveryFailed
	Parts          int       `json:"parts"`
	DeliveredParts int       `json:"delivered_parts"`
	At             time.Time `json:"at"`               // discharge time of the report that decided it
	Reason         string    `json:"reason,omitempty"` // TP-ST meaning, for failed
}

// Delivery statuses.
const (
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Subject returns the subject the event is published on.
func (e Received) Subject() string { return EventsSubject + ".received" }

// Subject returns the subject the event is published on.
func (e Delivery) Subject() string { return EventsSubject + ".delivery" }

// EventID derives a stable event id from what identifies the event: the
// same input gives the same id after any restart, which is what lets
// JetStream (Nats-Msg-Id) and the webhook receiver (Idempotency-Key) drop
// repeats.
func EventID(prefix string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return prefix + "_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// EventHeader is the minimum every event carries; the poller checks it
// before forwarding the body unchanged.
type EventHeader struct {
	Event string `json:"event"`
	ID    string `json:"id"`
}

// ErrBadEvent marks an event body that cannot be forwarded.
var ErrBadEvent = errors.New("bad event")

// DecodeEventHeader checks that body is a JSON object naming a known event
// and an id of at most 128 printable ASCII characters.
func DecodeEventHeader(body []byte) (EventHeader, error) {
	var h EventHeader
	if err := json.Unmarshal(body, &h); err != nil {
		return h, fmt.Errorf("%w: %w", ErrBadEvent, err)
	}
	if h.Event != EventReceived && h.Event != EventDelivery {
		return h, fmt.Errorf("%w: unknown event %q", ErrBadEvent, h.Event)
	}
	if h.ID == "" || len(h.ID) > 128 {
		return h, fmt.Errorf("%w: id of %d characters", ErrBadEvent, len(h.ID))
	}
	for i := 0; i < len(h.ID); i++ {
		if h.ID[i] <= ' ' || h.ID[i] > '~' {
			return h, fmt.Errorf("%w: id has a control or non-ASCII byte", ErrBadEvent)
		}
	}
	return h, nil
}
