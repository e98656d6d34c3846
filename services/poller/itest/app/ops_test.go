package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/devstack/oidc"
	standin "github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/services/poller/internal/app"
)

const (
	testClient = "sms-gateway"
	testSecret = "devstack-secret"
	testUser   = "gateway"
	testPass   = "devstack-password"
	testGW     = "devstack-gateway"
)

// stack is the API and OIDC stand-ins on one real HTTP server, as the
// devstack serves them.
type stack struct {
	api  *standin.Server
	idp  *oidc.Provider
	url  string
	conf app.Config
}

func newStack(t *testing.T, opts standin.Options) *stack {
	t.Helper()
	idp, err := oidc.New(oidc.Config{Realm: "sr", Clients: map[string]string{testClient: testSecret}, Users: map[string]string{testUser: testPass}})
	if err != nil {
		t.Fatal(err)
	}
	opts.Verify = func(tok string) error { _, err := idp.Verify(tok); return err }
	api := standin.New(opts)
	mux := http.NewServeMux()
	mux.Handle("/realms/", idp.Handler())
	mux.Handle("/", api)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &stack{api: api, idp: idp, url: srv.URL, conf: app.Config{
		APIURL: srv.URL, APIPrefix: "/api", Provider: testGW, Countries: []string{"RO"},
		KeycloakURL: srv.URL, KeycloakRealm: "sr", ClientID: testClient, ClientSecret: testSecret,
		User: testUser, Password: testPass, OIDCScopes: "openid", NATSListen: "127.0.0.1:0", NATSUser: "modem", NATSPass: "x",
		StoreDir: t.TempDir(), HTTPAddr: closedAddr(t), LogLevel: "info", LogFormat: "json",
		MaxQueued: 2, MaxDeliver: 10, MaxStoreMB: 1,
	}}
}

// closedAddr is an address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func runCheck(t *testing.T, cfg app.Config) (int, map[string]app.CheckLine, string) {
	t.Helper()
	lines := map[string]app.CheckLine{}
	var out bytes.Buffer
	code := app.Check(t.Context(), cfg, zap.NewNop(), func(l app.CheckLine) {
		if _, dup := lines[l.Name]; dup {
			t.Errorf("check %q reported twice", l.Name)
		}
		lines[l.Name] = l
		app.PrintCheck(&out, l, false)
	})
	return code, lines, out.String()
}

var checkNames = []string{"configuration", "OIDC discovery", "login", "SMS API health", "SMS API prefix", "provider", "broker store", "broker listener", "modem"}

func expect(t *testing.T, lines map[string]app.CheckLine, out string, want map[string]app.Outcome, fix map[string]string) {
	t.Helper()
	for _, n := range checkNames {
		l, ok := lines[n]
		if !ok {
			t.Errorf("no line for %q:\n%s", n, out)
			continue
		}
		w := want[n]
		if w == "" {
			w = app.OK
		}
		if l.Outcome != w {
			t.Errorf("%s: %s, want %s:\n%s", n, l.Outcome, w, out)
		}
		if v := fix[n]; v != "" && !strings.Contains(strings.Join(l.Fix, ","), v) {
			t.Errorf("%s: names %v, want %s", n, l.Fix, v)
		}
		if l.Outcome == app.FAIL && len(l.Fix) == 0 {
			t.Errorf("%s: FAIL without a variable to fix", n)
		}
	}
	if strings.Count(out, "\n") != len(checkNames) {
		t.Errorf("want one line per check:\n%s", out)
	}
}

func TestCheckAllFine(t *testing.T) {
	s := newStack(t, standin.Options{})
	code, lines, out := runCheck(t, s.conf)
	expect(t, lines, out, map[string]app.Outcome{"modem": app.SKIP}, nil)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// A store directory that does not exist yet is fine, and is not created.
	fresh := s.conf
	fresh.StoreDir = filepath.Join(t.TempDir(), "a", "b")
	if code, lines, out := runCheck(t, fresh); code != 0 || !strings.Contains(lines["broker store"].Detail, "the broker creates") {
		t.Fatalf("fresh store: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(fresh.StoreDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("check created the store directory: %v", err)
	}
	if !(strings.Contains(lines["login"].Detail, "token valid for 5m0s") || strings.Contains(lines["login"].Detail, "token valid for 4m59s")) || !strings.Contains(lines["provider"].Detail, "not registered yet") {
		t.Errorf("details:\n%s", out)
	}
	if strings.Contains(out, "eyJ") { // a JWT's header
		t.Fatalf("the token was printed:\n%s", out)
	}
	// Registered, with other countries than configured: still fine, but said.
	ops, _ := newOps(t, s.conf)
	if code, err := ops.Provider(t.Context(), []string{"register"}); code != 0 || err != nil {
		t.Fatal(code, err)
	}
	cfg := s.conf
	cfg.Countries = []string{"RO", "GB"}
	code, lines, out = runCheck(t, cfg)
	if code != 0 || !strings.Contains(lines["provider"].Detail, "Active, countries RO") || !strings.Contains(lines["provider"].Detail, "SMS_COUNTRIES is RO,GB") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestCheckNamesTheVariableToFix(t *testing.T) {
	s := newStack(t, standin.Options{})
	for _, c := range []struct {
		name string
		edit func(*app.Config)
		want map[string]app.Outcome
		fix  map[string]string
	}{
		{"wrong password", func(c *app.Config) { c.Password = "wrong" },
			map[string]app.Outcome{"login": app.FAIL, "modem": app.SKIP}, map[string]string{"login": "KEYCLOAK_PASSWORD"}},
		{"wrong client secret", func(c *app.Config) { c.ClientSecret = "wrong" },
			map[string]app.Outcome{"login": app.FAIL, "modem": app.SKIP}, map[string]string{"login": "KEYCLOAK_CLIENT_SECRET"}},
		{"wrong realm", func(c *app.Config) { c.KeycloakRealm = "nope" },
			map[string]app.Outcome{"OIDC discovery": app.FAIL, "login": app.SKIP, "modem": app.SKIP}, map[string]string{"OIDC discovery": "KEYCLOAK_REALM"}},
		{"unreachable API", func(c *app.Config) { c.APIURL = "http://" + closedAddr(t) },
			map[string]app.Outcome{"SMS API health": app.FAIL, "SMS API prefix": app.SKIP, "provider": app.SKIP, "modem": app.SKIP}, map[string]string{"SMS API health": "SMS_API_URL"}},
		{"wrong prefix", func(c *app.Config) { c.APIPrefix = "/gateway/sms" },
			map[string]app.Outcome{"SMS API prefix": app.FAIL, "provider": app.SKIP, "modem": app.SKIP}, map[string]string{"SMS API prefix": "SMS_API_PREFIX"}},
		{"store under a file", func(c *app.Config) { c.StoreDir = "/proc/version/store" },
			map[string]app.Outcome{"broker store": app.FAIL, "modem": app.SKIP}, map[string]string{"broker store": "NATS_STORE_DIR"}},
		{"store not writable", func(c *app.Config) { c.StoreDir = "/proc/sys/new-store" },
			map[string]app.Outcome{"broker store": app.FAIL, "modem": app.SKIP}, map[string]string{"broker store": "NATS_STORE_DIR"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := s.conf
			c.edit(&cfg)
			code, lines, out := runCheck(t, cfg)
			expect(t, lines, out, c.want, c.fix)
			if code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, out)
			}
			t.Log("\n" + out)
		})
	}
}

func TestCheckWithoutIssuerSkipsLogin(t *testing.T) {
	s := newStack(t, standin.Options{})
	cfg := s.conf
	cfg.KeycloakURL = ""
	code, lines, out := runCheck(t, cfg)
	expect(t, lines, out, map[string]app.Outcome{"OIDC discovery": app.SKIP, "login": app.SKIP, "modem": app.SKIP}, nil)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func newOps(t *testing.T, cfg app.Config) (*app.Ops, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	o, err := app.NewOps(cfg, zap.NewNop(), &out)
	if err != nil {
		t.Fatal(err)
	}
	return o, &out
}

func TestSMSCommands(t *testing.T) {
	s := newStack(t, standin.Options{})
	ctx := t.Context()
	o, out := newOps(t, s.conf)
	do := func(args ...string) string {
		t.Helper()
		out.Reset()
		code, err := o.SMS(ctx, args)
		if err != nil || code != 0 {
			t.Fatalf("%v: exit %d, %v", args, code, err)
		}
		return out.String()
	}

	// An empty list is an empty table (and an empty JSON array), not an error.
	if got := do("list"); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "ID ") {
		t.Fatalf("empty list:\n%s", got)
	}
	if got := strings.TrimSpace(do("list", "--json")); got != "[]" {
		t.Fatalf("empty JSON list: %q", got)
	}

	var created map[string]any
	if err := json.Unmarshal([]byte(do("create", "--to", "+40722000111", "--text", "hello\x1b[2J", "--tenant", "tenant-a", "--ttl", "9", "--type", "Test", "--json")), &created); err != nil {
		t.Fatal(err)
	}
	id, _ := created["Id"].(string)
	stored, ok := s.api.Get(id)
	if !ok || *stored.Provider != testGW || *stored.TTL != 9 || created["PhoneNumber"] != "+40722000111" || created["Status"] != float64(0) {
		t.Fatalf("created %v, stored %+v", created, stored)
	}
	// Every request carried a valid token from the stand-in OIDC provider.
	for _, r := range s.api.Requests() {
		if !r.Authorized {
			t.Fatalf("request without a valid token: %+v", r)
		}
	}

	got := do("get", id, "--tenant", "tenant-a")
	if !strings.Contains(got, "+407*****111") || strings.Contains(got, "+40722000111") || strings.Contains(got, "\x1b") ||
		!strings.Contains(got, "Pending (0)") || !strings.Contains(got, "9 min") {
		t.Fatalf("get table:\n%s", got)
	}
	var one map[string]any
	if err := json.Unmarshal([]byte(do("get", "--tenant", "tenant-a", id, "--json")), &one); err != nil || one["Id"] != id || one["Tenant"] != "tenant-a" {
		t.Fatalf("get --json: %v %v", one, err)
	}

	// Paging: 130 more records, in pages of 100.
	for range 130 {
		s.api.Seed(standin.SMS{PhoneNumber: "+40722000222", Message: "bulk", Tenant: "tenant-b"})
	}
	var all []map[string]any
	if err := json.Unmarshal([]byte(do("list", "--limit", "0", "--json")), &all); err != nil || len(all) != 131 {
		t.Fatalf("list all: %d %v", len(all), err)
	}
	if got := do("list", "--tenant", "tenant-b", "--limit", "120", "--offset", "15"); strings.Count(got, "\n") != 116 {
		t.Fatalf("tenant-b from 15, want 115 rows, got %d", strings.Count(got, "\n")-1)
	}
	if got := do("list", "--status", "sent"); strings.Count(got, "\n") != 1 {
		t.Fatalf("none Sent:\n%s", got)
	}
	if got := do("list", "--status", "0", "--tenant", "tenant-a", "--from", "1h", "--country", "RO"); !strings.Contains(got, id) || strings.Count(got, "\n") != 2 {
		t.Fatalf("filtered:\n%s", got)
	}
	reqs := s.api.Requests()
	pages := 0
	for _, r := range reqs {
		if r.Method == http.MethodGet && r.Path == "/api/sms" {
			pages++
		}
	}
	if pages < 6 {
		t.Errorf("list should page through the API: %d list requests", pages)
	}

	if got := do("delete", id, "--tenant", "tenant-a"); !strings.Contains(got, "deleted "+id) {
		t.Fatal(got)
	}
	if _, ok := s.api.Get(id); ok {
		t.Fatal("not deleted")
	}
	if code, err := o.SMS(ctx, []string{"get", id, "--tenant", "tenant-a"}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("get deleted: %d %v", code, err)
	}
	if m := s.api.Mistakes(); len(m) > 0 {
		t.Fatalf("client mistakes: %v", m)
	}
}

func TestSMSCommandLineMistakes(t *testing.T) {
	s := newStack(t, standin.Options{})
	o, _ := newOps(t, s.conf)
	for _, args := range [][]string{
		{}, {"frobnicate"}, {"get", "--tenant", "t"}, {"get", "66cdd7b2e4b0a1c2d3e4f501"}, {"get", "a", "b", "--tenant", "t"},
		{"list", "--status", "Delivered"}, {"list", "--from", "yesterday"}, {"list", "--limit", "-1"}, {"list", "extra"},
		{"create", "--text", "x", "--tenant", "t"}, {"create", "--to", "1", "--tenant", "t"}, {"create", "--to", "1", "--text", "x"},
		{"send", "--to", "1", "--text", "x", "--tenant", "t", "--wait", "0s"}, {"list", "--nope"}, {"delete", "x"},
	} {
		_, err := o.SMS(t.Context(), args)
		if ue := (*app.UsageError)(nil); !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if len(s.api.Requests()) != 0 {
		t.Errorf("a malformed command line reached the API: %v", s.api.Requests())
	}
	// A malformed id never reaches the server, which would answer 500.
	if _, err := o.SMS(t.Context(), []string{"get", "None", "--tenant", "t"}); err == nil || !strings.Contains(err.Error(), "24-hex") {
		t.Errorf("bad id: %v", err)
	}
}

func TestSMSSendFollowsUntilFinal(t *testing.T) {
	s := newStack(t, standin.Options{})
	o, out := newOps(t, s.conf)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Play the gateway on the stand-in: claim, then report Failed.
	go func() {
		_ = s.api.WaitFor(ctx, func(v *standin.View) bool { return len(v.All()) == 1 })
		all := s.api.All()
		if len(all) != 1 {
			return
		}
		id := all[0].ID
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/api/provider/next/"+testGW+"/RO", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		_ = s.api.WaitFor(ctx, func(v *standin.View) bool { return len(v.Requests()) > 4 })
		body := strings.NewReader(`{"Status":3}`)
		req, _ = http.NewRequestWithContext(ctx, http.MethodPatch, s.url+"/api/sms/"+id, body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("NGSILD-Tenant", "tenant-a")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	code, err := o.SMS(ctx, []string{"send", "--to", "+40722000111", "--text", "hi", "--tenant", "tenant-a", "--wait", "20s"})
	if code != 1 || err == nil || !strings.Contains(err.Error(), "ended Failed") {
		t.Fatalf("exit %d, %v\n%s", code, err, out)
	}
	got := out.String()
	for _, w := range []string{"created ", "Pending", "Entrusted", "Failed"} {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks %q:\n%s", w, got)
		}
	}
	// Nothing moves it: the wait ends it, exit 1.
	out.Reset()
	code, err = o.SMS(t.Context(), []string{"send", "--to", "+40722000111", "--text", "stuck", "--tenant", "tenant-a", "--wait", "200ms"})
	if code != 1 || err == nil || !strings.Contains(err.Error(), "still Pending after 200ms") {
		t.Fatalf("exit %d, %v", code, err)
	}
}

func TestProviderCommands(t *testing.T) {
	s := newStack(t, standin.Options{})
	o, out := newOps(t, s.conf)
	ctx := t.Context()
	if code, err := o.Provider(ctx, []string{"show"}); code != 1 || err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("show before register: %d %v", code, err)
	}
	if code, err := o.Provider(ctx, []string{"register"}); code != 0 || err != nil || !strings.Contains(out.String(), "Active (1)") {
		t.Fatalf("register: %d %v\n%s", code, err, out)
	}
	out.Reset()
	if code, err := o.Provider(ctx, []string{"show", testGW, "--json"}); code != 0 || err != nil {
		t.Fatal(code, err)
	}
	var p map[string]any
	if err := json.Unmarshal(out.Bytes(), &p); err != nil || p["Name"] != testGW || p["Status"] != float64(1) {
		t.Fatalf("%v %v", p, err)
	}
	for _, args := range [][]string{{}, {"show", "a", "b"}, {"register", "x"}, {"frob"}} {
		if _, err := o.Provider(ctx, args); !errors.As(err, new(*app.UsageError)) {
			t.Errorf("%q: %v", args, err)
		}
	}
	wrong := s.conf
	wrong.APIPrefix = "/gateway/sms"
	ow, _ := newOps(t, wrong)
	if _, err := ow.Provider(ctx, []string{"show"}); err == nil || !strings.Contains(err.Error(), "SMS_API_PREFIX") {
		t.Fatalf("wrong prefix: %v", err)
	}
}
