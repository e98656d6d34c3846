package smsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/shared/schema"
)

const generic500 = `{"Errors":["An unexpected error occurred. Please try again later."]}`

func start(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	s := New(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

type reply struct {
	status int
	header http.Header
	body   string
}

// send makes one raw request. hdr holds name/value pairs; an empty value
// removes a header (Content-Type is set for any body unless removed).
func send(t *testing.T, ts *httptest.Server, method, path, body string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (r reply) expect(t *testing.T, status int, body string) {
	t.Helper()
	if r.status != status || r.body != body {
		t.Fatalf("got %d %s\nwant %d %s", r.status, r.body, status, body)
	}
}

func (r reply) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

var ts0 = time.Date(2025, 8, 27, 7, 0, 0, 123_000_000, time.UTC)

func alarm(tenant string) SMS {
	return SMS{PhoneNumber: "+40722000111", Message: "Temp high", Timestamp: ts0, Tenant: tenant, MessageType: new("Alarm")}
}

func expectMistakes(t *testing.T, s *Server, substrings ...string) {
	t.Helper()
	got := s.Mistakes()
	if len(got) != len(substrings) {
		t.Fatalf("mistakes = %q, want %d matching %q", got, len(substrings), substrings)
	}
	for i, sub := range substrings {
		if !strings.Contains(got[i], sub) {
			t.Errorf("mistake %d = %q, want it to mention %q", i, got[i], sub)
		}
	}
}

func TestOutputIsPascalCaseWithNullsOmittedAndSTJEscaping(t *testing.T) {
	s, ts := start(t, Options{})
	id := s.Seed(alarm("tenant-a"))
	want := `{"Id":"` + id + `","PhoneNumber":"\u002B40722000111","Message":"Temp high",` +
		`"Timestamp":"2025-08-27T07:00:00.123Z","Tenant":"tenant-a","Status":0,` +
		`"StatusMessage":"The SMS is pending sending.","CountryCode":"RO","MessageType":"Alarm","RetryCount":0}`
	r := send(t, ts, "GET", "/api/sms/"+id, "", "NGSILD-Tenant", "tenant-a")
	r.expect(t, 200, want)
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	expectMistakes(t, s)
}

func TestPatchCamelCaseKeysAreIgnoredWith200(t *testing.T) {
	s, ts := start(t, Options{})
	m := alarm("t1")
	m.Status = schema.StatusEntrusted
	id := s.Seed(m)
	r := send(t, ts, "PATCH", "/api/sms/"+id, `{"status":2,"sentAt":"2025-08-27T07:01:10Z","Tenant":"x","Foo":1}`, "NGSILD-Tenant", "t1")
	if r.status != 200 || r.object(t)["Status"] != 1.0 {
		t.Fatalf("got %d %s, want 200 with Status still 1", r.status, r.body)
	}
	if got, _ := s.Get(id); got.Status != schema.StatusEntrusted || got.SentAt != nil {
		t.Fatalf("record changed: %+v", got)
	}
	expectMistakes(t, s, `"status" ignored: keys are case-sensitive, use "Status"`, `"sentAt"`, `"Tenant" ignored: Tenant is not patchable`, `"Foo" ignored: unknown`)
}

func TestPatchAppliesPascalCaseKeys(t *testing.T) {
	s, ts := start(t, Options{})
	m := alarm("t1")
	m.Status = schema.StatusEntrusted
	id := s.Seed(m)
	r := send(t, ts, "PATCH", "/api/sms/"+id, `{"Status":2,"SentAt":"2025-08-27T07:01:10.123456789Z","TrackingId":"mr:17"}`, "Fiware-Service", "t1")
	want := `{"Id":"` + id + `","PhoneNumber":"\u002B40722000111","Message":"Temp high",` +
		`"Timestamp":"2025-08-27T07:00:00.123Z","Tenant":"t1","Status":2,"StatusMessage":"The SMS was successfully sent.",` +
		`"SentAt":"2025-08-27T07:01:10.123Z","CountryCode":"RO","TrackingId":"mr:17","MessageType":"Alarm","RetryCount":0}`
	r.expect(t, 200, want)
	h := s.History(id)
	if last := h[len(h)-1]; last.From != schema.StatusEntrusted || last.To != schema.StatusSent || last.By != "patch" {
		t.Errorf("last transition %+v", last)
	}
	expectMistakes(t, s)
}

func TestPatchValueErrorsAre500(t *testing.T) {
	for _, tc := range []struct{ name, body, mistake string }{
		{"string enum", `{"Status":"Sent"}`, "Status sent as a string"},
		{"quoted number", `{"Status":"2"}`, "Status sent as a string"},
		{"fraction", `{"Status":2.0}`, ""},
		{"bad date", `{"SentAt":"2025-08-27 07:01:10"}`, ""},
		{"lower-case z", `{"SentAt":"2025-08-27T07:01:10z"}`, ""},
		{"number for string", `{"TrackingId":17}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ts := start(t, Options{})
			id := s.Seed(alarm("t1"))
			send(t, ts, "PATCH", "/api/sms/"+id, tc.body, "NGSILD-Tenant", "t1").expect(t, 500, generic500)
			if got, _ := s.Get(id); got.Status != schema.StatusPending || got.SentAt != nil || got.TrackingID != nil {
				t.Fatalf("record changed: %+v", got)
			}
			if tc.mistake == "" {
				expectMistakes(t, s)
			} else {
				expectMistakes(t, s, tc.mistake)
			}
		})
	}
}

func TestPatchQuirks(t *testing.T) {
	s, ts := start(t, Options{})
	ttl := 5
	m := alarm("t1")
	m.TTL = &ttl
	id := s.Seed(m)
	hdr := []string{"NGSILD-Tenant", "t1"}
	send(t, ts, "PATCH", "/api/sms/"+id, `[{"Status":2}]`, hdr...).expect(t, 400, `"Patch document must be a JSON object."`)
	r := send(t, ts, "PATCH", "/api/sms/"+id, `{"Ttl":60,"Status":1,"RetryCount":null}`, hdr...)
	if obj := r.object(t); r.status != 200 || obj["Ttl"] != 5.0 || obj["Status"] != 1.0 {
		t.Fatalf("got %d %s, want 200 with Ttl still 5 and Status 1", r.status, r.body)
	}
	if r := send(t, ts, "PATCH", "/api/sms/"+id, `{"Status":2}`, append(hdr, "Content-Type", "")...); r.status != 415 {
		t.Errorf("PATCH without Content-Type: %d %s, want 415", r.status, r.body)
	}
	expectMistakes(t, s, "PATCH to Entrusted", "Ttl is accepted but never stored", "RetryCount null", "without a JSON Content-Type")
}

func TestTenantRules(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		method   string
		hdr      []string
		id       string // "" = the seeded record
		status   int
		body     string // "" = don't compare
		mistakes []string
	}{
		{"NGSILD-Tenant", Options{}, "GET", []string{"NGSILD-Tenant", "a"}, "", 200, "", nil},
		{"Fiware-Service", Options{}, "GET", []string{"Fiware-Service", "a"}, "", 200, "", nil},
		{"NGSILD-Tenant wins", Options{}, "GET", []string{"NGSILD-Tenant", "a", "Fiware-Service", "b"}, "", 200, "", nil},
		{"missing GET", Options{}, "GET", nil, "", 500, generic500, []string{"no NGSILD-Tenant"}},
		{"missing DELETE", Options{}, "DELETE", nil, "", 500, generic500, []string{"no NGSILD-Tenant"}},
		{"missing PATCH", Options{}, "PATCH", nil, "", 500, generic500, []string{"no NGSILD-Tenant"}},
		{"X-Tenant ignored", Options{}, "PATCH", []string{"X-Tenant", "a"}, "", 500, generic500, []string{"X-Tenant header is ignored", "no NGSILD-Tenant"}},
		{"X-Tenant-Id ignored", Options{}, "GET", []string{"X-Tenant-Id", "a"}, "", 500, generic500, []string{"X-Tenant-Id header is ignored", "no NGSILD-Tenant"}},
		{"other tenant", Options{}, "GET", []string{"NGSILD-Tenant", "b"}, "", 404, "", nil},
		{"not an ObjectId", Options{}, "GET", []string{"NGSILD-Tenant", "a"}, "None", 500, generic500, []string{`"None" is not an ObjectId`}},
		{"legacy missing", Options{LegacyTenant400: true}, "PATCH", nil, "", 400, `{"Errors":["Tenant header is missing."]}`, []string{"no NGSILD-Tenant"}},
		{"legacy present", Options{LegacyTenant400: true}, "GET", []string{"NGSILD-Tenant", "a"}, "", 200, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ts := start(t, tc.opts)
			seeded := s.Seed(alarm("a"))
			id := tc.id
			if id == "" {
				id = seeded
			}
			body := ""
			if tc.method == "PATCH" {
				body = `{"Status":2}`
			}
			r := send(t, ts, tc.method, "/api/sms/"+id, body, tc.hdr...)
			want := tc.body
			if tc.status == 404 {
				want = `{"Message":"SMS with ID ` + id + ` not found."}`
			}
			if r.status != tc.status || (want != "" && r.body != want) {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.status, want)
			}
			if got, _ := s.Get(seeded); got.Status != schema.StatusPending && tc.status != 200 {
				t.Errorf("record changed by a failed call: %+v", got)
			}
			expectMistakes(t, s, tc.mistakes...)
			if reqs := s.Requests(); len(reqs) != 1 || reqs[0].Status != tc.status {
				t.Errorf("requests = %+v", reqs)
			}
		})
	}
}

func TestListIsCrossTenantWithoutHeaderAnd404WhenEmpty(t *testing.T) {
	s, ts := start(t, Options{})
	send(t, ts, "GET", "/api/sms", "").expect(t, 404, `{"Message":"No SMS records found for the specified criteria."}`)
	a := s.Seed(alarm("a"))
	b := s.Seed(alarm("b"))
	us := alarm("b")
	us.PhoneNumber = "+12015550123"
	c := s.Seed(us)
	ids := func(r reply) []string {
		var list []map[string]any
		if err := json.Unmarshal([]byte(r.body), &list); err != nil {
			t.Fatalf("%d %s: %v", r.status, r.body, err)
		}
		var out []string
		for _, m := range list {
			out = append(out, m["Id"].(string))
		}
		return out
	}
	for _, tc := range []struct {
		path string
		hdr  []string
		want []string
	}{
		{"/api/sms", nil, []string{a, b, c}},
		{"/api/sms", []string{"NGSILD-Tenant", "b"}, []string{b, c}},
		{"/api/sms?countryCode=US", nil, []string{c}},
		{"/api/sms?status=Pending&limit=2&offset=1", nil, []string{b, c}},
		{"/api/sms?status=0&limit=1", nil, []string{a}},
		{"/api/sms?fromDate=garbage", nil, []string{a, b, c}},
	} {
		if got := ids(send(t, ts, "GET", tc.path, "", tc.hdr...)); !slices.Equal(got, tc.want) {
			t.Errorf("%s %v: ids %v, want %v", tc.path, tc.hdr, got, tc.want)
		}
	}
	send(t, ts, "GET", "/api/sms?status=Sent", "").expect(t, 404, `{"Message":"No SMS records found for the specified criteria."}`)
	if r := send(t, ts, "GET", "/api/sms?status=bogus", ""); r.status != 400 || !strings.Contains(r.header.Get("Content-Type"), "problem+json") {
		t.Errorf("bad status filter: %d %s", r.status, r.body)
	}
	// ?fields= keeps only the named properties and always drops Tenant.
	send(t, ts, "GET", "/api/sms/"+a+"?fields=id,tenant,Status", "", "NGSILD-Tenant", "a").expect(t, 200, `{"Id":"`+a+`","Status":0}`)
}

func TestRegisterTwiceReturnsTheOldDocument(t *testing.T) {
	s, ts := start(t, Options{})
	r1 := send(t, ts, "POST", "/api/provider/register", `{"name":"gw-1","supportedCountryCodes":["RO"]}`)
	if r1.status != 201 || !strings.HasSuffix(r1.header.Get("Location"), "/api/Provider/gw-1") {
		t.Fatalf("first register: %d %v %s", r1.status, r1.header, r1.body)
	}
	stored, _ := s.Provider("gw-1")
	r2 := send(t, ts, "POST", "/api/provider/register", `{"Name":"gw-1","SupportedCountryCodes":["US"]}`)
	if r2.status != 201 {
		t.Fatalf("second register: %d %s", r2.status, r2.body)
	}
	old := r2.object(t)
	if old["Id"] != stored.ID || old["LastSeen"] != stored.LastSeen.Format("2006-01-02T15:04:05.999Z07:00") ||
		!slices.Equal(anyStrings(old["SupportedCountryCodes"]), []string{"RO"}) {
		t.Errorf("second register returned %s, want the document as stored before (%+v)", r2.body, stored)
	}
	after, _ := s.Provider("gw-1")
	if !slices.Equal(after.SupportedCountryCodes, []string{"RO"}) || after.LastSeen.Before(stored.LastSeen) {
		t.Errorf("provider after re-register: %+v", after)
	}
	send(t, ts, "GET", "/api/provider/gw-2", "").expect(t, 404, `{"Message":"Provider with Name \u0027gw-2\u0027 not found."}`)
	send(t, ts, "GET", "/api/provider/register", "").expect(t, 404, `{"Message":"Provider with Name \u0027register\u0027 not found."}`)
	if r := send(t, ts, "POST", "/api/provider/register", `{"Name":"","SupportedCountryCodes":null}`); r.status != 400 ||
		!strings.Contains(r.body, `"errors":{"Name":["The Name field is required."],"SupportedCountryCodes":`) {
		t.Errorf("invalid register: %d %s", r.status, r.body)
	}
	send(t, ts, "GET", "/api/provider/status/Active", "").expect(t, 200, send(t, ts, "GET", "/api/provider/gw-1", "").body)
	send(t, ts, "GET", "/api/provider/status/5", "").expect(t, 400, `"Invalid provider status \u00275\u0027."`)
	expectMistakes(t, s)
}

func anyStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestNextIsDestructiveAndCrossTenant(t *testing.T) {
	s, ts := start(t, Options{})
	a := s.Seed(alarm("tenant-a"))
	addressed := alarm("tenant-b")
	addressed.Provider = new("gw")
	b := s.Seed(addressed)
	other := alarm("tenant-a")
	other.Provider = new("other-gw")
	s.Seed(other)
	us := alarm("tenant-a")
	us.PhoneNumber = "+12015550123"
	s.Seed(us)

	for _, want := range []struct{ id, tenant string }{{a, "tenant-a"}, {b, "tenant-b"}} {
		before := time.Now().UTC()
		r := send(t, ts, "GET", "/api/provider/next/gw/RO", "")
		obj := r.object(t)
		if r.status != 200 || obj["Id"] != want.id || obj["Tenant"] != want.tenant || obj["Status"] != 1.0 ||
			obj["RetryCount"] != 1.0 || obj["StatusMessage"] != "Invalid status." {
			t.Fatalf("next: %d %s, want %s of %s entrusted", r.status, r.body, want.id, want.tenant)
		}
		sentAt, err := time.Parse(time.RFC3339Nano, obj["SentAt"].(string))
		if err != nil || sentAt.Before(before.Truncate(time.Microsecond)) || sentAt.Nanosecond()%100 != 0 {
			t.Errorf("SentAt %v (%v), want UtcNow with 100 ns ticks", obj["SentAt"], err)
		}
		got, _ := s.Get(want.id)
		if got.Status != schema.StatusEntrusted || got.RetryCount != 1 || got.SentAt == nil || !got.SentAt.Equal(sentAt.Truncate(time.Millisecond)) {
			t.Errorf("stored after next: %+v", got)
		}
		h := s.History(want.id)
		if last := h[len(h)-1]; last.From != schema.StatusPending || last.To != schema.StatusEntrusted || last.By != "next:gw" {
			t.Errorf("transition %+v", last)
		}
	}
	send(t, ts, "GET", "/api/provider/next/gw/RO", "").expect(t, 404, `{"Message":"No SMS records found with country code \u0027RO\u0027."}`)
	p, ok := s.Provider("gw")
	if !ok || len(p.SupportedCountryCodes) != 0 || p.SupportedCountryCodes == nil || p.Status != ProviderActive {
		t.Errorf("next must auto-create the provider with [] codes: %+v %v", p, ok)
	}
	if r := send(t, ts, "GET", "/api/provider/next/gw/RO?fields=Id,Status", ""); r.status != 404 {
		t.Errorf("?fields= on next: %d", r.status)
	}
	expectMistakes(t, s, "?fields= on next")
}

func TestNextByProviderUsesRegisteredCodes(t *testing.T) {
	s, ts := start(t, Options{})
	alarmID := s.Seed(alarm("a"))
	named := alarm("a")
	named.Provider = new("gw")
	namedID := s.Seed(named)

	// Auto-created by next with no codes: only SMS addressed by name.
	r := send(t, ts, "GET", "/api/provider/next/gw", "")
	if r.object(t)["Id"] != namedID {
		t.Fatalf("next/gw: %s, want the SMS addressed to gw", r.body)
	}
	send(t, ts, "GET", "/api/provider/next/gw", "").expect(t, 404, `{"Message":"No SMS records found with provider \u0027gw\u0027."}`)
	expectMistakes(t, s, "no country codes", "no country codes")

	// A provider registered with codes also gets alarms (Provider null).
	send(t, ts, "POST", "/api/provider/register", `{"Name":"gw2","SupportedCountryCodes":["RO"]}`)
	if r := send(t, ts, "GET", "/api/provider/next/gw2", ""); r.object(t)["Id"] != alarmID {
		t.Fatalf("next/gw2: %s, want the alarm", r.body)
	}
}

func TestPostRules(t *testing.T) {
	s, ts := start(t, Options{})
	hdr := []string{"NGSILD-Tenant", "t1"}
	send(t, ts, "POST", "/api/sms", `{"PhoneNumber":"0722000111","Message":"hi","Provider":"gw"}`, hdr...).expect(t, 500, generic500)

	r := send(t, ts, "POST", "/api/sms", `{"phoneNumber":"0722000111","message":"hi","provider":"gw","tenant":"ignored","Timestamp":"2025-08-27T07:00:00.1234567","Colour":"red"}`, hdr...)
	obj := r.object(t)
	if r.status != 201 || obj["Tenant"] != "t1" || obj["Ttl"] != 5.0 || obj["CountryCode"] != "RO" ||
		obj["Timestamp"] != "2025-08-27T07:00:00.1234567" || obj["Colour"] != "red" {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	stored, _ := s.Get(obj["Id"].(string))
	if !stored.Timestamp.Equal(time.Date(2025, 8, 27, 7, 0, 0, 123_000_000, time.UTC)) || stored.Tenant != "t1" {
		t.Errorf("stored %+v, want the header tenant and a millisecond UTC timestamp", stored)
	}
	if !strings.HasSuffix(r.header.Get("Location"), "/api/Sms/"+stored.ID) {
		t.Errorf("Location %q", r.header.Get("Location"))
	}

	r = send(t, ts, "POST", "/api/sms", `{"PhoneNumber":"+12015550123","Message":"hi","Provider":"gw","Tenant":"x","Ttl":null,"Status":"Sent"}`, hdr...)
	if r.status != 400 || !strings.Contains(r.body, `"$.Status":`) || !strings.Contains(r.header.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("string enum in POST: %d %s", r.status, r.body)
	}
	r = send(t, ts, "POST", "/api/sms", `{"PhoneNumber":"+12015550123","Message":"hi","Tenant":"x"}`, hdr...)
	var pd map[string]any
	if err := json.Unmarshal([]byte(r.body), &pd); err != nil || r.status != 400 || pd["title"] != "One or more validation errors occurred." ||
		pd["status"] != 400.0 || !strings.HasPrefix(pd["traceId"].(string), "00-") {
		t.Fatalf("missing Provider: %d %s", r.status, r.body)
	}
	if errs := pd["errors"].(map[string]any); len(errs) != 1 || errs["Provider"] == nil {
		t.Errorf("errors %v, want only Provider", errs)
	}
	r = send(t, ts, "POST", "/api/sms", `{"PhoneNumber":"+12015550123","Message":"hi","Provider":"gw","Tenant":"x","Ttl":null}`)
	if obj := r.object(t); r.status != 201 || obj["CountryCode"] != "US" || obj["Tenant"] != "" || obj["Ttl"] != nil {
		t.Errorf("POST without tenant header: %d %s", r.status, r.body)
	}
	if r := send(t, ts, "POST", "/api/sms", ""); r.status != 415 {
		t.Errorf("POST without body: %d", r.status)
	}
	expectMistakes(t, s, "without a Tenant property", `"Colour"`, "Status sent as a string", "empty tenant", "without a JSON Content-Type")
}

func TestPutResetsOmittedFieldsButKeepsTtl(t *testing.T) {
	s, ts := start(t, Options{})
	ttl := 7
	m := alarm("t1")
	m.Status, m.RetryCount, m.TTL, m.TrackingID = schema.StatusEntrusted, 2, &ttl, new("mr:1")
	id := s.Seed(m)
	r := send(t, ts, "PUT", "/api/sms/"+id, `{"PhoneNumber":"+40722000111","Message":"new","Provider":"gw","Ttl":60}`, "NGSILD-Tenant", "t1")
	obj := r.object(t)
	if r.status != 200 || obj["Status"] != 0.0 || obj["RetryCount"] != 0.0 || obj["Ttl"] != 7.0 || obj["TrackingId"] != nil || obj["Message"] != "new" {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	expectMistakes(t, s, "PUT resets")
}

func TestRoutingShapes(t *testing.T) {
	s, ts := start(t, Options{})
	id := s.Seed(alarm("a"))
	notFound := `{"Message":"The requested resource was not found."}`
	send(t, ts, "GET", "/api/nothing", "").expect(t, 404, notFound)
	send(t, ts, "GET", "/sms", "").expect(t, 404, notFound)
	send(t, ts, "DELETE", "/api/provider/register", "").expect(t, 405, "")
	send(t, ts, "POST", "/api/sms/"+id, `{}`).expect(t, 405, "")
	send(t, ts, "GET", "/health", "").expect(t, 200, "Healthy")
	send(t, ts, "GET", "/version", "").expect(t, 200, Version)
	if r := send(t, ts, "GET", "/API/SMS/"+strings.ToUpper(id)+"/", "", "NGSILD-Tenant", "a"); r.status != 200 {
		t.Errorf("routing must be case-insensitive: %d %s", r.status, r.body)
	}
	send(t, ts, "DELETE", "/api/sms/"+id, "", "NGSILD-Tenant", "a").expect(t, 204, "")
	send(t, ts, "DELETE", "/api/sms/"+id, "", "NGSILD-Tenant", "a").expect(t, 404, `{"Message":"SMS with ID `+id+` not found or could not be deleted."}`)

	_, ocelot := start(t, Options{Prefix: "/gateway/sms"})
	send(t, ocelot, "GET", "/gateway/sms/provider/next/gw/RO", "").expect(t, 404, `{"Message":"No SMS records found with country code \u0027RO\u0027."}`)
	send(t, ocelot, "GET", "/api/provider/next/gw/RO", "").expect(t, 404, notFound)
	send(t, ocelot, "GET", "/health", "").expect(t, 200, "Healthy")
}

func TestBackgroundTask(t *testing.T) {
	s, ts := start(t, Options{})
	send(t, ts, "POST", "/api/provider/register", `{"Name":"gw","SupportedCountryCodes":["RO"]}`)
	now := time.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	sentAgo := func(d time.Duration) *time.Time { t := ago(d); return &t }
	ttl := func(m int) *int { return &m }
	cases := []struct {
		name string
		sms  SMS
		want schema.Status
		by   string
	}{
		{"trust timeout re-queues", SMS{Status: schema.StatusEntrusted, SentAt: sentAgo(31 * time.Minute), Timestamp: ago(31 * time.Minute), TTL: ttl(120), RetryCount: 1, Provider: new("gw")}, schema.StatusPending, "task:trust-timeout"},
		{"third claim fails without timeout", SMS{Status: schema.StatusEntrusted, SentAt: sentAgo(time.Second), Timestamp: now, RetryCount: 3}, schema.StatusFailed, "task:max-retries"},
		{"timeout then retry limit", SMS{Status: schema.StatusEntrusted, SentAt: sentAgo(31 * time.Minute), Timestamp: now, TTL: ttl(120), RetryCount: 2}, schema.StatusFailed, "task:max-retries"},
		{"entrusted past TTL", SMS{Status: schema.StatusEntrusted, SentAt: sentAgo(time.Second), Timestamp: ago(6 * time.Minute), TTL: ttl(5), RetryCount: 1}, schema.StatusExpired, "task:ttl"},
		{"alarm uses the 30 min default", SMS{Status: schema.StatusPending, Timestamp: ago(31 * time.Minute)}, schema.StatusExpired, "task:ttl"},
		{"fresh alarm stays", SMS{Status: schema.StatusPending, Timestamp: ago(29 * time.Minute)}, schema.StatusPending, "seed"},
		{"pending ignores retry count", SMS{Status: schema.StatusPending, Timestamp: now, RetryCount: 9}, schema.StatusPending, "seed"},
		{"null SentAt never times out", SMS{Status: schema.StatusEntrusted, Timestamp: ago(time.Hour), TTL: ttl(600), RetryCount: 1}, schema.StatusEntrusted, "seed"},
		{"terminal states are left alone", SMS{Status: schema.StatusSent, Timestamp: ago(time.Hour), RetryCount: 5}, schema.StatusSent, "seed"},
	}
	ids := make([]string, len(cases))
	for i, tc := range cases {
		tc.sms.Tenant, tc.sms.PhoneNumber = "t", "+40722000111"
		ids[i] = s.Seed(tc.sms)
	}
	s.Tick()
	for i, tc := range cases {
		got, _ := s.Get(ids[i])
		h := s.History(ids[i])
		if got.Status != tc.want || h[len(h)-1].By != tc.by {
			t.Errorf("%s: status %v by %q, want %v by %q", tc.name, got.Status, h[len(h)-1].By, tc.want, tc.by)
		}
	}
	if got, _ := s.Get(ids[0]); got.RetryCount != 2 {
		t.Errorf("trust timeout must count a retry: %d", got.RetryCount)
	}
	if p, _ := s.Provider("gw"); p.Status != ProviderUnavailable {
		t.Errorf("trust timeout must mark the provider unavailable: %+v", p)
	}
	send(t, ts, "GET", "/api/provider/next/gw/RO", "") // any poll makes it Active again
	if p, _ := s.Provider("gw"); p.Status != ProviderActive {
		t.Errorf("next must mark the provider active: %+v", p)
	}
}

func TestBackgroundTaskHandlesTenPerPass(t *testing.T) {
	s := New(Options{})
	for range 12 {
		s.Seed(SMS{Tenant: "t", PhoneNumber: "+40722000111", Timestamp: time.Now().Add(-time.Hour)})
	}
	count := func() (n int) {
		for _, m := range s.All() {
			if m.Status == schema.StatusExpired {
				n++
			}
		}
		return n
	}
	s.Tick()
	if n := count(); n != 10 {
		t.Fatalf("after one pass %d expired, want 10", n)
	}
	s.Tick()
	if n := count(); n != 12 {
		t.Fatalf("after two passes %d expired, want 12", n)
	}
}

func TestRunExpiresAndWaitForObservesIt(t *testing.T) {
	s := New(Options{TaskInterval: time.Hour})
	id := s.Seed(SMS{Tenant: "t", PhoneNumber: "+40722000111", Timestamp: time.Now().Add(-time.Hour)})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { done <- s.Run(runCtx) }()
	if err := s.WaitFor(ctx, func(v *View) bool { m, _ := v.Get(id); return m.Status == schema.StatusExpired }); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancelShort()
	if err := s.WaitFor(short, func(*View) bool { return false }); err == nil {
		t.Fatal("WaitFor must fail when its context ends")
	}
}

func TestOutage(t *testing.T) {
	s, ts := start(t, Options{})
	s.SetDown(true)
	send(t, ts, "GET", "/health", "").expect(t, 503, "")
	send(t, ts, "GET", "/api/provider/next/gw/RO", "").expect(t, 503, "")
	s.SetDown(false)
	send(t, ts, "GET", "/health", "").expect(t, 200, "Healthy")

	reset, rts := start(t, Options{ResetWhenDown: true})
	reset.SetDown(true)
	if resp, err := rts.Client().Get(rts.URL + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("want a connection error during a reset outage, got %d", resp.StatusCode)
	}
	if reqs := reset.Requests(); len(reqs) != 1 || reqs[0].Status != 0 {
		t.Errorf("requests %+v, want one with status 0", reqs)
	}
}

func TestVerifyMarksRequestsButServesAll(t *testing.T) {
	s, ts := start(t, Options{Verify: func(tok string) error {
		if tok != "good" {
			return context.DeadlineExceeded
		}
		return nil
	}})
	send(t, ts, "GET", "/health", "", "Authorization", "Bearer good").expect(t, 200, "Healthy")
	send(t, ts, "GET", "/health", "", "Authorization", "Bearer bad").expect(t, 200, "Healthy")
	send(t, ts, "GET", "/health", "").expect(t, 200, "Healthy")
	var got []bool
	for _, r := range s.Requests() {
		got = append(got, r.Authorized)
	}
	if !slices.Equal(got, []bool{true, false, false}) {
		t.Errorf("authorized = %v", got)
	}
}

func TestRequireTokenAnswers401(t *testing.T) {
	s, ts := start(t, Options{RequireToken: true, Verify: func(tok string) error {
		if tok != "good" {
			return context.DeadlineExceeded
		}
		return nil
	}})
	id := s.Seed(alarm("t"))
	send(t, ts, "GET", "/health", "").expect(t, 200, "Healthy")
	send(t, ts, "GET", "/version", "").expect(t, 200, Version)
	r := send(t, ts, "PATCH", "/api/sms/"+id, `{"Status":2}`, "NGSILD-Tenant", "t", "Authorization", "Bearer bad")
	r.expect(t, 401, "")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	send(t, ts, "GET", "/api/provider/next/gw/RO", "").expect(t, 401, "")
	if m, _ := s.Get(id); m.Status != schema.StatusPending {
		t.Fatalf("a refused PATCH changed the record: %+v", m)
	}
	if r := send(t, ts, "PATCH", "/api/sms/"+id, `{"Status":2}`, "NGSILD-Tenant", "t", "Authorization", "Bearer good"); r.status != 200 {
		t.Fatalf("with a good token: %d %s", r.status, r.body)
	}
}

func TestDevEndpoints(t *testing.T) {
	s, ts := start(t, Options{DevEndpoints: true})
	r := send(t, ts, "POST", "/_devstack/sms", `{"Tenant":"t","PhoneNumber":"+12015550123","Message":"m","Ttl":5}`)
	id, _ := r.object(t)["Id"].(string)
	if got, ok := s.Get(id); !ok || *got.CountryCode != "US" || *got.TTL != 5 {
		t.Fatalf("seed over HTTP: %s → %+v", r.body, got)
	}
	send(t, ts, "POST", "/_devstack/down?on=true", "").expect(t, 204, "")
	send(t, ts, "GET", "/health", "").expect(t, 503, "")
	var st State
	if err := json.Unmarshal([]byte(send(t, ts, "GET", "/_devstack/state", "").body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.SMS) != 1 || st.SMS[0].ID != id || len(st.Requests) != 1 || st.Requests[0].Status != 503 || len(st.History[id]) != 1 {
		t.Errorf("state %+v", st)
	}
	send(t, ts, "POST", "/_devstack/tick", "").expect(t, 204, "")
}

func TestParseNetTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want string // format() of the result
	}{
		{"2025-08-27T07:00:00.123Z", true, "2025-08-27T07:00:00.123Z"},
		{"2025-08-27T07:00:00Z", true, "2025-08-27T07:00:00Z"},
		{"2025-08-27T07:00:00.123456789Z", true, "2025-08-27T07:00:00.1234567Z"},
		{"2025-08-27T07:00:00.1234567890123456Z", true, "2025-08-27T07:00:00.1234567Z"},
		{"2025-08-27T07:00:00.12345678901234567Z", false, ""},
		{"2025-08-27T07:00:00", true, "2025-08-27T07:00:00"},
		{"2025-08-27T07:00", true, "2025-08-27T07:00:00"},
		{"2025-08-27", true, "2025-08-27T00:00:00"},
		{"2025-08-27T10:00:00+03:00", true, "2025-08-27T07:00:00+00:00"},
		{"2025-08-27T07:00:00z", false, ""},
		{"2025-08-27t07:00:00Z", false, ""},
		{"2025-08-27 07:00:00Z", false, ""},
		{"2025-08-27T07:00:00.Z", false, ""},
		{"27.08.2025", false, ""},
	} {
		got, ok := parseNetTime(tc.in)
		if ok != tc.ok || (ok && got.format() != tc.want) {
			t.Errorf("parseNetTime(%q) = %q, %v; want %q, %v", tc.in, got.format(), ok, tc.want, tc.ok)
		}
	}
}

func TestJSONStringEscaping(t *testing.T) {
	for in, want := range map[string]string{
		"+40 <a&b>'`":   `"\u002B40 \u003Ca\u0026b\u003E\u0027\u0060"`,
		"Temp 30°C ă":   `"Temp 30\u00B0C \u0103"`,
		"line\n\"q\"\\": `"line\n\u0022q\u0022\\"`,
		"😀":             `"\uD83D\uDE00"`,
	} {
		var buf bytes.Buffer
		writeJSONString(&buf, in)
		if got := buf.String(); got != want {
			t.Errorf("escape %q = %s, want %s", in, got, want)
		}
		var back string
		if err := json.Unmarshal([]byte(want), &back); err != nil || back != in {
			t.Errorf("%s does not decode back to %q: %q %v", want, in, back, err)
		}
	}
}

// The stand-in can run two hours ahead of the host or behind it: its Date
// headers, the times it writes and its background task all follow its own
// clock.
func TestClockOffset(t *testing.T) {
	for _, off := range []time.Duration{2 * time.Hour, -2 * time.Hour} {
		t.Run(off.String(), func(t *testing.T) {
			s, ts := start(t, Options{ClockOffset: off})
			near := func(what string, got time.Time, slack time.Duration) {
				t.Helper()
				if want := time.Now().Add(off); got.Before(want.Add(-slack)) || got.After(want.Add(slack)) {
					t.Errorf("%s = %v, want within %v of %v", what, got, slack, want)
				}
			}
			for _, q := range []struct{ method, path, body string }{
				{"GET", "/health", ""}, {"GET", "/api/nothing", ""}, {"PATCH", "/api/sms/None", `{"Status":2}`},
				{"DELETE", "/api/provider/register", ""}, {"GET", "/api/provider/next/gw/RO", ""},
			} {
				r := send(t, ts, q.method, q.path, q.body, "NGSILD-Tenant", "t")
				d, err := http.ParseTime(r.header.Get("Date"))
				if err != nil {
					t.Fatalf("%s %s (%d): Date %q: %v", q.method, q.path, r.status, r.header.Get("Date"), err)
				}
				near(q.method+" "+q.path+" Date", d, 2*time.Second)
			}

			seeded := s.Seed(SMS{Tenant: "t", PhoneNumber: "+40722000111", Message: "m"})
			m, _ := s.Get(seeded)
			near("seeded Timestamp", m.Timestamp, time.Second)
			r := send(t, ts, "POST", "/api/sms", `{"PhoneNumber":"+40722000112","Message":"m","Provider":"x","Tenant":"t"}`, "NGSILD-Tenant", "t")
			var created map[string]any
			if err := json.Unmarshal([]byte(r.body), &created); err != nil || r.status != 201 {
				t.Fatalf("create: %d %s", r.status, r.body)
			}
			got, _ := s.Get(created["Id"].(string))
			near("created Timestamp", got.Timestamp, time.Second)
			send(t, ts, "GET", "/api/provider/next/gw/RO", "")
			m, _ = s.Get(seeded)
			if m.Status != schema.StatusEntrusted || m.SentAt == nil {
				t.Fatalf("next did not claim the seeded SMS: %+v", m)
			}
			near("SentAt", *m.SentAt, time.Second)

			// The task: a claim just made is not past the trust timeout on
			// the stand-in's clock (on the host's it would be 2 h old when
			// behind), and TTLs count from the stand-in's now.
			stale := s.Seed(SMS{Tenant: "t", PhoneNumber: "+40722000113", Timestamp: time.Now()})
			fresh := s.Seed(SMS{Tenant: "t", PhoneNumber: "+40722000114", Timestamp: time.Now().Add(-time.Hour)})
			s.Tick()
			if m, _ := s.Get(seeded); m.Status != schema.StatusEntrusted {
				t.Errorf("a claim made now was timed out: %v", m.Status)
			}
			wantStale, wantFresh := schema.StatusExpired, schema.StatusPending
			if off < 0 {
				// 2 h behind: host-now is in the stand-in's future and
				// host-now-1h still an hour ahead of it.
				wantStale, wantFresh = schema.StatusPending, schema.StatusPending
			} else {
				// 2 h ahead: both are older than the 30 min TTL.
				wantFresh = schema.StatusExpired
			}
			if m, _ := s.Get(stale); m.Status != wantStale {
				t.Errorf("SMS stamped host-now: %v, want %v", m.Status, wantStale)
			}
			if m, _ := s.Get(fresh); m.Status != wantFresh {
				t.Errorf("SMS stamped host-now-1h: %v, want %v", m.Status, wantFresh)
			}
		})
	}
}
