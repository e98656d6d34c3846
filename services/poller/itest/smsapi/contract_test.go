package smsapi_test

// Contract tests: the real client against the devstack stand-in of the SMS
// API over real HTTP. Each test names the sms-api-contract.md §5 points it
// covers and ends by checking that the stand-in saw no client mistake.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	standin "github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

const (
	gateway = "RaspberryPI-Gateway-40726369867"
	phone   = "+40722000111"
)

var created = time.Date(2025, 8, 27, 7, 0, 0, 123_000_000, time.UTC)

type rig struct {
	api  *standin.Server
	srv  *httptest.Server
	c    *smsapi.Client
	reg  *prometheus.Registry
	logs *observer.ObservedLogs
}

// newRig starts the stand-in (wrapped by mw when given) and a client for
// it. cfg's zero fields get fast test defaults.
func newRig(t *testing.T, opts standin.Options, cfg smsapi.Config, mw ...func(http.Handler) http.Handler) *rig {
	t.Helper()
	api := standin.New(opts)
	var h http.Handler = api
	for _, m := range mw {
		h = m(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	cfg.BaseURL = srv.URL
	if cfg.Prefix == "" {
		cfg.Prefix = opts.Prefix
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 3
	}
	cfg.BaseDelay, cfg.MaxDelay = time.Millisecond, 5*time.Millisecond
	cfg.Logger, cfg.Registerer = zap.New(core), reg
	c, err := smsapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{api: api, srv: srv, c: c, reg: reg, logs: logs}
}

func (r *rig) noMistakes(t *testing.T) {
	t.Helper()
	if m := r.api.Mistakes(); len(m) > 0 {
		t.Errorf("the stand-in recorded client mistakes:\n%s", strings.Join(m, "\n"))
	}
}

func (r *rig) requests() []string {
	var out []string
	for _, q := range r.api.Requests() {
		out = append(out, fmt.Sprintf("%s %s %d %s", q.Method, q.Path, q.Status, q.Tenant))
	}
	return out
}

// sameMilli compares at Mongo's millisecond precision, the API's.
func sameMilli(a, b time.Time) bool {
	return a.Truncate(time.Millisecond).Equal(b.Truncate(time.Millisecond))
}

func alarm(tenant string) standin.SMS {
	return standin.SMS{PhoneNumber: phone, Message: "Temp 31°C în hală", Timestamp: created, Tenant: tenant, MessageType: new("Alarm")}
}

// §5.1 PascalCase, §5.2 integer enums, §5.3 verified PATCH, §5.4 tenant on
// by-id calls, §5.5 destructive next and 404 as empty, §5.6 country route,
// §5.11 dates, §5.12 no unknown fields, §5.13 no PUT, §5.17 Status only.
func TestContractClaimAndReport(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{})
	ctx := t.Context()
	if err := r.c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Register(ctx, gateway, []string{"ro"}); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.api.Provider(gateway); !slices.Equal(p.SupportedCountryCodes, []string{"RO"}) {
		t.Errorf("registered %+v", p)
	}
	alarmID := r.api.Seed(alarm("tenant-a"))
	rest := alarm("tenant-b")
	rest.Provider, rest.TTL, rest.MessageType = new(gateway), new(5), nil
	restID := r.api.Seed(rest)

	s, err := r.c.Next(ctx, gateway, "RO")
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := r.api.Get(alarmID)
	if s.ID != alarmID || s.PhoneNumber != phone || s.Message != "Temp 31°C în hală" || s.Tenant != "tenant-a" ||
		s.Status != schema.StatusEntrusted || s.RetryCount != 1 || s.StatusMessage != "Invalid status." ||
		*s.MessageType != "Alarm" || *s.CountryCode != "RO" || s.Provider != nil || s.TTL != nil || s.TrackingID != nil ||
		!s.Timestamp.Equal(created) || s.SentAt == nil || !sameMilli(*s.SentAt, *stored.SentAt) {
		t.Fatalf("claimed %+v\nstored %+v", s, stored)
	}
	if !s.ExpiresAt().Equal(created.Add(30 * time.Minute)) {
		t.Errorf("alarm ExpiresAt %v", s.ExpiresAt())
	}

	sentAt := time.Date(2025, 8, 27, 7, 1, 10, 987_654_321, time.FixedZone("EEST", 3*3600))
	got, err := r.c.Report(ctx, s.ID, s.Tenant, smsapi.Update{Status: schema.StatusSent, SentAt: sentAt, TrackingID: "mr:17"})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ = r.api.Get(alarmID)
	if got.Status != schema.StatusSent || stored.Status != schema.StatusSent || *stored.TrackingID != "mr:17" ||
		!stored.SentAt.Equal(sentAt.Truncate(time.Millisecond)) {
		t.Fatalf("after report: response %+v, stored %+v", got, stored)
	}

	s2, err := r.c.Next(ctx, gateway, "RO")
	if err != nil || s2.ID != restID || s2.Tenant != "tenant-b" || *s2.TTL != 5 || *s2.Provider != gateway {
		t.Fatalf("second claim %+v, %v", s2, err)
	}
	if !s2.ExpiresAt().Equal(created.Add(5 * time.Minute)) {
		t.Errorf("REST SMS ExpiresAt %v", s2.ExpiresAt())
	}
	if _, err := r.c.Report(ctx, s2.ID, s2.Tenant, smsapi.Update{Status: schema.StatusExpired}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Next(ctx, gateway, "RO"); !errors.Is(err, smsapi.ErrNoSMS) {
		t.Fatalf("empty queue: %v, want ErrNoSMS", err)
	}

	want := []string{
		"GET /health 200 ",
		"POST /api/provider/register 201 ",
		"GET /api/provider/next/" + gateway + "/RO 200 ",
		"PATCH /api/sms/" + alarmID + " 200 tenant-a",
		"GET /api/provider/next/" + gateway + "/RO 200 ",
		"PATCH /api/sms/" + restID + " 200 tenant-b",
		"GET /api/provider/next/" + gateway + "/RO 404 ",
	}
	if got := r.requests(); !slices.Equal(got, want) {
		t.Errorf("requests\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if h := r.api.History(alarmID); len(h) != 3 || h[2].By != "patch" || h[2].To != schema.StatusSent {
		t.Errorf("history %+v", h)
	}
	r.noMistakes(t)
}

// §5.15 prefix, §5.4 against images built before c1cd56f.
func TestContractOcelotPrefixAndLegacyTenant(t *testing.T) {
	r := newRig(t, standin.Options{Prefix: "/gateway/sms", LegacyTenant400: true}, smsapi.Config{Prefix: "gateway/sms/"})
	ctx := t.Context()
	id := r.api.Seed(alarm("tenant-a"))
	if err := r.c.Register(ctx, gateway, []string{"RO"}); err != nil {
		t.Fatal(err)
	}
	s, err := r.c.Next(ctx, gateway, "RO")
	if err != nil || s.ID != id {
		t.Fatalf("next: %+v %v", s, err)
	}
	if _, err := r.c.Report(ctx, s.ID, s.Tenant, smsapi.Update{Status: schema.StatusFailed}); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range r.api.Requests() {
		if q.Path != "/health" && !strings.HasPrefix(q.Path, "/gateway/sms/") {
			t.Errorf("request outside the prefix: %s %s", q.Method, q.Path)
		}
	}
	r.noMistakes(t)
}

// §5.6: the provider name and country travel path-escaped.
func TestContractProviderNameIsPathEscaped(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{})
	name := "Gateway 1/ă?#%"
	m := alarm("t")
	m.Provider = new(name)
	id := r.api.Seed(m)
	s, err := r.c.Next(t.Context(), name, "ro")
	if err != nil || s.ID != id {
		t.Fatalf("next: %+v %v", s, err)
	}
	if _, ok := r.api.Provider(name); !ok {
		t.Errorf("the stand-in did not see provider %q: %v", name, r.requests())
	}
	r.noMistakes(t)
}

// §5.5: only the "no SMS" 404 is an empty queue; a route 404 means a wrong
// prefix and must surface as a permanent error.
func TestContractWrongPrefixIsNotAnEmptyQueue(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{Prefix: "/gateway/sms"})
	_, err := r.c.Next(t.Context(), gateway, "RO")
	ae, ok := errors.AsType[*smsapi.APIError](err)
	if !ok || errors.Is(err, smsapi.ErrNoSMS) || smsapi.IsTransient(err) || ae.Status != 404 ||
		!slices.Equal(ae.Messages, []string{"The requested resource was not found."}) {
		t.Fatalf("got %v", err)
	}
	if n := len(r.api.Requests()); n != 1 {
		t.Errorf("%d requests, want 1 (permanent errors are not retried)", n)
	}
}

// camelCaser is a fronting gateway that "normalises" JSON keys to
// camelCase, the classic way a PATCH ends up silently ignored (§5.3).
func camelCaser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			var m map[string]json.RawMessage
			b, _ := io.ReadAll(r.Body)
			if json.Unmarshal(b, &m) == nil {
				out := map[string]json.RawMessage{}
				for k, v := range m {
					out[string(unicode.ToLower(rune(k[0])))+k[1:]] = v
				}
				b, _ = json.Marshal(out)
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.ContentLength = int64(len(b))
		}
		next.ServeHTTP(w, r)
	})
}

// §5.3: a 200 that does not show the update is ErrNotApplied.
func TestContractUnappliedPatchIsDetected(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{}, camelCaser)
	id := r.api.Seed(alarm("t"))
	s, err := r.c.Next(t.Context(), gateway, "RO")
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.c.Report(t.Context(), id, s.Tenant, smsapi.Update{Status: schema.StatusSent})
	if !errors.Is(err, smsapi.ErrNotApplied) || smsapi.IsTransient(err) || got == nil || got.Status != schema.StatusEntrusted {
		t.Fatalf("got %+v, %v; want ErrNotApplied with the record as the server shows it", got, err)
	}
	if m := r.api.Mistakes(); len(m) != 1 || !strings.Contains(m[0], `"status" ignored`) {
		t.Errorf("mistakes %q, want the proxy's camelCase key", m)
	}
}

// §5.2, §5.4, §3.3: calls the server could only fail (or worse) are
// refused before any request.
func TestContractReportRefusesCallsTheServerCannotServe(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{})
	id := r.api.Seed(alarm("t"))
	for _, tc := range []struct {
		id, tenant string
		st         schema.Status
	}{
		{id, "", schema.StatusSent},
		{"None", "t", schema.StatusSent},
		{id, "t", schema.StatusEntrusted},
		{id, "t", schema.Status(42)},
	} {
		if _, err := r.c.Report(t.Context(), tc.id, tc.tenant, smsapi.Update{Status: tc.st}); !errors.Is(err, smsapi.ErrInvalid) || smsapi.IsTransient(err) {
			t.Errorf("Report(%q, %q, %v) = %v, want ErrInvalid", tc.id, tc.tenant, tc.st, err)
		}
	}
	if n := len(r.api.Requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

// §5.10: a wrong tenant is a permanent 404, returned at once and logged at
// warn with its message.
func TestContractWrongTenantIsPermanent(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{})
	id := r.api.Seed(alarm("t"))
	_, err := r.c.Report(t.Context(), id, "other", smsapi.Update{Status: schema.StatusSent})
	ae, ok := errors.AsType[*smsapi.APIError](err)
	if !ok || ae.Status != 404 || smsapi.IsTransient(err) || !slices.Equal(ae.Messages, []string{"SMS with ID " + id + " not found."}) ||
		ae.Method != "PATCH" || ae.Path != "/api/sms/"+id {
		t.Fatalf("got %#v", err)
	}
	if n := len(r.api.Requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if w := r.logs.FilterLevelExact(zapcore.WarnLevel).FilterMessage("sms api call rejected").All(); len(w) != 1 {
		t.Errorf("want one warning for the rejected call, got %v", w)
	}
	r.noMistakes(t)
}

// §5.10: every error body shape the real server produces is parsed. The
// client never sends the calls that provoke them, so a fronting middleware
// rewrites each call (path, body or method) on its way to the stand-in.
func TestContractErrorBodiesFromTheServer(t *testing.T) {
	type rewrite struct{ method, path, body string }
	var next atomic.Pointer[rewrite]
	rewriter := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if rw := next.Load(); rw != nil {
				if rw.method != "" {
					req.Method = rw.method
				}
				if rw.path != "" {
					req.URL.Path, req.URL.RawPath = rw.path, ""
				}
				if rw.body != "" {
					req.Body = io.NopCloser(strings.NewReader(rw.body))
					req.ContentLength = int64(len(rw.body))
				}
			}
			h.ServeHTTP(w, req)
		})
	}
	r := newRig(t, standin.Options{}, smsapi.Config{}, rewriter)
	id := r.api.Seed(alarm("t"))
	report := func(ctx context.Context) error {
		_, err := r.c.Report(ctx, id, "t", smsapi.Update{Status: schema.StatusFailed})
		return err
	}
	for _, tc := range []struct {
		name     string
		rewrite  rewrite
		call     func(context.Context) error
		status   int
		messages []string
		tries    int
	}{
		{"500 Errors", rewrite{path: "/api/sms/None"}, report, 500,
			[]string{"An unexpected error occurred. Please try again later."}, 3},
		{"400 ProblemDetails", rewrite{body: `{"PhoneNumber":"` + phone + `","Message":"m"}`}, func(ctx context.Context) error {
			_, _, err := r.c.Create(ctx, smsapi.NewSMS{PhoneNumber: phone, Message: "m", Tenant: "t", Provider: gateway})
			return err
		}, 400, []string{"One or more validation errors occurred.", "Provider: The Provider field is required."}, 1},
		{"400 bare string", rewrite{body: `[2]`}, report, 400,
			[]string{"Patch document must be a JSON object."}, 1},
		{"405 empty", rewrite{method: http.MethodDelete}, func(ctx context.Context) error {
			return r.c.Register(ctx, gateway, []string{"RO"})
		}, 405, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.api.Requests())
			next.Store(&tc.rewrite)
			err := tc.call(t.Context())
			next.Store(nil)
			ae, ok := errors.AsType[*smsapi.APIError](err)
			if !ok || ae.Status != tc.status || !slices.Equal(ae.Messages, tc.messages) {
				t.Fatalf("got %#v", err)
			}
			if smsapi.IsTransient(err) != (tc.status >= 500) {
				t.Errorf("IsTransient = %v", smsapi.IsTransient(err))
			}
			if n := len(r.api.Requests()) - before; n != tc.tries {
				t.Errorf("%d tries, want %d", n, tc.tries)
			}
		})
	}
}

// Transient failures are retried inside the call until the API is back.
func TestContractRetriesThroughAnOutage(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{Attempts: 10000})
	id := r.api.Seed(alarm("t"))
	r.api.SetDown(true)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	go func() {
		_ = r.api.WaitFor(ctx, func(v *standin.View) bool { return len(v.Requests()) >= 2 })
		r.api.SetDown(false)
	}()
	s, err := r.c.Next(ctx, gateway, "RO")
	if err != nil || s.ID != id {
		t.Fatalf("next through an outage: %+v %v", s, err)
	}
	reqs := r.api.Requests()
	if reqs[0].Status != 503 || reqs[len(reqs)-1].Status != 200 {
		t.Errorf("requests %v", r.requests())
	}
	if n := counter(t, r.reg, "next", "503"); n < 2 {
		t.Errorf("next 503 counted %v times", n)
	}
	if n := counter(t, r.reg, "next", "200"); n != 1 {
		t.Errorf("next 200 counted %v times", n)
	}
}

func TestContractRetriesAreBounded(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("reset=%v", reset), func(t *testing.T) {
			r := newRig(t, standin.Options{ResetWhenDown: reset}, smsapi.Config{Attempts: 3})
			r.api.SetDown(true)
			_, err := r.c.Next(t.Context(), gateway, "RO")
			if !smsapi.IsTransient(err) || errors.Is(err, smsapi.ErrNoSMS) {
				t.Fatalf("got %v, want a transient error", err)
			}
			if _, isAPI := errors.AsType[*smsapi.APIError](err); isAPI == reset || errors.Is(err, smsapi.ErrTransport) != reset {
				t.Errorf("reset=%v: %v", reset, err)
			}
			if n := len(r.api.Requests()); n != 3 {
				t.Errorf("%d attempts, want 3", n)
			}
			if reset && counter(t, r.reg, "next", "error") != 3 {
				t.Errorf("transport failures must count as code=error")
			}
		})
	}
}

func TestContractCancelStopsRetrying(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{Attempts: 1 << 30})
	r.api.SetDown(true)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		_ = r.api.WaitFor(t.Context(), func(v *standin.View) bool { return len(v.Requests()) >= 3 })
		cancel()
	}()
	if _, err := r.c.Next(ctx, gateway, "RO"); err == nil {
		t.Fatal("want an error once the context is cancelled")
	}
}

// §5.14: a token is sent when available; a token failure does not stop
// delivery.
func TestContractBearerToken(t *testing.T) {
	verify := func(tok string) error {
		if tok != "tok-1" {
			return errors.New("bad token")
		}
		return nil
	}
	good := newRig(t, standin.Options{Verify: verify}, smsapi.Config{Token: func(context.Context) (string, error) { return "tok-1", nil }})
	if _, err := good.c.Next(t.Context(), gateway, "RO"); !errors.Is(err, smsapi.ErrNoSMS) {
		t.Fatal(err)
	}
	if q := good.api.Requests(); !q[0].Authorized {
		t.Errorf("request not authorized: %+v", q[0])
	}
	broken := newRig(t, standin.Options{Verify: verify}, smsapi.Config{Token: func(context.Context) (string, error) { return "", errors.New("keycloak down") }})
	broken.api.Seed(alarm("t"))
	if _, err := broken.c.Next(t.Context(), gateway, "RO"); err != nil {
		t.Fatalf("a token failure must not stop the claim: %v", err)
	}
	if q := broken.api.Requests(); q[0].Authorized {
		t.Errorf("request authorized without a token: %+v", q[0])
	}
	if w := broken.logs.FilterMessageSnippet("without one").All(); len(w) != 1 {
		t.Errorf("want one warning about the missing token, got %d", len(w))
	}
}

// §3.5: re-registering is fine; changed codes are only reported.
func TestContractRegisterTwice(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{})
	for _, codes := range [][]string{{"RO"}, {"RO", "MD"}} {
		if err := r.c.Register(t.Context(), gateway, codes); err != nil {
			t.Fatal(err)
		}
	}
	if w := r.logs.FilterMessageSnippet("registered earlier").All(); len(w) != 1 {
		t.Errorf("want one warning about stale codes, got %d", len(w))
	}
	r.noMistakes(t)
}

// Metrics name route templates only; logs never hold a raw phone number.
func TestContractMetricsAndLogsCarryNoPersonalData(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{})
	ctx := t.Context()
	id := r.api.Seed(alarm("t"))
	_ = r.c.Register(ctx, gateway, []string{"RO"})
	s, err := r.c.Next(ctx, gateway, "RO")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = r.c.Report(ctx, s.ID, s.Tenant, smsapi.Update{Status: schema.StatusSent})
	_, _ = r.c.Report(ctx, s.ID, "other", smsapi.Update{Status: schema.StatusSent})
	_, _ = r.c.Next(ctx, gateway, "RO")
	_ = r.c.Health(ctx)

	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	endpoints := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), id) || strings.Contains(l.GetValue(), "722000111") {
					t.Errorf("%s label %s=%q holds personal data or an id", f.GetName(), l.GetName(), l.GetValue())
				}
				if l.GetName() == "endpoint" {
					endpoints[l.GetValue()] = true
				}
			}
		}
	}
	if want := map[string]bool{"register": true, "next": true, "patch": true, "health": true}; fmt.Sprint(endpoints) != fmt.Sprint(want) {
		t.Errorf("endpoints %v, want %v", endpoints, want)
	}
	if n := counter(t, r.reg, "patch", "404"); n != 1 {
		t.Errorf("patch 404 counted %v", n)
	}
	masked := false
	for _, e := range r.logs.All() {
		text := e.Message + fmt.Sprint(e.ContextMap())
		if strings.Contains(text, "722000111") {
			t.Errorf("log %q holds a raw phone number: %v", e.Message, e.ContextMap())
		}
		masked = masked || strings.Contains(text, logging.MaskPhone(phone))
	}
	if !masked {
		t.Error("the claim was not logged with a masked phone number")
	}
}

func counter(t *testing.T, reg *prometheus.Registry, endpoint, code string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "sms_poller_api_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["endpoint"] == endpoint && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
