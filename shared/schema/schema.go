// Package schema defines the versioned messages the poller and the modem
// exchange over JetStream, the stream, subject and consumer names they agree
// on, and the upstream SMS status vocabulary.
package schema

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Version is the schema version written into every job and result. Readers
// accept any message whose version they know and reject newer ones loudly.
const Version = 1

// Stream, subject and consumer names. The poller creates every stream and
// consumer; the modem only binds to them.
const (
	JobsStream      = "SMS_JOBS"
	JobsSubject     = "sms.jobs" // jobs are published on sms.jobs.<CC>
	JobsFilter      = "sms.jobs.>"
	JobsConsumer    = "modem"
	ResultsStream   = "SMS_RESULTS"
	ResultsSubject  = "sms.results" // results are published on sms.results.<outcome>
	ResultsFilter   = "sms.results.>"
	ResultsConsumer = "poller"
	// StatusSubject carries the modem's heartbeat (core NATS, not stored):
	// the poller claims work only while a fresh heartbeat says ready.
	StatusSubject = "sms.modem.status"
)

// Status is the upstream SMS status, an integer on the wire.
type Status int

// Upstream statuses (sms-api-contract.md §2.1). The gateway never writes
// Pending or Entrusted.
const (
	StatusPending   Status = 0
	StatusEntrusted Status = 1
	StatusSent      Status = 2
	StatusFailed    Status = 3
	StatusExpired   Status = 4
	StatusError     Status = 5
	StatusUnknown   Status = 6
)

var statusNames = [...]string{"Pending", "Entrusted", "Sent", "Failed", "Expired", "Error", "Unknown"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Final reports whether the status ends the SMS's life at the gateway.
func (s Status) Final() bool {
	switch s {
	case StatusSent, StatusFailed, StatusExpired, StatusError, StatusUnknown:
		return true
	}
	return false
}

// DefaultTTL applies when the SMS has no Ttl of its own (contract §3.2).
const DefaultTTL = 30 * time.Minute

// Job is one claimed SMS on its way to the modem.
type Job struct {
	V           int       `json:"v"`
	ID          string    `json:"id"` // SMS id + "." + claim count; also the Nats-Msg-Id
	SmsID       string    `json:"sms_id"`
	Tenant      string    `json:"tenant"`
	PhoneNumber string    `json:"phone"`
	Message     string    `json:"message"`
	CountryCode string    `json:"country,omitempty"`
	CreatedAt   time.Time `json:"created_at"` // upstream Timestamp
	ExpiresAt   time.Time `json:"expires_at"` // CreatedAt + (Ttl ?? 30 min)
	ClaimedAt   time.Time `json:"claimed_at"`
}

// Expired reports whether the job must not be sent any more at now.
func (j Job) Expired(now time.Time) bool { return !now.Before(j.ExpiresAt) }

// JobID derives the idempotent job id for a claim of an SMS. The upstream
// RetryCount grows on every claim, so a re-claim is a new job while a
// re-publish of the same claim is absorbed by JetStream's dedup window.
func JobID(smsID string, retryCount int) string { return fmt.Sprintf("%s.%d", smsID, retryCount) }

// Result is the modem's verdict on a job.
type Result struct {
	V      int    `json:"v"`
	JobID  string `json:"job_id"`
	SmsID  string `json:"sms_id"`
	Tenant string `json:"tenant"`
	Status Status `json:"status"` // Sent, Failed, Expired or Unknown
	// SentAt is when the last part was accepted by the network (Sent only).
	SentAt time.Time `json:"sent_at,omitzero"`
	// References are the TP-MRs the modem returned for each part, in order.
	References []int `json:"refs,omitempty"`
	Parts      int   `json:"parts,omitempty"`
	// Code is a stable machine-readable reason (see the Code* constants);
	// Reason is for humans.
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Stable result codes.
const (
	CodeInvalidNumber   = "invalid_number"
	CodeEmptyMessage    = "empty_message"
	CodeTooLong         = "too_long"
	CodeExpired         = "expired"
	CodeModemRejected   = "modem_rejected"   // permanent +CMS ERROR
	CodeRetriesExceeded = "retries_exceeded" // transient errors until the budget ran out
	CodeOutcomeUnknown  = "outcome_unknown"  // interrupted mid-send: never resent
	CodeBadJob          = "bad_job"
	CodeMaxDeliveries   = "max_deliveries"
)

// TrackingID renders the part references for the upstream TrackingId field.
func (r Result) TrackingID() string {
	if len(r.References) == 0 {
		return ""
	}
	b := []byte("mr:")
	for i, ref := range r.References {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%d", ref)
	}
	return string(b)
}

// Subject returns the results subject for this result. It is built from
// the status alone so no upstream-controlled text ever becomes a subject token.
func (r Result) Subject() string {
	return ResultsSubject + "." + strings.ToLower(r.Status.String())
}

// JobSubject returns the subject a job for country cc is published on. A
// country code that is not two ASCII letters maps to "XX" for the same reason.
func JobSubject(cc string) string {
	if len(cc) != 2 || !isUpper(cc[0]) || !isUpper(cc[1]) {
		cc = "XX"
	}
	return JobsSubject + "." + cc
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// MsgID is the dedup id for publishing this result.
func (r Result) MsgID() string { return "result." + r.JobID }

// ModemStatus is the modem's heartbeat.
type ModemStatus struct {
	V        int       `json:"v"`
	Ready    bool      `json:"ready"`
	Reason   string    `json:"reason,omitempty"`
	Operator string    `json:"operator,omitempty"`
	Signal   int       `json:"signal,omitempty"` // CSQ rssi 0..31, 99 unknown
	At       time.Time `json:"at"`
	ValidFor Duration  `json:"valid_for"` // the poller trusts it this long
	IMEI     string    `json:"imei,omitempty"`
}

// Duration is a time.Duration that travels as a Go duration string.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Decode parses a job or result and checks its version.
func Decode[T Job | Result | ModemStatus](data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("decode %T: %w", v, err)
	}
	var ver int
	switch x := any(&v).(type) {
	case *Job:
		ver = x.V
	case *Result:
		ver = x.V
	case *ModemStatus:
		ver = x.V
	}
	if ver < 1 || ver > Version {
		return v, fmt.Errorf("decode %T: unsupported schema version %d", v, ver)
	}
	return v, nil
}
