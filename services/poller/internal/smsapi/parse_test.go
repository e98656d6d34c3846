package smsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// nextExample is the constructed next response of contract §2.2.
const nextExample = `{"Id":"66cdd7b2e4b0a1c2d3e4f501","PhoneNumber":"+40722000111","Message":"Temp high","Timestamp":"2025-08-27T07:00:00.123Z","Tenant":"tenant-a","Status":1,"StatusMessage":"Invalid status.","SentAt":"2025-08-27T07:01:02.1234567Z","CountryCode":"RO","MessageType":"Alarm","RetryCount":1}`

func TestDecodeSMS(t *testing.T) {
	s, err := decodeSMS([]byte(nextExample))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 8, 27, 7, 1, 2, 123456700, time.UTC)
	if s.ID != "66cdd7b2e4b0a1c2d3e4f501" || s.Status != schema.StatusEntrusted || s.Tenant != "tenant-a" ||
		!s.SentAt.Equal(want) || s.Provider != nil || s.TTL != nil || *s.MessageType != "Alarm" || s.RetryCount != 1 {
		t.Errorf("decoded %+v", s)
	}
	// Keys match case-insensitively, as encoding/json does.
	s, err = decodeSMS([]byte(`{"id":"66cdd7b2e4b0a1c2d3e4f501","tenant":"x","status":2,"timestamp":"2025-08-27T07:00:00"}`))
	if err != nil || s.Tenant != "x" || s.Status != schema.StatusSent || !s.Timestamp.Equal(time.Date(2025, 8, 27, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("camelCase decode: %+v %v", s, err)
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{}`, `{"Id":"a","Status":"Sent"}`, `{"Id":"a","Timestamp":"27.08.2025"}`, `{"Id":"a"`} {
		if _, err := decodeSMS([]byte(bad)); !errors.Is(err, ErrBadResponse) {
			t.Errorf("decodeSMS(%q) = %v, want ErrBadResponse", bad, err)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2025-08-27T07:00:00Z":           time.Date(2025, 8, 27, 7, 0, 0, 0, time.UTC),
		"2025-08-27T07:00:00.1Z":         time.Date(2025, 8, 27, 7, 0, 0, 100_000_000, time.UTC),
		"2025-08-27T07:00:00.123Z":       time.Date(2025, 8, 27, 7, 0, 0, 123_000_000, time.UTC),
		"2025-08-27T07:00:00.1234567Z":   time.Date(2025, 8, 27, 7, 0, 0, 123_456_700, time.UTC),
		"2025-08-27T07:00:00.1234567":    time.Date(2025, 8, 27, 7, 0, 0, 123_456_700, time.UTC),
		"2025-08-27T07:00:00":            time.Date(2025, 8, 27, 7, 0, 0, 0, time.UTC),
		"2025-08-27T10:00:00.5+03:00":    time.Date(2025, 8, 27, 7, 0, 0, 500_000_000, time.UTC),
		"2025-08-27T07:00:00.123456789Z": time.Date(2025, 8, 27, 7, 0, 0, 123_456_789, time.UTC),
	} {
		got, err := parseTime(in)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTime("2025-08-27"); err == nil {
		t.Error("a bare date is not a server timestamp")
	}
}

func TestUpdateBodyHasOnlyTheKeysSet(t *testing.T) {
	sentAt := time.Date(2025, 8, 27, 10, 1, 10, 500_000_000, time.FixedZone("EEST", 3*3600))
	for _, tc := range []struct {
		u    Update
		want string
	}{
		{Update{Status: schema.StatusSent, SentAt: sentAt, TrackingID: "mr:17"}, `{"Status":2,"SentAt":"2025-08-27T07:01:10.5Z","TrackingId":"mr:17"}`},
		{Update{Status: schema.StatusExpired}, `{"Status":4}`},
		{Update{Status: schema.StatusPending}, `{"Status":0}`},
	} {
		b, err := json.Marshal(tc.u.body())
		if err != nil || string(b) != tc.want {
			t.Errorf("%+v → %s, want %s", tc.u, b, tc.want)
		}
	}
	b, _ := json.Marshal(registerBody{Name: "gw", SupportedCountryCodes: []string{}})
	if string(b) != `{"Name":"gw","SupportedCountryCodes":[]}` {
		t.Errorf("register body %s", b)
	}
}

func TestExpiresAt(t *testing.T) {
	ts := time.Date(2025, 8, 27, 7, 0, 0, 0, time.UTC)
	if got := (SMS{Timestamp: ts}).ExpiresAt(); !got.Equal(ts.Add(30 * time.Minute)) {
		t.Errorf("default TTL: %v", got)
	}
	if got := (SMS{Timestamp: ts, TTL: new(5)}).ExpiresAt(); !got.Equal(ts.Add(5 * time.Minute)) {
		t.Errorf("Ttl 5: %v", got)
	}
}

func TestParseErrorShapes(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []string
	}{
		{`{"Message":"No SMS records found with country code 'RO'."}`, []string{"No SMS records found with country code 'RO'."}},
		{`{"Message":"No SMS records found with country code \u0027RO\u0027."}`, []string{"No SMS records found with country code 'RO'."}},
		{`{"Errors":["An unexpected error occurred. Please try again later."]}`, []string{"An unexpected error occurred. Please try again later."}},
		{`{"Errors":["boom"],"DeveloperMessage":"at Foo.Bar()"}`, []string{"boom"}},
		{`"Patch document must be a JSON object."`, []string{"Patch document must be a JSON object."}},
		{`{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.1","title":"One or more validation errors occurred.","status":400,"errors":{"Provider":["The Provider field is required."],"$.Status":["bad"]},"traceId":"00-1-2-00"}`,
			[]string{"One or more validation errors occurred.", "$.Status: bad", "Provider: The Provider field is required."}},
		{`{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.16","title":"Unsupported Media Type","status":415}`, []string{"Unsupported Media Type"}},
		{``, nil},
		{"  \n", nil},
		{`<html>Bad Gateway</html>`, []string{"<html>Bad Gateway</html>"}},
		{`Healthy`, []string{"Healthy"}},
		{`{"Message":"no such number +40722000111 (0722000111)"}`, []string{"no such number +407*****111 (072****111)"}},
		{`42`, []string{"42"}},
		{`{"Other":1}`, nil},
	} {
		e := parseError(500, "GET", "/p", []byte(tc.body))
		if !slices.Equal(e.Messages, tc.want) || e.Body != tc.body || e.Status != 500 {
			t.Errorf("parseError(%q) = %q, want %q", tc.body, e.Messages, tc.want)
		}
	}
	long := strings.Repeat("é", 1000)
	e := parseError(400, "GET", "/p", []byte(long))
	if len(e.Messages[0]) > maxMessageLn+len("…") || !utf8.ValidString(e.Messages[0]) || len(e.Body) > maxBodyKept+len("…") {
		t.Errorf("long body not clipped: %d / %d bytes", len(e.Messages[0]), len(e.Body))
	}
	if got := (&APIError{Status: 404, Method: "PATCH", Path: "/api/sms/x", Messages: []string{"a", "b"}}).Error(); got != "PATCH /api/sms/x: HTTP 404: a; b" {
		t.Errorf("Error() = %q", got)
	}
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&APIError{Status: 500}, true},
		{&APIError{Status: 503}, true},
		{&APIError{Status: 429}, true},
		{&APIError{Status: 408}, true},
		{fmt.Errorf("claim sms: %w", &APIError{Status: 502}), true},
		{&APIError{Status: 401}, true},
		{&APIError{Status: 403}, true},
		{fmt.Errorf("report sms x: %w", &APIError{Status: 401}), true},
		{&APIError{Status: 400}, false},
		{&APIError{Status: 404}, false},
		{&APIError{Status: 405}, false},
		{&APIError{Status: 415}, false},
		{fmt.Errorf("claim sms: %w: %w", ErrTransport, errors.New("connection reset")), true},
		{ErrNotApplied, false},
		{ErrNoSMS, false},
		{ErrInvalid, false},
		{ErrBadResponse, false},
		{context.Canceled, false},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestNewConfig(t *testing.T) {
	for _, bad := range []string{"", "api.example.net", "ftp://x", "http://"} {
		if _, err := New(Config{BaseURL: bad}); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
	for prefix, want := range map[string]string{"": "/api", "/": "", "gateway/sms/": "/gateway/sms", "/api": "/api"} {
		c, err := New(Config{BaseURL: "https://api.example.net/sms/", Prefix: prefix})
		if err != nil || c.prefix != want || c.base != "https://api.example.net/sms" {
			t.Errorf("prefix %q → %q base %q (%v), want %q", prefix, c.prefix, c.base, err, want)
		}
	}
}

var sevenDigits = regexp.MustCompile(`(^|[^\w+])\+?\d{7,}($|[^\w])`)

func FuzzParseError(f *testing.F) {
	for _, s := range []string{
		`{"Message":"No SMS records found with country code 'RO'."}`,
		`{"Message":"The requested resource was not found."}`,
		`{"Errors":["An unexpected error occurred. Please try again later."]}`,
		`{"Errors":["Tenant header is missing."]}`,
		`"Patch document must be a JSON object."`,
		`{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.1","title":"One or more validation errors occurred.","status":400,"errors":{"Provider":["The Provider field is required."]},"traceId":"00-..."}`,
		``, `<html>502</html>`, `{"Message":"+40722000111"}`, `{"errors":{"a":{"b":["c"]}}}`, `[["x"]]`,
	} {
		f.Add(500, []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := parseError(status, "GET", "/api/x", body)
		if e.Status != status || len(e.Body) > maxBodyKept+len("…") {
			t.Fatalf("status %d body %d bytes", e.Status, len(e.Body))
		}
		for _, m := range e.Messages {
			if len(m) > maxMessageLn+len("…") {
				t.Fatalf("message of %d bytes", len(m))
			}
			if sevenDigits.MatchString(m) {
				t.Fatalf("unmasked digit run in %q", m)
			}
		}
		_ = e.Error()
		_ = e.Temporary()
	})
}

func FuzzDecodeSMS(f *testing.F) {
	for _, s := range []string{
		nextExample,
		`{"Id":"66cdd7b2e4b0a1c2d3e4f501","PhoneNumber":"\u002B40722000111","Message":"m","Timestamp":"2025-08-27T07:00:00.1234567","Tenant":"t","Status":2,"StatusMessage":"The SMS was successfully sent.","SentAt":"2025-08-27T07:01:10.123Z","Ttl":5,"CountryCode":"RO","Provider":"gw","TrackingId":"mr:17","RetryCount":1}`,
		`{"id":"x","status":42,"sentAt":null}`,
		`{"Id":"x","Colour":"red","Timestamp":"2025-08-27T10:00:00+03:00"}`,
		`{}`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := decodeSMS(body)
		if err != nil {
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("error %v is not ErrBadResponse", err)
			}
			return
		}
		// What decodes re-encodes and decodes to the same record.
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeSMS(b)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		if again.ID != s.ID || !again.Timestamp.Equal(s.Timestamp) || again.Status != s.Status ||
			(again.SentAt == nil) != (s.SentAt == nil) || (s.SentAt != nil && !again.SentAt.Equal(*s.SentAt)) {
			t.Fatalf("round trip changed %+v into %+v", s, again)
		}
	})
}

func TestClaimKeys(t *testing.T) {
	const id = "66cdd7b2e4b0a1c2d3e4f501"
	for _, tc := range []struct {
		body, id, tenant string
		ok               bool
	}{
		{nextExample, id, "tenant-a", true},
		{`{"Id":"` + id + `","Ttl":"abc","Tenant":"t"}`, id, "t", true},
		{`{"id":"` + id + `","TENANT":"t","Message":123}`, id, "t", true},
		{`{"Id":"` + id + `","Tenant":5}`, id, "", true},
		{`{"Id":"` + id + `"}`, id, "", true},
		{`{"Id":"` + id + `","Tenant":"a","tenant":"b"}`, id, "", true},
		{`{"Id":"` + id + `","id":"` + id + `","Tenant":"a","tenant":"a"}`, id, "a", true},
		{`{"Id":"` + id + `","id":"66cdd7b2e4b0a1c2d3e4f502"}`, "", "", false},
		{`{"Id":5,"Tenant":"t"}`, "", "", false},
		{`{"Id":"None","Tenant":"t"}`, "", "", false},
		{`{"Tenant":"t"}`, "", "", false},
		{`{"Id":"` + id + `","Tenant":"t"`, "", "", false},
		{`{"Id":"` + id + `"} trailing`, "", "", false},
		{`["` + id + `"]`, "", "", false},
		{``, "", "", false},
	} {
		id, tenant, ok := claimKeys([]byte(tc.body))
		if id != tc.id || tenant != tc.tenant || ok != tc.ok {
			t.Errorf("claimKeys(%s) = %q, %q, %v; want %q, %q, %v", tc.body, id, tenant, ok, tc.id, tc.tenant, tc.ok)
		}
	}
}

// FuzzClaimKeys: whatever the body, a readable Id is an ObjectId, and when
// the body also decodes as an SMS the lenient reader agrees with it.
func FuzzClaimKeys(f *testing.F) {
	for _, s := range []string{
		nextExample,
		`{"Id":"66cdd7b2e4b0a1c2d3e4f501","Ttl":"abc","Tenant":"t"}`,
		`{"Id":"66cdd7b2e4b0a1c2d3e4f501","Timestamp":5,"Tenant":"t"}`,
		`{"Id":"66cdd7b2e4b0a1c2d3e4f501","Message":123,"Tenant":"t"}`,
		`{"Id":"66cdd7b2e4b0a1c2d3e4f501","Tenant":""}`,
		`{"iD":"66CDD7B2E4B0A1C2D3E4F501","tenant":"t","Tenant":"u"}`,
		`{"Id":"66cdd7b2e4b0a1c2d3e4f501","id":"66cdd7b2e4b0a1c2d3e4f502"}`,
		`{"Id":null,"Tenant":null}`, `{"Id":["x"]}`, `{}`, `null`, `[]`, `"x"`, `{"Id":"\u0036`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, tenant, ok := claimKeys(body)
		if !ok {
			if id != "" || tenant != "" {
				t.Fatalf("unreadable body gave %q, %q", id, tenant)
			}
			return
		}
		if !isObjectID(id) {
			t.Fatalf("readable Id %q is not an ObjectId", id)
		}
		if s, err := decodeSMS(body); err == nil && (s.ID != id || (tenant != "" && s.Tenant != tenant)) {
			t.Fatalf("decoded %q/%q, lenient reader %q/%q", s.ID, s.Tenant, id, tenant)
		}
	})
}
