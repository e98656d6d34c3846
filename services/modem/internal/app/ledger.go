package app

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sensorsreport/smsgw/services/modem/internal/ledger"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// LedgerRow is one send as `sms-modem ledger` shows it. It is the only
// place that knows the ledger's entry layout, so a change to the ledger
// needs only LedgerRows adapted.
type LedgerRow struct {
	Time   time.Time `json:"time"`
	SmsID  string    `json:"sms_id"`
	Tenant string    `json:"tenant"`
	JobID  string    `json:"job_id"`           // the claim that sent, or tried to
	State  string    `json:"state"`            // attempting or done
	Status string    `json:"status,omitempty"` // Sent, Failed, Expired, Unknown (done only)
	Phone  string    `json:"phone,omitempty"`  // masked
	Refs   []int     `json:"refs,omitempty"`   // TP-MR of each part, as reported in TrackingId
	Code   string    `json:"code,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// Unknown: nobody knows whether the SMS went out (interrupted while
	// sending): an operator must check with the recipient.
	Unknown bool `json:"unknown"`
}

// LedgerRows turns ledger entries into rows, in the entries' order.
func LedgerRows(entries []ledger.Entry) []LedgerRow {
	rows := make([]LedgerRow, 0, len(entries))
	for _, e := range entries {
		r := LedgerRow{Time: e.Updated, SmsID: e.SmsID, Tenant: e.Tenant, JobID: e.JobID, State: string(e.State), Phone: e.Phone}
		if res := e.Result; res != nil {
			r.Status, r.Refs, r.Code, r.Reason = res.Status.String(), res.References, res.Code, res.Reason
			if res.Status == schema.StatusSent && !res.SentAt.IsZero() {
				r.Time = res.SentAt
			}
		}
		r.Unknown = e.State == ledger.Attempting || (e.Result != nil && e.Result.Status == schema.StatusUnknown)
		rows = append(rows, r)
	}
	return rows
}

// maskRows masks every phone number; rows leave this package only masked.
func maskRows(rows []LedgerRow) {
	for i := range rows {
		if rows[i].Phone != "" {
			rows[i].Phone = logging.MaskPhone(rows[i].Phone)
		}
	}
}

// PrintLedger writes rows as a table, or as JSON objects.
func PrintLedger(w io.Writer, rows []LedgerRow, unknownOnly, asJSON bool) error {
	var sel []LedgerRow
	for _, r := range rows {
		if !unknownOnly || r.Unknown {
			sel = append(sel, r)
		}
	}
	maskRows(sel)
	if asJSON {
		if sel == nil {
			sel = []LedgerRow{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(sel)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSMS\tTENANT\tTO\tSTATE\tSTATUS\tREFS\tREASON")
	for _, r := range sel {
		status, reason := dash(r.Status), dash(r.Reason)
		if r.State == string(ledger.Attempting) {
			status, reason = "?", "sending started, outcome not recorded (in flight now, or interrupted: check by hand)"
		}
		refs := "-"
		if len(r.Refs) > 0 {
			refs = strings.Trim(strings.Join(strings.Fields(fmt.Sprint(r.Refs)), ","), "[]")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Local().Format(time.DateTime), cell(r.SmsID), cell(dash(r.Tenant)),
			dash(r.Phone), r.State, status, refs, cell(reason))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cell keeps control characters (escape sequences, newlines) out of the
// terminal.
func cell(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '\uFFFD'
		}
		return r
	}, s)
}
