// Package delivery matches status reports to the parts the sender
// submitted and publishes one sms.delivery event per SMS once its delivery
// state is final (modem-protocol.md §5.3). The sender records each
// accepted part with Sent; the inbox hands each SMS-STATUS-REPORT to
// Report. A report belongs to the most recent unmatched part with its
// message reference and recipient (references wrap at 256). An SMS is
// delivered when every part is, failed as soon as one part failed
// permanently, and pending otherwise. State is one file per SMS under
// MODEM_DATA_DIR/delivery, so matching survives restarts; it is written
// when a part is sent and when a report arrives, and removed once the
// final event is in the broker.
package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/durable"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// Horizons: a part waits this long for its report; an unmatched report
// waits this long for its part to be recorded (the sender records a part
// right after +CMGS, and a fast network can report before that).
const (
	partHorizon   = 72 * time.Hour
	reportHorizon = 2 * time.Minute
)

// Tracker is the durable store of sent parts.
type Tracker struct {
	js  jetstream.Publisher
	dir string
	log *zap.Logger
	now func() time.Time

	mu      sync.Mutex
	early   []early // reports that matched nothing yet
	reports *prometheus.CounterVec
	events  *prometheus.CounterVec
}

type early struct {
	r  *pdu.StatusReport
	at time.Time
}

// record is one SMS on disk.
type record struct {
	SmsID  string     `json:"sms_id"`
	Tenant string     `json:"tenant"`
	To     string     `json:"to"`
	Total  int        `json:"total"`
	Parts  []partInfo `json:"parts"` // index seq-1
	Final  string     `json:"final,omitempty"`
	// Published is only ever true in files of earlier versions, which kept
	// a record after its event; such a record is removed, not republished.
	Published bool      `json:"published,omitempty"`
	Updated   time.Time `json:"updated"`
}

type partInfo struct {
	Sent   bool      `json:"sent"`
	MR     int       `json:"mr"`
	SentAt time.Time `json:"sent_at,omitzero"`
	// Status is "" (no final report yet), delivered or failed; ST the last TP-ST.
	Status string    `json:"status,omitempty"`
	ST     int       `json:"st,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

var (
	defaultMu sync.Mutex
	defaultT  *Tracker
)

// Install makes t the tracker Sent records into; nil turns recording off
// (MODEM_DELIVERY_REPORTS=false).
func Install(t *Tracker) {
	defaultMu.Lock()
	defaultT = t
	defaultMu.Unlock()
}

// Sent records that part seq of total of the SMS was accepted with message
// reference mr. The sender calls it after each +CMGS; it is a no-op when
// delivery reports are off. A failure to record is logged, never returned:
// the SMS was sent either way.
func Sent(smsID, tenant, to string, seq, total, mr int) {
	defaultMu.Lock()
	t := defaultT
	defaultMu.Unlock()
	if t != nil {
		t.Sent(smsID, tenant, to, seq, total, mr)
	}
}

// Open loads the store under dir/delivery.
func Open(dir string, js jetstream.Publisher, log *zap.Logger, reg prometheus.Registerer) (*Tracker, error) {
	if log == nil {
		log = zap.NewNop()
	}
	t := &Tracker{js: js, dir: filepath.Join(dir, "delivery"), log: log, now: time.Now,
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_modem_delivery_reports_total", Help: "Status reports by outcome (delivered, pending, failed, unmatched).",
		}, []string{"outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_modem_delivery_events_total", Help: "sms.delivery events published by status.",
		}, []string{"status"}),
	}
	if err := os.MkdirAll(t.dir, 0o750); err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	if reg != nil {
		reg.MustRegister(t.reports, t.events)
	}
	return t, nil
}

// Sent is the method behind the package-level Sent.
func (t *Tracker) Sent(smsID, tenant, to string, seq, total, mr int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq < 1 || seq > total || smsID == "" {
		t.log.Error("delivery: bad part record", zap.Int("seq", seq), zap.Int("total", total))
		return
	}
	name := t.file(smsID)
	rec, err := t.load(name)
	if err != nil || rec.Total != total || rec.Final != "" {
		// New, or a fresh send of the same SMS (a new claim): start over.
		rec = &record{SmsID: smsID, Tenant: tenant, To: to, Total: total, Parts: make([]partInfo, total)}
	}
	rec.Parts[seq-1] = partInfo{Sent: true, MR: mr & 0xFF, SentAt: t.now()}
	rec.Updated = t.now()
	if err := t.save(name, rec); err != nil {
		t.log.Error("delivery: part not recorded; its report will not be matched", zap.Error(err))
		return
	}
	// A report that beat the record to it.
	for i := 0; i < len(t.early); i++ {
		e := t.early[i]
		if int(e.r.MR) == mr&0xFF && sameNumber(e.r.Recipient.Value, to) {
			t.early = append(t.early[:i], t.early[i+1:]...)
			_ = t.apply(context.Background(), e.r)
			break
		}
	}
}

// Report matches a status report to its part. It returns nil once the
// report is recorded (and any final event published); an error keeps the
// report on the SIM for another try.
func (t *Tracker) Report(ctx context.Context, r *pdu.StatusReport) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.apply(ctx, r)
}

func (t *Tracker) apply(ctx context.Context, r *pdu.StatusReport) error {
	name, rec, idx := t.match(int(r.MR), r.Recipient.Value)
	if rec == nil {
		now := t.now()
		kept := t.early[:0]
		for _, e := range t.early {
			if now.Sub(e.at) < reportHorizon {
				kept = append(kept, e)
			}
		}
		t.early = append(kept, early{r: r, at: now})
		t.reports.WithLabelValues("unmatched").Inc()
		t.log.Info("status report matches no sent part (yet)", zap.Int("mr", int(r.MR)), logging.Phone(r.Recipient.Value))
		return nil
	}
	p := &rec.Parts[idx]
	p.ST, p.At = int(r.Status), r.Discharge
	switch {
	case r.Status.Pending():
		t.reports.WithLabelValues("pending").Inc()
	case r.Status.Delivered():
		p.Status = schema.DeliveryDelivered
		t.reports.WithLabelValues("delivered").Inc()
	default:
		p.Status = schema.DeliveryFailed
		t.reports.WithLabelValues("failed").Inc()
	}
	rec.Updated = t.now()
	t.decide(rec)
	if err := t.save(name, rec); err != nil {
		return err
	}
	return t.publish(ctx, name, rec)
}

// match finds the most recent unmatched part with this reference and
// recipient among the recent records.
func (t *Tracker) match(mr int, recipient string) (string, *record, int) {
	names, _ := filepath.Glob(filepath.Join(t.dir, "*.json"))
	var (
		bestName string
		best     *record
		bestIdx  int
	)
	horizon := t.now().Add(-partHorizon)
	for _, name := range names {
		rec, err := t.load(name)
		if err != nil || rec.Final != "" || !sameNumber(rec.To, recipient) {
			continue
		}
		for i, p := range rec.Parts {
			if !p.Sent || p.MR != mr || p.Status != "" || p.SentAt.Before(horizon) {
				continue
			}
			if best == nil || p.SentAt.After(best.Parts[bestIdx].SentAt) {
				bestName, best, bestIdx = name, rec, i
			}
		}
	}
	return bestName, best, bestIdx
}

// decide sets Final when the SMS's delivery state is final.
func (t *Tracker) decide(rec *record) {
	delivered := 0
	for _, p := range rec.Parts {
		switch p.Status {
		case schema.DeliveryFailed:
			rec.Final = schema.DeliveryFailed
			return
		case schema.DeliveryDelivered:
			delivered++
		}
	}
	if delivered == rec.Total {
		rec.Final = schema.DeliveryDelivered
	}
}

// publish sends the final event of rec and then removes its file. The
// event id is derived from the record, so a crash before the removal
// republishes the same event, which the stream's dedup window and the
// forwarder's id absorb.
func (t *Tracker) publish(ctx context.Context, name string, rec *record) error {
	if rec.Final == "" {
		return nil
	}
	ev := schema.Delivery{Event: schema.EventDelivery, SmsID: rec.SmsID, Tenant: rec.Tenant, To: rec.To,
		Status: rec.Final, Parts: rec.Total}
	ids := []string{rec.SmsID}
	for _, p := range rec.Parts {
		ids = append(ids, strconv.Itoa(p.MR), p.SentAt.UTC().Format(time.RFC3339Nano))
		if p.Status == schema.DeliveryDelivered {
			ev.DeliveredParts++
		}
		if p.At.After(ev.At) && (rec.Final == schema.DeliveryDelivered || p.Status == schema.DeliveryFailed) {
			ev.At = p.At
		}
		if p.Status == schema.DeliveryFailed && ev.Reason == "" {
			ev.Reason = Reason(pdu.Status(p.ST))
		}
	}
	ev.ID = schema.EventID("dlv", ids...)
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err := t.js.Publish(ctx, ev.Subject(), body, jetstream.WithMsgID(ev.ID)); err != nil {
		return fmt.Errorf("publish %s: %w", ev.ID, err)
	}
	t.events.WithLabelValues(ev.Status).Inc()
	t.log.Info("delivery event published", zap.String("id", ev.ID), zap.String("sms_id", ev.SmsID),
		zap.String("status", ev.Status), zap.Int("parts", ev.Parts), zap.Int("delivered_parts", ev.DeliveredParts))
	// Later reports for a final SMS change nothing, so its record goes.
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.log.Warn("delivery: record of a published event not removed; the sweep retries", zap.Error(err))
	}
	return nil
}

// Run republishes final events a crash or a broker outage left unpublished
// and forgets records past the horizon, until ctx ends.
func (t *Tracker) Run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		t.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (t *Tracker) sweep(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	names, _ := filepath.Glob(filepath.Join(t.dir, "*.json"))
	for _, name := range names {
		rec, err := t.load(name)
		if err != nil {
			continue
		}
		switch {
		case rec.Published:
			_ = os.Remove(name)
		case rec.Final != "":
			if err := t.publish(ctx, name, rec); err != nil {
				t.log.Warn("delivery event not published; retrying", zap.Error(err))
				return
			}
		case t.now().Sub(rec.Updated) > partHorizon:
			_ = os.Remove(name) // its reports never came
		}
	}
}

// Reason describes a TP-ST (23.040 §9.2.3.15).
func Reason(st pdu.Status) string {
	switch st {
	case 0x40:
		return "remote procedure error"
	case 0x41:
		return "incompatible destination"
	case 0x42:
		return "connection rejected by SME"
	case 0x43:
		return "not obtainable"
	case 0x44, 0x64:
		return "quality of service not available"
	case 0x45:
		return "no interworking available"
	case 0x46:
		return "SM validity period expired"
	case 0x47:
		return "SM deleted by originating SME"
	case 0x48:
		return "SM deleted by SC administration"
	case 0x49:
		return "SM does not exist"
	case 0x60:
		return "congestion (SC stopped trying)"
	case 0x61:
		return "SME busy (SC stopped trying)"
	case 0x62:
		return "no response from SME (SC stopped trying)"
	case 0x63:
		return "service rejected (SC stopped trying)"
	case 0x65:
		return "error in SME (SC stopped trying)"
	}
	return fmt.Sprintf("TP-ST 0x%02X", byte(st))
}

// sameNumber compares numbers by digits, tolerating a national form on
// one side: the trailing nine digits decide.
func sameNumber(a, b string) bool {
	da, db := digits(a), digits(b)
	if da == "" || db == "" {
		return false
	}
	if da == db {
		return true
	}
	n := min(9, len(da), len(db))
	return len(da) >= 9 && len(db) >= 9 && da[len(da)-n:] == db[len(db)-n:]
}

func digits(v string) string {
	var b strings.Builder
	for _, r := range v {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (t *Tracker) file(smsID string) string {
	return filepath.Join(t.dir, schema.EventID("sms", smsID)+".json")
}

func (t *Tracker) load(name string) (*record, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("delivery: %s: %w", name, err)
	}
	if rec.Total < 1 || len(rec.Parts) != rec.Total {
		return nil, errors.New("delivery: inconsistent record " + name)
	}
	return &rec, nil
}

func (t *Tracker) save(name string, rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return durable.WriteFile(name, b)
}
