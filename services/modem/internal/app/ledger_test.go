package app

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/modem/internal/ledger"
	"github.com/sensorsreport/smsgw/shared/config"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// The ledger command on a real ledger directory: every state, newest
// first, --unknown keeping exactly the sends nobody knows the outcome of,
// numbers masked, hostile reasons kept off the terminal.
func TestLedgerCommand(t *testing.T) {
	dir := t.TempDir()
	led, err := ledger.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sentAt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := sentAt.Add(-time.Hour)
	step := func() { at = at.Add(time.Minute) } // distinct Updated stamps, oldest first
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	job := func(id, tenant string) schema.Job {
		return schema.Job{V: 1, ID: id + ".1", SmsID: id, Tenant: tenant, PhoneNumber: "+40722000111", ExpiresAt: at.Add(time.Hour)}
	}
	must(led.Done(job("66cdd7b2e4b0a1c2d3e4f501", "tenant-a"), schema.Result{V: 1, JobID: "66cdd7b2e4b0a1c2d3e4f501.1", SmsID: "66cdd7b2e4b0a1c2d3e4f501", Tenant: "tenant-a",
		Status: schema.StatusSent, SentAt: sentAt, References: []int{17, 18}, Parts: 2}, at))
	step()
	must(led.Done(job("66cdd7b2e4b0a1c2d3e4f502", "tenant-b"), schema.Result{V: 1, JobID: "66cdd7b2e4b0a1c2d3e4f502.1", SmsID: "66cdd7b2e4b0a1c2d3e4f502", Tenant: "tenant-b",
		Status: schema.StatusFailed, Code: schema.CodeInvalidNumber, Reason: "bad number\x1b[31m red"}, at))
	step()
	must(led.Done(job("66cdd7b2e4b0a1c2d3e4f503", "tenant-a"), schema.Result{V: 1, JobID: "66cdd7b2e4b0a1c2d3e4f503.2", SmsID: "66cdd7b2e4b0a1c2d3e4f503", Tenant: "tenant-a",
		Status: schema.StatusUnknown, Code: schema.CodeOutcomeUnknown, Reason: "interrupted while sending", References: []int{9}}, at))
	step()
	must(led.Attempting(job("66cdd7b2e4b0a1c2d3e4f504", "tenant-a"), 1, at))
	step()
	must(led.Attempting(job("66cdd7b2e4b0a1c2d3e4f505", "tenant-c"), 2, at))
	must(led.Close())

	cfg := Config{DataDir: dir}
	var out bytes.Buffer
	must(Ledger(cfg, &out, false, false))
	table := out.String()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("want a header and 5 rows:\n%s", table)
	}
	if strings.Contains(table, "\x1b") || strings.Contains(table, "+40722000111") || !strings.Contains(table, "+407*****111") || !strings.Contains(table, "17,18") || !strings.Contains(table, "invalid") && !strings.Contains(table, "bad number") {
		t.Fatalf("table:\n%s", table)
	}
	// Newest first: the attempting entry written last comes before the Sent one.
	if strings.Index(table, "f504") > strings.Index(table, "f501") {
		t.Errorf("not newest first:\n%s", table)
	}

	out.Reset()
	must(Ledger(cfg, &out, true, true))
	var rows []LedgerRow
	must(json.Unmarshal(out.Bytes(), &rows))
	got := map[string]LedgerRow{}
	for _, r := range rows {
		got[r.SmsID] = r
	}
	if len(rows) != 3 || !got["66cdd7b2e4b0a1c2d3e4f503"].Unknown || got["66cdd7b2e4b0a1c2d3e4f503"].Tenant != "tenant-a" ||
		got["66cdd7b2e4b0a1c2d3e4f504"].State != "attempting" || got["66cdd7b2e4b0a1c2d3e4f505"].State != "attempting" {
		t.Fatalf("--unknown rows: %+v", rows)
	}

	// Numbers never leave unmasked.
	r := LedgerRows(nil)
	r = append(r, LedgerRow{SmsID: "x", Phone: "+40722000111"})
	out.Reset()
	must(PrintLedger(&out, r, false, true))
	if strings.Contains(out.String(), "+40722000111") || !strings.Contains(out.String(), "+407*****111") {
		t.Fatalf("phone not masked: %s", out.String())
	}

	// No ledger there: the setting is named.
	err = Ledger(Config{DataDir: filepath.Join(dir, "nope")}, &out, false, false)
	if ce, ok := err.(*config.Error); !ok || ce.Var != "MODEM_DATA_DIR" {
		t.Fatalf("missing ledger: %v", err)
	}
	// An empty ledger is an empty table, and an empty JSON list.
	empty := t.TempDir()
	el, err := ledger.Open(empty)
	if err != nil {
		t.Fatal(err)
	}
	el.Close()
	out.Reset()
	must(Ledger(Config{DataDir: empty}, &out, false, true))
	if strings.TrimSpace(out.String()) != "[]" {
		t.Fatalf("empty: %q", out.String())
	}
}
