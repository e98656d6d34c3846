package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// UsageError is a malformed command line: main prints it with the
// command's usage and exits 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error { return &UsageError{fmt.Sprintf(format, args...)} }

// pageSize is how many records sms list asks the API for per request.
var pageSize = 100

// opAttempts: operator commands retry a transient failure once, then say so.
const opAttempts = 2

// Ops runs the operator commands on the SMS API with the service's
// configuration and token.
type Ops struct {
	cfg Config
	api *smsapi.Client
	out io.Writer
	// poll is how often sms send re-reads the SMS it follows.
	poll    time.Duration
	waitFor time.Duration
}

// NewOps builds the API client (and token source) exactly as the service does.
func NewOps(cfg Config, log *zap.Logger, out io.Writer) (*Ops, error) {
	tokens, err := newTokens(cfg, log, nil)
	if err != nil {
		return nil, err
	}
	api, err := newAPI(cfg, tokens, log, nil, opAttempts, nil)
	if err != nil {
		return nil, err
	}
	return &Ops{cfg: cfg, api: api, out: out, poll: 500 * time.Millisecond}, nil
}

// SMS runs `sms list|get|create|send|delete ...`. It returns the exit code
// for a command that ran (sms send: 1 unless Sent).
func (o *Ops) SMS(ctx context.Context, args []string) (int, error) {
	if len(args) == 0 {
		return 2, usagef("sms: want list, get, create, send or delete")
	}
	switch args[0] {
	case "list":
		return 0, o.list(ctx, args[1:])
	case "get":
		return 0, o.get(ctx, args[1:])
	case "create":
		_, err := o.create(ctx, "create", args[1:])
		return 0, err
	case "send":
		return o.send(ctx, args[1:])
	case "delete":
		return 0, o.delete(ctx, args[1:])
	}
	return 2, usagef("sms %s: unknown command; want list, get, create, send or delete", args[0])
}

// Provider runs `provider show [NAME]` and `provider register`.
func (o *Ops) Provider(ctx context.Context, args []string) (int, error) {
	if len(args) == 0 {
		return 2, usagef("provider: want show or register")
	}
	switch args[0] {
	case "show":
		fs, asJSON := newFlags("provider show")
		pos, err := parse(fs, args[1:], 0, 1)
		if err != nil {
			return 2, err
		}
		name := o.cfg.ProviderName()
		if len(pos) == 1 {
			name = pos[0]
		}
		p, raw, err := o.api.GetProvider(ctx, name)
		if errors.Is(err, smsapi.ErrNotFound) {
			return 1, fmt.Errorf("provider %s is not registered (sms-poller provider register, or start the poller)", name)
		}
		if err != nil {
			return 1, explainAPI(err)
		}
		return 0, o.printProvider(p, raw, *asJSON)
	case "register":
		fs, asJSON := newFlags("provider register")
		if _, err := parse(fs, args[1:], 0, 0); err != nil {
			return 2, err
		}
		name := o.cfg.ProviderName()
		if err := o.api.Register(ctx, name, o.cfg.CountryCodes()); err != nil {
			return 1, explainAPI(err)
		}
		p, raw, err := o.api.GetProvider(ctx, name)
		if err != nil {
			return 1, explainAPI(err)
		}
		return 0, o.printProvider(p, raw, *asJSON)
	}
	return 2, usagef("provider %s: unknown command; want show or register", args[0])
}

// explainAPI names the setting behind an API error where one is to blame.
func explainAPI(err error) error {
	if errors.Is(err, smsapi.ErrTransport) {
		return fmt.Errorf("%w (is SMS_API_URL right and the API up?)", err)
	}
	return err
}

func newFlags(name string) (*flag.FlagSet, *bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs, fs.Bool("json", false, "print the API's own JSON objects")
}

// parse parses flags and positional arguments in any order and checks the
// number of positional ones.
func parse(fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < minPos || len(pos) > maxPos {
		if maxPos == 0 {
			return nil, usagef("%s: unexpected argument %q", fs.Name(), pos[0])
		}
		return nil, usagef("%s: want %d argument(s), got %d", fs.Name(), maxPos, len(pos))
	}
	return pos, nil
}

// parseStatus accepts a status name (any case) or its number.
func parseStatus(s string) (schema.Status, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= int(schema.StatusUnknown) {
		return schema.Status(n), nil
	}
	for st := schema.StatusPending; st <= schema.StatusUnknown; st++ {
		if strings.EqualFold(st.String(), s) {
			return st, nil
		}
	}
	return 0, usagef("--status %q: want Pending, Entrusted, Sent, Failed, Expired, Error, Unknown or 0-6", s)
}

// parseWhen accepts RFC 3339, a date (UTC midnight) or a duration meaning
// that long ago.
func parseWhen(flagName, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.UTC); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usagef("--%s %q: want 2025-08-27T07:00:00Z, 2025-08-27 or a duration ago such as 2h", flagName, s)
}

func (o *Ops) list(ctx context.Context, args []string) error {
	fs, asJSON := newFlags("sms list")
	tenant := fs.String("tenant", "", "only this tenant (default: all tenants)")
	status := fs.String("status", "", "only this status")
	country := fs.String("country", "", "only this country code")
	from := fs.String("from", "", "created at or after")
	to := fs.String("to", "", "created at or before")
	limit := fs.Int("limit", 100, "at most this many SMS (0: all)")
	offset := fs.Int("offset", 0, "skip this many first")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	f := smsapi.Filter{Tenant: *tenant, Country: *country, Offset: *offset}
	if *status != "" {
		st, err := parseStatus(*status)
		if err != nil {
			return err
		}
		f.Status = &st
	}
	now := time.Now()
	var err error
	if *from != "" {
		if f.From, err = parseWhen("from", *from, now); err != nil {
			return err
		}
	}
	if *to != "" {
		if f.To, err = parseWhen("to", *to, now); err != nil {
			return err
		}
	}
	if *limit < 0 || *offset < 0 {
		return usagef("sms list: --limit and --offset must not be negative")
	}
	var list []smsapi.SMS
	var raw []json.RawMessage
	for *limit == 0 || len(list) < *limit {
		f.Limit = pageSize
		if *limit > 0 {
			f.Limit = min(pageSize, *limit-len(list))
		}
		f.Offset = *offset + len(list)
		page, rawPage, err := o.api.List(ctx, f)
		if err != nil {
			return explainAPI(err)
		}
		list, raw = append(list, page...), append(raw, rawPage...)
		if len(page) < f.Limit {
			break
		}
	}
	if *asJSON {
		if raw == nil {
			raw = []json.RawMessage{}
		}
		return writeJSON(o.out, raw)
	}
	tw := tabwriter.NewWriter(o.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTENANT\tSTATUS\tTO\tCOUNTRY\tCREATED\tSENT\tTRACKING\tRETRIES\tMESSAGE")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", cell(s.ID), cell(s.Tenant), s.Status, cell(logging.MaskPhone(s.PhoneNumber)),
			cell(deref(s.CountryCode)), stamp(&s.Timestamp), stamp(s.SentAt), cell(deref(s.TrackingID)), s.RetryCount, short(s.Message, 32))
	}
	return tw.Flush()
}

func (o *Ops) get(ctx context.Context, args []string) error {
	fs, asJSON := newFlags("sms get")
	tenant := fs.String("tenant", "", "the SMS's tenant (required)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *tenant == "" {
		return usagef("sms get: --tenant is required (the API finds an SMS only within its tenant)")
	}
	s, raw, err := o.api.Get(ctx, pos[0], *tenant)
	if err != nil {
		return explainAPI(err)
	}
	if *asJSON {
		return writeJSON(o.out, raw)
	}
	return printSMS(o.out, s)
}

func (o *Ops) delete(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sms delete", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tenant := fs.String("tenant", "", "the SMS's tenant (required)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *tenant == "" {
		return usagef("sms delete: --tenant is required")
	}
	if err := o.api.Delete(ctx, pos[0], *tenant); err != nil {
		return explainAPI(err)
	}
	fmt.Fprintf(o.out, "deleted %s\n", pos[0])
	return nil
}

// create parses the flags create and send share, creates the SMS and, for
// create, prints it.
func (o *Ops) create(ctx context.Context, name string, args []string) (*smsapi.SMS, error) {
	fs, asJSON := newFlags("sms " + name)
	to := fs.String("to", "", "phone number (required)")
	text := fs.String("text", "", "message text (required)")
	tenant := fs.String("tenant", "", "tenant (required)")
	ttl := fs.Int("ttl", 0, "minutes the SMS may wait (default: the API's, 5)")
	country := fs.String("country", "", "country code (default: the API derives it from the number)")
	typ := fs.String("type", "", "MessageType, e.g. Alarm")
	provider := fs.String("provider", o.cfg.ProviderName(), "provider that may send it")
	var wait *time.Duration
	if name == "send" {
		wait = fs.Duration("wait", 2*time.Minute, "how long to follow the SMS")
	}
	if _, err := parse(fs, args, 0, 0); err != nil {
		return nil, err
	}
	switch {
	case *to == "":
		return nil, usagef("sms %s: --to is required", name)
	case *text == "":
		return nil, usagef("sms %s: --text is required", name)
	case *tenant == "":
		return nil, usagef("sms %s: --tenant is required", name)
	case *ttl < 0:
		return nil, usagef("sms %s: --ttl must be a positive number of minutes", name)
	case wait != nil && *wait <= 0:
		return nil, usagef("sms send: --wait must be a positive duration such as 2m")
	}
	n := smsapi.NewSMS{PhoneNumber: *to, Message: *text, Tenant: *tenant, Provider: *provider, CountryCode: *country, MessageType: *typ}
	if *ttl > 0 {
		n.TTL = ttl
	}
	s, raw, err := o.api.Create(ctx, n)
	if err != nil {
		return nil, explainAPI(err)
	}
	if name == "send" {
		o.waitFor = *wait
		return s, nil
	}
	if *asJSON {
		return s, writeJSON(o.out, raw)
	}
	return s, printSMS(o.out, s)
}

// send creates an SMS and follows it, printing each status change, until
// it is final or the wait is over: exit 0 when Sent, 1 otherwise.
func (o *Ops) send(ctx context.Context, args []string) (int, error) {
	s, err := o.create(ctx, "send", args)
	if err != nil {
		var ue *UsageError
		if errors.As(err, &ue) {
			return 2, err
		}
		return 1, err
	}
	start := time.Now()
	fmt.Fprintf(o.out, "created %s for tenant %s to %s\n", s.ID, s.Tenant, logging.MaskPhone(s.PhoneNumber))
	show := func(s *smsapi.SMS) {
		line := fmt.Sprintf("%7.1fs  %s", time.Since(start).Seconds(), s.Status)
		if s.TrackingID != nil {
			line += "  TrackingId " + cell(*s.TrackingID)
		}
		if s.SentAt != nil && s.Status == schema.StatusSent {
			line += "  SentAt " + s.SentAt.Format(time.RFC3339)
		}
		fmt.Fprintln(o.out, line)
	}
	show(s)
	wctx, cancel := context.WithTimeout(ctx, o.waitFor)
	defer cancel()
	last := s.Status
	t := time.NewTicker(o.poll)
	defer t.Stop()
	for !last.Final() {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return 1, ctx.Err()
			}
			return 1, fmt.Errorf("sms %s still %s after %s", s.ID, last, o.waitFor)
		case <-t.C:
		}
		cur, _, err := o.api.Get(wctx, s.ID, s.Tenant)
		if err != nil {
			if wctx.Err() != nil {
				continue
			}
			return 1, explainAPI(err)
		}
		if cur.Status != last {
			show(cur)
			last = cur.Status
		}
	}
	if last != schema.StatusSent {
		return 1, fmt.Errorf("sms %s ended %s", s.ID, last)
	}
	return 0, nil
}

func (o *Ops) printProvider(p *smsapi.Provider, raw json.RawMessage, asJSON bool) error {
	if asJSON {
		return writeJSON(o.out, raw)
	}
	tw := tabwriter.NewWriter(o.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Name\t%s\nId\t%s\nStatus\t%s (%d)\nCountries\t%s\nLast seen\t%s\n", cell(p.Name), cell(p.ID), p.StatusName(), p.Status,
		cell(strings.Join(p.SupportedCountryCodes, ",")), stamp(&p.LastSeen))
	return tw.Flush()
}

func printSMS(w io.Writer, s *smsapi.SMS) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	ttl := "-"
	if s.TTL != nil {
		ttl = strconv.Itoa(*s.TTL) + " min"
	}
	rows := [][2]string{
		{"Id", s.ID}, {"Tenant", s.Tenant}, {"Status", fmt.Sprintf("%s (%d)", s.Status, int(s.Status))},
		{"PhoneNumber", logging.MaskPhone(s.PhoneNumber) + " (masked; --json shows it)"},
		{"Message", s.Message}, {"Timestamp", stamp(&s.Timestamp)}, {"Ttl", ttl},
		{"CountryCode", deref(s.CountryCode)}, {"Provider", deref(s.Provider)}, {"SentAt", stamp(s.SentAt)},
		{"TrackingId", deref(s.TrackingID)}, {"MessageType", deref(s.MessageType)}, {"RetryCount", strconv.Itoa(s.RetryCount)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], cell(r[1]))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func deref(p *string) string {
	if p == nil || *p == "" {
		return "-"
	}
	return *p
}

func stamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// cell makes text from the API safe for a terminal table: control
// characters (escape sequences, tabs, newlines) become U+FFFD, so a hostile
// record cannot move the cursor, recolour the terminal or break the columns.
func cell(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// short cuts s to n runes for a table cell, on one line.
func short(s string, n int) string {
	s = cell(strings.Join(strings.Fields(s), " "))
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
