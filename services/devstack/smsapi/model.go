package smsapi

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// SMS is one stored record, shaped like the upstream SmsModel (contract
// §2.2). Nullable upstream fields are pointers; nil renders as an absent key.
// Values handed out are copies: the server never writes through the
// pointers, it replaces them.
type SMS struct {
	ID          string        `json:"Id"`
	PhoneNumber string        `json:"PhoneNumber"`
	Message     string        `json:"Message"`
	Timestamp   time.Time     `json:"Timestamp"`
	Tenant      string        `json:"Tenant"`
	Status      schema.Status `json:"Status"`
	SentAt      *time.Time    `json:"SentAt,omitempty"`
	TTL         *int          `json:"Ttl,omitempty"` // minutes; nil means Options.DefaultTTL
	CountryCode *string       `json:"CountryCode,omitempty"`
	Provider    *string       `json:"Provider,omitempty"`
	TrackingID  *string       `json:"TrackingId,omitempty"`
	MessageType *string       `json:"MessageType,omitempty"`
	CustomData  *string       `json:"CustomData,omitempty"`
	RetryCount  int           `json:"RetryCount"`
}

// ProviderStatus is the upstream ProviderStatusEnum.
type ProviderStatus int

// Provider statuses (contract §2.1).
const (
	ProviderUnavailable ProviderStatus = 0
	ProviderActive      ProviderStatus = 1
)

// Provider is a registered (or auto-created) SMS provider (contract §2.3).
type Provider struct {
	ID                    string         `json:"Id"`
	Name                  string         `json:"Name"`
	LastSeen              time.Time      `json:"LastSeen"`
	Status                ProviderStatus `json:"Status"`
	SupportedCountryCodes []string       `json:"SupportedCountryCodes"`
}

// Transition is one status change of an SMS. Creation is recorded as a
// transition whose From equals To.
type Transition struct {
	At   time.Time
	From schema.Status
	To   schema.Status
	// By names the cause: "post", "seed", "next:<provider>", "patch", "put",
	// "task:trust-timeout", "task:max-retries" or "task:ttl".
	By string
}

// Request is one HTTP request the API answered, for assertions and the demo.
type Request struct {
	Method string
	Path   string
	Status int // 0 when the connection was reset (outage with ResetWhenDown)
	Tenant string
	// Authorized is true only when Options.Verify is set and accepted the
	// bearer token. Unauthorized requests are served all the same, like the
	// real API, which enforces no auth (contract §1.2).
	Authorized bool
	At         time.Time
}

var statusMessages = map[schema.Status]string{
	schema.StatusPending: "The SMS is pending sending.",
	schema.StatusSent:    "The SMS was successfully sent.",
	schema.StatusFailed:  "The SMS failed to send.",
	schema.StatusExpired: "The SMS delivery has expired.",
	schema.StatusError:   "An error occurred while sending the SMS.",
	schema.StatusUnknown: "The status of the SMS is unknown.",
}

// statusMessage mirrors SmsStatus.cs, whose switch forgot Entrusted.
func statusMessage(s schema.Status) string {
	if m, ok := statusMessages[s]; ok {
		return m
	}
	return "Invalid status."
}

// countryCode mirrors PhoneNumberHelper: the region of a valid
// international number, otherwise "RO" (contract §3.6).
func countryCode(phone string) string {
	n, err := phonenumbers.Parse(phone, "")
	if err != nil || !phonenumbers.IsValidNumber(n) {
		return "RO"
	}
	if r := phonenumbers.GetRegionCodeForNumber(n); r != "" {
		return r
	}
	return "RO"
}

var (
	oidCounter atomic.Uint32
	oidProcess = func() [5]byte {
		var b [5]byte
		_, _ = rand.Read(b[:])
		return b
	}()
)

// newObjectID returns a 24-hex Mongo ObjectId: seconds, process bytes, counter.
func newObjectID() string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(time.Now().Unix()))
	copy(b[4:9], oidProcess[:])
	c := oidCounter.Add(1)
	b[9], b[10], b[11] = byte(c>>16), byte(c>>8), byte(c)
	return hex.EncodeToString(b[:])
}

// isObjectID reports whether id parses as an ObjectId; anything else makes
// the Mongo driver throw a FormatException upstream (a 500).
func isObjectID(id string) bool {
	if len(id) != 24 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// zoneKind is .NET's DateTimeKind, which decides how a date is written back.
type zoneKind int

const (
	kindUTC zoneKind = iota
	kindUnspecified
	kindLocal
)

// netTime is a DateTime as System.Text.Json sees it.
type netTime struct {
	t    time.Time
	kind zoneKind
}

func utc(t time.Time) netTime { return netTime{t: t.UTC(), kind: kindUTC} }

// format writes STJ's round-trip form: up to 7 fractional digits with
// trailing zeros trimmed, then Z, nothing, or the container's offset (UTC).
func (n netTime) format() string {
	s := n.t.UTC().Format("2006-01-02T15:04:05.9999999")
	switch n.kind {
	case kindUTC:
		return s + "Z"
	case kindLocal:
		return s + "+00:00"
	}
	return s
}

// stored is the value Mongo keeps: UTC, millisecond precision. Zone-less
// input is taken as UTC, the container's zone.
func (n netTime) stored() time.Time { return n.t.UTC().Truncate(time.Millisecond) }

// parseNetTime accepts the ISO 8601 profile STJ reads: a date, optionally
// T hh:mm[:ss[.fraction up to 16 digits]], then Z, ±hh:mm or ±hh. Only the
// first 7 fractional digits count.
func parseNetTime(s string) (netTime, bool) {
	date, rest, hasTime := strings.Cut(s, "T")
	d, err := time.Parse("2006-01-02", date)
	if err != nil || len(date) != 10 {
		return netTime{}, false
	}
	if !hasTime {
		return netTime{t: d, kind: kindUnspecified}, true
	}
	kind := kindUnspecified
	offset := 0
	switch i := strings.IndexAny(rest, "Z+-"); {
	case i < 0:
	case rest[i] == 'Z':
		if i != len(rest)-1 {
			return netTime{}, false
		}
		kind, rest = kindUTC, rest[:i]
	default:
		zone := rest[i+1:]
		hh, mm, ok := strings.Cut(zone, ":")
		if !ok {
			mm = "00"
		}
		h, okH := digits(hh, 2)
		m, okM := digits(mm, 2)
		if !okH || !okM || h > 14 || m > 59 {
			return netTime{}, false
		}
		offset = (h*60 + m) * 60
		if rest[i] == '-' {
			offset = -offset
		}
		kind, rest = kindLocal, rest[:i]
	}
	clock, frac, hasFrac := strings.Cut(rest, ".")
	layout := "15:04"
	if len(clock) == 8 {
		layout = "15:04:05"
	} else if hasFrac {
		return netTime{}, false
	}
	c, err := time.Parse(layout, clock)
	if err != nil || len(clock) != len(layout) {
		return netTime{}, false
	}
	ns := 0
	if hasFrac {
		if len(frac) == 0 || len(frac) > 16 {
			return netTime{}, false
		}
		if _, ok := digits(frac, len(frac)); !ok {
			return netTime{}, false
		}
		f := (frac + "0000000")[:7]
		v, _ := digits(f, 7)
		ns = v * 100
	}
	t := time.Date(d.Year(), d.Month(), d.Day(), c.Hour(), c.Minute(), c.Second(), ns, time.UTC)
	t = t.Add(-time.Duration(offset) * time.Second)
	return netTime{t: t, kind: kind}, true
}

// digits parses exactly n ASCII digits.
func digits(s string, n int) (int, bool) {
	if len(s) != n {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	return v, true
}
