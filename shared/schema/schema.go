// Package schema defines the versioned messages the poller and the modem
// exchange over JetStream, the stream, subject and consumer names they agree
// on, and the upstream SMS status vocabulary.
package schema

import (
	"encoding/hex"
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
	JobsStream  = "SMS_JOBS"
	JobsSubject = "sms.jobs" // jobs are published on sms.jobs.<CC>
	JobsFilter  = "sms.jobs.>"
	// JobsConsumerPrefix names the jobs consumers: one per country,
	// modem-<CC> filtering sms.jobs.<CC> (see JobsConsumerFor). A modem
	// pulls from the consumers of the countries it serves.
	JobsConsumerPrefix = "modem-"
	ResultsStream      = "SMS_RESULTS"
	ResultsSubject     = "sms.results" // results are published on sms.results.<outcome>
	ResultsFilter      = "sms.results.>"
	ResultsConsumer    = "poller"
	// WakeSubject prefixes the core NATS note published on
	// sms.wake.<CC> whenever a job for CC may be waiting (queued, or handed
	// back): a modem that pulls from several jobs consumers waits on it
	// instead of holding a pull open on each.
	WakeSubject = "sms.wake"
	WakeFilter  = WakeSubject + ".*"
	// StatusSubject prefixes each modem's heartbeat (core NATS, not
	// stored), published on sms.modem.status.<MODEM_ID>: the poller claims
	// work only while a fresh heartbeat of some modem says ready.
	StatusSubject = "sms.modem.status"
	StatusFilter  = StatusSubject + ".*"
	// ClockSubject answers requests for the poller's trusted time (a
	// ClockReading), the modem's reference for every TTL decision.
	ClockSubject = "sms.clock"
	// DeadStream keeps results that could not be reported because the SMS
	// provably no longer exists upstream (or can never be addressed), for an
	// operator to inspect. Nothing in it is retried.
	DeadStream  = "SMS_DEAD"
	DeadSubject = "sms.dead"
	// ClaimsBucket is the poller's record of every SMS it claimed: results
	// are accepted only for jobs listed there, and a restart re-queues the
	// claims that never got a result.
	ClaimsBucket = "SMS_CLAIMS"
	// AttemptsBucket holds, per SMS (tenant and id), the MODEM_ID of the
	// modem that is about to hand it to its hardware: no other modem sends
	// it after that.
	AttemptsBucket = "SMS_ATTEMPTS"
)

// MaxMessageBytes bounds one job or result on the broker. A claim whose job
// would not fit is reported Failed at once instead of being queued.
const MaxMessageBytes = 64 << 10

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

// Job is one claimed SMS on its way to the modem. Every time in it is on
// the SMS API's clock (contract times, checked against a trusted clock),
// never on the Pi's wall clock.
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
// RetryCount grows on every claim, so a re-claim is a new job (and gets its
// own result) while a re-publish of the same claim is absorbed by
// JetStream's dedup window. Whether an SMS may be sent is decided on
// SMSKey, across all its claims.
func JobID(smsID string, retryCount int) string { return fmt.Sprintf("%s.%d", smsID, retryCount) }

// SMSKey identifies an SMS across every claim: the API's Id within its
// tenant. It is an opaque string safe as a file name or a KV key.
func SMSKey(tenant, smsID string) string {
	return hex.EncodeToString([]byte(tenant)) + "." + hex.EncodeToString([]byte(smsID))
}

// ClockReading is the poller's answer on ClockSubject.
type ClockReading struct {
	V   int       `json:"v"`
	Now time.Time `json:"now"`
	// Source is "reference" (the SMS API's clock) or "system" (a
	// synchronised wall clock).
	Source string `json:"source"`
	Error  string `json:"error,omitempty"` // set when the poller has no trustworthy time
}

// DeadLetter is a result the poller gave up reporting, with why.
type DeadLetter struct {
	V      int       `json:"v"`
	Result Result    `json:"result"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

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
	// CodePartial: some parts reached the network, a later one did not.
	// The recipient got part of the text, so the SMS is Unknown, not Failed.
	CodePartial = "partially_sent"
)

// Reportable reports whether a modem may report status s for a job.
func Reportable(s Status) bool {
	switch s {
	case StatusSent, StatusFailed, StatusExpired, StatusUnknown:
		return true
	}
	return false
}

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
func JobSubject(cc string) string { return JobsSubject + "." + JobCountry(cc) }

// JobCountry is the country token a job for cc is routed by: cc when it is
// two upper-case ASCII letters, else "XX".
func JobCountry(cc string) string {
	if !ValidCountry(cc) {
		return "XX"
	}
	return cc
}

// ValidCountry reports whether cc is two upper-case ASCII letters.
func ValidCountry(cc string) bool { return len(cc) == 2 && isUpper(cc[0]) && isUpper(cc[1]) }

// JobsConsumerFor names the jobs consumer of country cc (as JobCountry
// routes it), e.g. modem-RO.
func JobsConsumerFor(cc string) string { return JobsConsumerPrefix + JobCountry(cc) }

// WakeSubjectFor is the wake subject of country cc (as JobCountry routes it).
func WakeSubjectFor(cc string) string { return WakeSubject + "." + JobCountry(cc) }

// JobsConsumerCountry returns the country of a jobs consumer's name, and
// false when name is no jobs consumer's.
func JobsConsumerCountry(name string) (string, bool) {
	cc, ok := strings.CutPrefix(name, JobsConsumerPrefix)
	if !ok || !ValidCountry(cc) {
		return "", false
	}
	return cc, true
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// StatusSubjectFor is the subject modem id beats on.
func StatusSubjectFor(id string) string { return StatusSubject + "." + id }

// ValidModemID reports whether id can name a modem on the broker: one
// subject token of letters, digits, '-' and '_', at most 32 long.
func ValidModemID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(isUpper(c) || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// MsgID is the dedup id for publishing this result.
func (r Result) MsgID() string { return "result." + r.JobID }

// ModemStatus is one modem's heartbeat.
type ModemStatus struct {
	V int `json:"v"`
	// ID is the modem's MODEM_ID; Instance is random per process, so two
	// processes beating with the same ID are told apart.
	ID        string   `json:"id"`
	Instance  string   `json:"instance,omitempty"`
	Countries []string `json:"countries,omitempty"` // empty: any country
	// Holding is the ack subject of the job the modem holds now, if any:
	// when its heartbeat stops, the poller hands that job back (a Nak) so
	// another modem takes it at once instead of after JOB_ACK_WAIT. The
	// SMS_ATTEMPTS record tells the next modem whether it may send it.
	Holding string `json:"holding,omitempty"`
	// RateLimit is the use of each MODEM_RATE_LIMIT window; Limited says a
	// window is full, so the modem takes no job (and is not Ready).
	RateLimit []RateWindow `json:"rate_limit,omitempty"`
	Limited   bool         `json:"limited,omitempty"`
	Ready     bool         `json:"ready"`
	Reason    string       `json:"reason,omitempty"`
	Operator  string       `json:"operator,omitempty"`
	Signal    int          `json:"signal,omitempty"` // CSQ rssi 0..31, 99 unknown
	At        time.Time    `json:"at"`
	ValidFor  Duration     `json:"valid_for"` // the poller trusts it this long
	IMEI      string       `json:"imei,omitempty"`
}

// RateWindow is one MODEM_RATE_LIMIT window's use: Used of Max parts in
// the last Window (e.g. "6/m").
type RateWindow struct {
	Window string `json:"window"`
	Used   int    `json:"used"`
	Max    int    `json:"max"`
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
func Decode[T Job | Result | ModemStatus | ClockReading](data []byte) (T, error) {
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
	case *ClockReading:
		ver = x.V
	}
	if ver < 1 || ver > Version {
		return v, fmt.Errorf("decode %T: unsupported schema version %d", v, ver)
	}
	return v, nil
}
