// Package demo is `make demo`: the gateway end to end on the stand-ins, with
// a live line per SMS as it moves through its statuses and a summary table
// comparing what the API recorded with what the simulated modem received.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

type sample struct {
	kind, tenant, phone, text string
	ttl                       *int
	age                       time.Duration
	want                      schema.Status
}

func ptr[T any](v T) *T { return &v }

var samples = []sample{
	{kind: "plain", tenant: "tenant-a", phone: "+40722000111", text: "Door sensor 3 opened at 07:41", want: schema.StatusSent},
	{kind: "national number", tenant: "tenant-b", phone: "0722 000 222", text: "Backup generator started", want: schema.StatusSent},
	{kind: "long (3 parts)", tenant: "tenant-a", phone: "+40722000111", text: strings.Repeat("Freezer 2 temperature above threshold for 15 minutes. ", 7), want: schema.StatusSent},
	{kind: "Romanian (UCS-2)", tenant: "tenant-b", phone: "+40722000333", text: "Alarmă: temperatura în camera 12 a depășit pragul de 30 °C", want: schema.StatusSent},
	{kind: "emoji", tenant: "tenant-a", phone: "+40722000444", text: "Server room back to normal ✅ 🌡️ 21 °C", want: schema.StatusSent},
	{kind: "GSM extension chars", tenant: "tenant-a", phone: "+40722000555", text: "Costs {approx} €5 [per] day ~ see |log|", want: schema.StatusSent},
	{kind: "bad number", tenant: "tenant-b", phone: "not-a-number", text: "This can never be sent", want: schema.StatusFailed},
	{kind: "empty message", tenant: "tenant-a", phone: "+40722000666", text: "", want: schema.StatusFailed},
	{kind: "already expired", tenant: "tenant-a", phone: "+40722000777", text: "Stale alarm from two hours ago", ttl: ptr(5), age: 2 * time.Hour, want: schema.StatusExpired},
}

// Run runs the demo; bin holds the built binaries.
func Run(ctx context.Context, bin string, w io.Writer) error {
	dir, err := os.MkdirTemp("", "smsgw-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(w, "Starting the stand-ins (SMS API, OIDC provider, modem simulator on a pty) and both services…\n")
	hook, err := startHook()
	if err != nil {
		return err
	}
	defer hook.close()
	st, err := harness.Start(ctx, harness.Options{
		Bin: bin, Dir: dir, PollInterval: time.Second,
		Sim:       modemsim.Config{PIN: "1234", RegistrationDelay: 500 * time.Millisecond, PartLatency: 400 * time.Millisecond},
		PollerEnv: []string{"INCOMING_WEBHOOK_URL=" + hook.url, "INCOMING_WEBHOOK_SECRET=" + hookSecret},
	})
	if err != nil {
		return fmt.Errorf("%w (service logs in %s)", err, dir)
	}
	defer st.Close()
	fmt.Fprintf(w, "Stand-ins at %s, modem on %s; poller health on http://%s, modem on http://%s\n\n",
		st.BaseURL, st.ModemLink, st.PollerHTTP, st.ModemHTTP)

	ids := make([]string, len(samples))
	names := map[string]string{}
	for i, s := range samples {
		ids[i] = st.Seed(smsapi.SMS{PhoneNumber: s.phone, Message: s.text, Tenant: s.tenant,
			TTL: s.ttl, Timestamp: time.Now().Add(-s.age), MessageType: ptr("Alarm")})
		names[ids[i]] = fmt.Sprintf("#%d %-19s", i+1, s.kind)
		fmt.Fprintf(w, "%s  queued upstream   (Pending)\n", names[ids[i]])
	}
	fmt.Fprintln(w)

	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	seen := map[string]int{}
	start := time.Now()
	for {
		for _, id := range ids {
			h := st.API.History(id)
			for _, t := range h[min(seen[id], len(h)):] {
				if t.From != t.To {
					fmt.Fprintf(w, "%6.1fs  %s  %-9s → %-9s (%s)\n", time.Since(start).Seconds(), names[id], t.From, t.To, t.By)
				}
			}
			seen[id] = len(h)
		}
		if len(st.Pending(ids)) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not finished in time: %v (logs in %s)", st.Pending(ids), dir)
		case <-time.After(100 * time.Millisecond):
		}
	}

	fmt.Fprintln(w, "\nSummary")
	reasons, err := ledgerReasons(ctx, st)
	if err != nil {
		return fmt.Errorf("%w (logs in %s)", err, dir)
	}
	received := st.Sim.Received()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SMS\tTenant\tTo\tStatus\tExpected\tTrackingId\tParts\tDelivered text matches\tReason")
	ok := true
	for i, id := range ids {
		s := samples[i]
		m, _ := st.API.Get(id)
		parts, match := "-", "-"
		for _, r := range received {
			if r.Text == s.text {
				parts, match = fmt.Sprint(r.Parts), "yes"
			}
		}
		if m.Status == schema.StatusSent && match != "yes" {
			match, ok = "NO", false
		}
		if m.Status != s.want {
			ok = false
		}
		tracking := "-"
		if m.TrackingID != nil {
			tracking = *m.TrackingID
		}
		reason := "-"
		if m.Status != schema.StatusSent {
			if r := reasons[id]; r != "" {
				reason = r
			} else if m.Status == schema.StatusFailed {
				reason, ok = "NONE RECORDED", false
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", names[id], s.tenant, logging.MaskPhone(s.phone), m.Status, s.want, tracking, parts, match, reason)
	}
	tw.Flush()
	if mistakes := st.API.Mistakes(); len(mistakes) > 0 {
		ok = false
		fmt.Fprintf(w, "\nThe API stand-in recorded client mistakes: %v\n", mistakes)
	}
	if !ok {
		return fmt.Errorf("demo outcome differs from what was expected (logs in %s)", dir)
	}
	fmt.Fprintf(w, "\nAll %d SMS reached the status they should; the modem received exactly the texts that were Sent.\n", len(ids))

	// What an operator sees of the same SMS, with the service's own
	// configuration and token.
	for _, args := range [][]string{
		{"sms", "list", "--tenant", samples[0].tenant},
		{"sms", "get", ids[0], "--tenant", samples[0].tenant},
	} {
		fmt.Fprintf(w, "\n$ sms-poller %s\n", strings.Join(args, " "))
		cmd := st.Poller.Command(ctx, args...)
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("sms-poller %s: %w", strings.Join(args, " "), err)
		}
	}
	return receiveDemo(ctx, st, hook, ids, w)
}

// ledgerReasons reads why the modem did not send each SMS, from its ledger
// through the operator command (sms-modem ledger --json).
func ledgerReasons(ctx context.Context, st *harness.Stack) (map[string]string, error) {
	cmd := st.Modem.Command(ctx, "ledger", "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("sms-modem ledger: %w: %s", err, stderr.String())
	}
	var rows []struct {
		SmsID  string `json:"sms_id"`
		Code   string `json:"code"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		return nil, fmt.Errorf("sms-modem ledger: %w", err)
	}
	reasons := map[string]string{}
	for _, r := range rows {
		if r.Reason != "" && reasons[r.SmsID] == "" {
			reasons[r.SmsID] = r.Reason
		}
	}
	return reasons, nil
}
