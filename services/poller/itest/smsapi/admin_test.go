package smsapi_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	standin "github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// The operator calls against the stand-in: filters and paging on list, 404
// as an empty list, the tenant on by-id calls, a create the server stores
// as sent (body Tenant present, Provider set, no unknown keys), delete, the
// provider lookup, and a wrong prefix told apart from "not found".
func TestAdminListFiltersPagesAndEmpty(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{})
	ctx := t.Context()
	var ids []string
	for i := range 5 {
		m := alarm([]string{"tenant-a", "tenant-b"}[i%2])
		m.Timestamp = created.Add(time.Duration(i) * time.Hour)
		ids = append(ids, r.api.Seed(m))
	}
	sent := alarm("tenant-a")
	sent.Status, sent.CountryCode = schema.StatusSent, new("GB")
	sentID := r.api.Seed(sent)

	all, raw, err := r.c.List(ctx, smsapi.Filter{})
	if err != nil || len(all) != 6 || len(raw) != 6 {
		t.Fatalf("list all: %d %d %v", len(all), len(raw), err)
	}
	// The raw objects are the API's own: PascalCase, integer Status.
	var obj map[string]any
	if err := json.Unmarshal(raw[0], &obj); err != nil || obj["Id"] != ids[0] || obj["Status"] != float64(0) {
		t.Fatalf("raw object %s: %v", raw[0], err)
	}
	a, _, err := r.c.List(ctx, smsapi.Filter{Tenant: "tenant-a"})
	if err != nil || len(a) != 4 {
		t.Fatalf("tenant-a: %d %v", len(a), err)
	}
	st := schema.StatusSent
	s, _, err := r.c.List(ctx, smsapi.Filter{Status: &st, Country: "gb"})
	if err != nil || len(s) != 1 || s[0].ID != sentID {
		t.Fatalf("Sent in GB: %+v %v", s, err)
	}
	w, _, err := r.c.List(ctx, smsapi.Filter{From: created.Add(90 * time.Minute), To: created.Add(3 * time.Hour)})
	if err != nil || len(w) != 2 || w[0].ID != ids[2] || w[1].ID != ids[3] {
		t.Fatalf("time window: %+v %v", w, err)
	}
	p, _, err := r.c.List(ctx, smsapi.Filter{Limit: 2, Offset: 4})
	if err != nil || len(p) != 2 || p[0].ID != ids[4] || p[1].ID != sentID {
		t.Fatalf("page: %+v %v", p, err)
	}
	none, raw, err := r.c.List(ctx, smsapi.Filter{Tenant: "nobody"})
	if err != nil || none != nil || raw != nil {
		t.Fatalf("empty result must be an empty list: %v %v %v", none, raw, err)
	}
	r.noMistakes(t)

	wrong := newRig(t, standin.Options{Prefix: "/gateway/sms"}, smsapi.Config{Prefix: "/api"})
	if _, _, err := wrong.c.List(ctx, smsapi.Filter{}); !errors.Is(err, smsapi.ErrWrongRoute) {
		t.Fatalf("wrong prefix: %v", err)
	}
}

func TestAdminCreateGetDelete(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{})
	ctx := t.Context()
	s, raw, err := r.c.Create(ctx, smsapi.NewSMS{PhoneNumber: phone, Message: "test ✅", Tenant: "tenant-a", Provider: gateway,
		TTL: new(7), CountryCode: "ro", MessageType: "Test"})
	if err != nil {
		t.Fatal(err)
	}
	stored, ok := r.api.Get(s.ID)
	if !ok || stored.Tenant != "tenant-a" || *stored.Provider != gateway || *stored.TTL != 7 || *stored.CountryCode != "RO" ||
		*stored.MessageType != "Test" || stored.Status != schema.StatusPending || stored.Message != "test ✅" {
		t.Fatalf("stored %+v", stored)
	}
	if !strings.Contains(string(raw), `"Id":"`+s.ID+`"`) {
		t.Errorf("raw create answer %s", raw)
	}
	got, _, err := r.c.Get(ctx, s.ID, "tenant-a")
	if err != nil || got.ID != s.ID || got.PhoneNumber != phone {
		t.Fatalf("get: %+v %v", got, err)
	}
	// Another tenant's view: the API's own not-found.
	if _, _, err := r.c.Get(ctx, s.ID, "tenant-b"); !errors.Is(err, smsapi.ErrNotFound) {
		t.Fatalf("get from another tenant: %v", err)
	}
	// Calls the server could only answer with a 500 are refused here.
	for _, c := range []struct{ id, tenant string }{{"None", "tenant-a"}, {s.ID, ""}} {
		if _, _, err := r.c.Get(ctx, c.id, c.tenant); !errors.Is(err, smsapi.ErrInvalid) {
			t.Errorf("get %q/%q: %v", c.id, c.tenant, err)
		}
		if err := r.c.Delete(ctx, c.id, c.tenant); !errors.Is(err, smsapi.ErrInvalid) {
			t.Errorf("delete %q/%q: %v", c.id, c.tenant, err)
		}
	}
	for _, n := range []smsapi.NewSMS{{PhoneNumber: phone, Message: "x", Tenant: "t"}, {PhoneNumber: phone, Message: "x", Provider: "p"},
		{PhoneNumber: " ", Message: "x", Tenant: "t", Provider: "p"}, {PhoneNumber: phone, Tenant: "t", Provider: "p", TTL: new(0)}} {
		if _, _, err := r.c.Create(ctx, n); !errors.Is(err, smsapi.ErrInvalid) {
			t.Errorf("create %+v: %v", n, err)
		}
	}
	if err := r.c.Delete(ctx, s.ID, "tenant-b"); !errors.Is(err, smsapi.ErrNotFound) {
		t.Fatalf("delete from another tenant: %v", err)
	}
	if err := r.c.Delete(ctx, s.ID, "tenant-a"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.api.Get(s.ID); ok {
		t.Fatal("still stored after delete")
	}
	r.noMistakes(t)
}

func TestAdminProviderLookup(t *testing.T) {
	r := newRig(t, standin.Options{}, smsapi.Config{})
	ctx := t.Context()
	if _, _, err := r.c.GetProvider(ctx, gateway); !errors.Is(err, smsapi.ErrNotFound) || errors.Is(err, smsapi.ErrWrongRoute) {
		t.Fatalf("unregistered: %v", err)
	}
	if err := r.c.Register(ctx, gateway, []string{"RO", "GB"}); err != nil {
		t.Fatal(err)
	}
	p, raw, err := r.c.GetProvider(ctx, gateway)
	if err != nil || p.Name != gateway || p.StatusName() != "Active" || strings.Join(p.SupportedCountryCodes, ",") != "RO,GB" ||
		time.Since(p.LastSeen) > time.Minute || !strings.Contains(string(raw), `"SupportedCountryCodes":["RO","GB"]`) {
		t.Fatalf("%+v %s %v", p, raw, err)
	}
	wrong := newRig(t, standin.Options{}, smsapi.Config{Prefix: "/gateway/sms"})
	if _, _, err := wrong.c.GetProvider(ctx, gateway); !errors.Is(err, smsapi.ErrWrongRoute) || errors.Is(err, smsapi.ErrNotFound) {
		t.Fatalf("wrong prefix: %v", err)
	}
	r.noMistakes(t)
}
