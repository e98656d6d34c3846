package smsapi_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standin "github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
)

// rewriteNext alters the stand-in's real "next" answer (a claim that did
// happen upstream) before the client reads it.
func rewriteNext(mut func(map[string]any)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var m map[string]any
			body := rec.Body.Bytes()
			if strings.Contains(r.URL.Path, "/provider/next/") && rec.Code == http.StatusOK && json.Unmarshal(body, &m) == nil {
				mut(m)
				body, _ = json.Marshal(m)
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		})
	}
}

// An answer naming a claimed SMS whose fields cannot be used is a
// *ClaimError carrying the Id and Tenant, so the SMS can be reported Failed
// at once; without a readable Id it stays a plain ErrBadResponse.
func TestNextUnusableClaim(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tenant string // seeded
		mut    func(map[string]any)
		claim  bool
		read   string // the ClaimError's Tenant
	}{
		{"Ttl of the wrong type", "t", func(m map[string]any) { m["Ttl"] = "abc" }, true, "t"},
		{"Timestamp a number", "t", func(m map[string]any) { m["Timestamp"] = 5 }, true, "t"},
		{"Message a number", "t", func(m map[string]any) { m["Message"] = 123 }, true, "t"},
		{"Status a string", "t", func(m map[string]any) { m["Status"] = "Entrusted" }, true, "t"},
		{"empty Tenant", "", func(map[string]any) {}, true, ""},
		{"no Tenant key", "t", func(m map[string]any) { delete(m, "Tenant") }, true, ""},
		{"Tenant a number, Ttl bad", "t", func(m map[string]any) { m["Tenant"], m["Ttl"] = 7, "abc" }, true, ""},
		{"no Id", "t", func(m map[string]any) { delete(m, "Id"); m["Ttl"] = "abc" }, false, ""},
		{"Id a number", "t", func(m map[string]any) { m["Id"] = 5 }, false, ""},
		{"Id not an ObjectId", "t", func(m map[string]any) { m["Id"] = "None"; m["Ttl"] = "abc" }, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, standin.Options{}, smsapi.Config{}, rewriteNext(tc.mut))
			m := alarm(tc.tenant)
			id := r.api.Seed(m)
			s, err := r.c.Next(t.Context(), gateway, "RO")
			if s != nil || !errors.Is(err, smsapi.ErrBadResponse) || smsapi.IsTransient(err) {
				t.Fatalf("got %+v, %v; want a permanent ErrBadResponse", s, err)
			}
			ce, isClaim := errors.AsType[*smsapi.ClaimError](err)
			if isClaim != tc.claim {
				t.Fatalf("ClaimError = %v, want %v: %v", isClaim, tc.claim, err)
			}
			if isClaim && (ce.ID != id || ce.Tenant != tc.read) {
				t.Fatalf("ClaimError{%q, %q}, want {%q, %q}", ce.ID, ce.Tenant, id, tc.read)
			}
			if n := len(r.api.Requests()); n != 1 {
				t.Errorf("%d requests; an unusable answer must not be retried", n)
			}
		})
	}
}

// Every answer's Date header reaches ServerTime with the send and receive
// instants around it, error answers included; none without a valid Date.
func TestServerTime(t *testing.T) {
	type obs struct{ date, sent, received time.Time }
	var got []obs
	hook := func(date, sent, received time.Time) { got = append(got, obs{date, sent, received}) }
	var badDate atomic.Bool
	dateMW := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if badDate.Load() {
				w = &dateWriter{ResponseWriter: w, date: "yesterday"}
			}
			next.ServeHTTP(w, r)
		})
	}
	r := newRig(t, standin.Options{}, smsapi.Config{ServerTime: hook}, dateMW)
	ctx := t.Context()
	id := r.api.Seed(alarm("t"))
	if err := r.c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Next(ctx, gateway, "RO"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Next(ctx, gateway, "RO"); !errors.Is(err, smsapi.ErrNoSMS) { // a 404
		t.Fatal(err)
	}
	if _, err := r.c.Report(ctx, id, "other", smsapi.Update{Status: 2}); err == nil { // another 404
		t.Fatal("report with the wrong tenant succeeded")
	}
	if len(got) != 4 {
		t.Fatalf("ServerTime called %d times for 4 answers", len(got))
	}
	for i, o := range got {
		// Date has whole seconds: it lies in [sent-1s, received].
		if o.received.Before(o.sent) || o.date.Before(o.sent.Add(-time.Second)) || o.date.After(o.received) {
			t.Errorf("call %d: date %v outside [%v, %v]", i, o.date, o.sent, o.received)
		}
		if o.sent == o.sent.Round(0) || o.received == o.received.Round(0) {
			t.Errorf("call %d: send or receive instant lost its monotonic reading", i)
		}
	}
	badDate.Store(true)
	if err := r.c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Errorf("ServerTime called for an unparseable Date")
	}

	// An API two hours behind: the hook sees its time, not ours.
	got = nil
	behind := newRig(t, standin.Options{ClockOffset: -2 * time.Hour}, smsapi.Config{ServerTime: hook})
	if err := behind.c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("ServerTime called %d times", len(got))
	}
	if o := got[0]; o.date.Before(o.sent.Add(-2*time.Hour-time.Second)) || o.date.After(o.received.Add(-2*time.Hour)) {
		t.Errorf("date %v, want two hours before [%v, %v]", o.date, o.sent, o.received)
	}
}

// dateWriter replaces the Date header the handler set.
type dateWriter struct {
	http.ResponseWriter
	date string
}

func (w *dateWriter) WriteHeader(code int) {
	w.Header().Set("Date", w.date)
	w.ResponseWriter.WriteHeader(code)
}

func (w *dateWriter) Write(b []byte) (int, error) {
	w.Header().Set("Date", w.date)
	return w.ResponseWriter.Write(b)
}
