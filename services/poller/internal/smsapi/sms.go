package smsapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// SMS is the upstream SmsModel (contract §2.2). Nullable fields are
// pointers. Keys are PascalCase on the wire; decoding is case-insensitive.
type SMS struct {
	ID          string        `json:"Id"`
	PhoneNumber string        `json:"PhoneNumber"`
	Message     string        `json:"Message"`
	Timestamp   time.Time     `json:"Timestamp"`
	Tenant      string        `json:"Tenant"`
	Status      schema.Status `json:"Status"`
	// StatusMessage is informational only; it says "Invalid status." for
	// Entrusted. Use Status.
	StatusMessage string     `json:"StatusMessage,omitempty"`
	SentAt        *time.Time `json:"SentAt,omitempty"`
	TTL           *int       `json:"Ttl,omitempty"` // minutes
	CountryCode   *string    `json:"CountryCode,omitempty"`
	Provider      *string    `json:"Provider,omitempty"`
	TrackingID    *string    `json:"TrackingId,omitempty"`
	MessageType   *string    `json:"MessageType,omitempty"`
	CustomData    *string    `json:"CustomData,omitempty"`
	RetryCount    int        `json:"RetryCount"`
}

// ExpiresAt is when the SMS must no longer be sent: Timestamp + (Ttl ?? 30
// min). The server may hand out SMS that are already past it (§5.7).
func (s SMS) ExpiresAt() time.Time {
	ttl := schema.DefaultTTL
	if s.TTL != nil {
		ttl = time.Duration(*s.TTL) * time.Minute
	}
	return s.Timestamp.Add(ttl)
}

// UnmarshalJSON accepts the server's dates: 0–7 fractional digits, with Z,
// an offset, or no zone at all (taken as UTC).
func (s *SMS) UnmarshalJSON(b []byte) error {
	type plain SMS
	aux := struct {
		*plain
		Timestamp apiTime  `json:"Timestamp"`
		SentAt    *apiTime `json:"SentAt"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	s.Timestamp = time.Time(aux.Timestamp)
	s.SentAt = nil
	if aux.SentAt != nil {
		t := time.Time(*aux.SentAt)
		s.SentAt = &t
	}
	return nil
}

type apiTime time.Time

func (t *apiTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date: %w", err)
	}
	v, err := parseTime(s)
	if err != nil {
		return err
	}
	*t = apiTime(v)
	return nil
}

// parseTime reads an ISO 8601 date-time as STJ writes it.
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("date %q: want ISO 8601", s)
	}
	return t, nil
}

// formatTime is what the client sends: RFC 3339 in UTC with an upper-case Z.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

var errNoID = errors.New("no Id")

// decodeSMS parses one SmsModel from a 2xx body.
func decodeSMS(body []byte) (*SMS, error) {
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' {
		return nil, fmt.Errorf("%w: want a JSON object", ErrBadResponse)
	}
	var s SMS
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	if s.ID == "" {
		return nil, fmt.Errorf("%w: %w", ErrBadResponse, errNoID)
	}
	return &s, nil
}

// claimKeys reads Id and Tenant from a body that may not decode as an SMS:
// a JSON object whose keys match "Id" and "Tenant" case-insensitively, as
// decoding does, with string values. ok is false without a usable Id (a
// 24-hex-digit ObjectId, the only kind Report accepts). A key present in
// several spellings with different values is unreadable rather than
// guessed at; such a Tenant reads as "".
func claimKeys(body []byte) (id, tenant string, ok bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return "", "", false
	}
	id, _ = foldString(m, "Id")
	if !isObjectID(id) {
		return "", "", false
	}
	tenant, _ = foldString(m, "Tenant")
	return id, tenant, true
}

// foldString returns the one string value under key (any letter case).
func foldString(m map[string]json.RawMessage, key string) (string, bool) {
	var val string
	found := false
	for k, raw := range m {
		if !strings.EqualFold(k, key) {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) != nil || (found && s != val) {
			return "", false
		}
		val, found = s, true
	}
	return val, found
}

// Update is a status report. Only the fields set are sent: Status always,
// SentAt when non-zero, TrackingID when non-empty.
type Update struct {
	Status     schema.Status
	SentAt     time.Time
	TrackingID string
}

// patchBody has exactly the PascalCase keys the server patches (§2.6);
// nothing else is ever sent.
type patchBody struct {
	Status     schema.Status `json:"Status"`
	SentAt     string        `json:"SentAt,omitempty"`
	TrackingID string        `json:"TrackingId,omitempty"`
}

func (u Update) body() patchBody {
	b := patchBody{Status: u.Status, TrackingID: u.TrackingID}
	if !u.SentAt.IsZero() {
		b.SentAt = formatTime(u.SentAt)
	}
	return b
}

type registerBody struct {
	Name                  string   `json:"Name"`
	SupportedCountryCodes []string `json:"SupportedCountryCodes"`
}

type provider struct {
	Name                  string   `json:"Name"`
	SupportedCountryCodes []string `json:"SupportedCountryCodes"`
}
