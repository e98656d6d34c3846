// Package inbox turns the PDUs the modem receives into events: it decodes
// SMS-DELIVER, reassembles concatenated messages (8- and 16-bit references,
// parts in any order, duplicates dropped), keeps partial messages durably
// in the data directory, forwards a partial message as incomplete after the
// reassembly timeout, and publishes each sms.received event to JetStream
// with a stable id. Status reports are handed on to the delivery tracker.
// Receive returns nil only when the PDU is safe (published, or on disk), so
// the modem deletes it from the SIM only then.
package inbox

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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

// keepDone is how long a completed message's record is kept, so a part
// read again after a crash (published, not yet deleted from the SIM) is
// recognised instead of starting a new partial message. It exceeds the
// events stream's duplicate window.
const keepDone = 48 * time.Hour

// Config configures the inbox.
type Config struct {
	Dir     string        // MODEM_DATA_DIR; state lives in Dir/inbox
	Timeout time.Duration // MODEM_REASSEMBLY_TIMEOUT
	// IMEI returns the modem's IMEI for the "modem" field.
	IMEI func() string
	// Canary reports whether a single-part text is a canary, which is
	// consumed instead of forwarded; nil when the canary is off.
	Canary func(from, text string) bool
	// Reports takes status reports; nil drops them (delivery reports off).
	Reports func(ctx context.Context, r *pdu.StatusReport) error
	Log     *zap.Logger
	Reg     prometheus.Registerer
	Now     func() time.Time
}

// Inbox implements gsm.Receiver.
type Inbox struct {
	cfg Config
	js  jetstream.Publisher
	dir string
	log *zap.Logger

	mu sync.Mutex // one PDU at a time, and the sweeper

	received   *prometheus.CounterVec
	invalid    prometheus.Counter
	partialNum prometheus.Gauge
}

// partial is one concatenated message on disk.
type partial struct {
	From   string           `json:"from"`
	Ref    int              `json:"ref"`
	Ref16  bool             `json:"ref16"`
	Total  int              `json:"total"`
	First  time.Time        `json:"first"` // when its first part arrived here
	Parts  map[int]partText `json:"parts"`
	DoneID string           `json:"done_id,omitempty"` // set once published
	DoneAt time.Time        `json:"done_at,omitzero"`
}

type partText struct {
	Text string    `json:"text"`
	SCTS time.Time `json:"scts"`
}

// New opens the state directory.
func New(cfg Config, js jetstream.Publisher) (*Inbox, error) {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IMEI == nil {
		cfg.IMEI = func() string { return "" }
	}
	in := &Inbox{cfg: cfg, js: js, dir: filepath.Join(cfg.Dir, "inbox"), log: cfg.Log,
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_modem_incoming_total", Help: "Incoming SMS published, by completeness.",
		}, []string{"complete"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sms_modem_incoming_quarantined_total", Help: "Incoming PDUs that could not be decoded, kept in MODEM_DATA_DIR/inbox/invalid.",
		}),
		partialNum: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sms_modem_incoming_partial", Help: "Concatenated SMS waiting for parts.",
		}),
	}
	for _, d := range []string{"partial", "invalid"} {
		if err := os.MkdirAll(filepath.Join(in.dir, d), 0o750); err != nil {
			return nil, fmt.Errorf("inbox: %w", err)
		}
	}
	if cfg.Reg != nil {
		cfg.Reg.MustRegister(in.received, in.invalid, in.partialNum)
	}
	return in, nil
}

// Receive takes one TPDU from the modem.
func (in *Inbox) Receive(ctx context.Context, tpdu []byte) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(tpdu) == 0 {
		return in.quarantine(tpdu, errors.New("empty TPDU"))
	}
	switch tpdu[0] & 0x03 {
	case 0x02:
		r, err := pdu.DecodeStatusReport(tpdu)
		if err != nil {
			return in.quarantine(tpdu, err)
		}
		if in.cfg.Reports == nil {
			return nil
		}
		return in.cfg.Reports(ctx, r)
	case 0x00:
	default:
		return in.quarantine(tpdu, fmt.Errorf("TP-MTI %d is neither SMS-DELIVER nor SMS-STATUS-REPORT", tpdu[0]&0x03))
	}
	d, err := pdu.DecodeDeliver(tpdu)
	if err != nil {
		return in.quarantine(tpdu, err)
	}
	if d.Concat == nil || d.Concat.Total < 2 {
		if in.cfg.Canary != nil && in.cfg.Canary(d.From.Value, d.Text) {
			return nil
		}
		ev := schema.Received{
			Event: schema.EventReceived, From: d.From.Value, Text: d.Text, ReceivedAt: d.SCTS,
			Parts: 1, Complete: true, Modem: in.cfg.IMEI(),
			ID: schema.EventID("rcv", d.From.Value, d.SCTS.UTC().Format(time.RFC3339), hex.EncodeToString(tpdu)),
		}
		return in.publish(ctx, ev)
	}
	return in.part(ctx, d)
}

// part adds one part of a concatenated message and publishes the message
// once every part is in.
func (in *Inbox) part(ctx context.Context, d *pdu.Deliver) error {
	c := d.Concat
	name := filepath.Join(in.dir, "partial", schema.EventID("p", d.From.Value, strconv.FormatBool(c.Ref16),
		strconv.Itoa(int(c.Ref)), strconv.Itoa(c.Total))+".json")
	p, err := load(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p = &partial{From: d.From.Value, Ref: int(c.Ref), Ref16: c.Ref16, Total: c.Total, First: in.cfg.Now(), Parts: map[int]partText{}}
	case err != nil:
		return err
	}
	if p.DoneID != "" {
		// Published before a crash kept it on the SIM; a later message
		// reusing the reference after keepDone starts afresh.
		if in.cfg.Now().Sub(p.DoneAt) < keepDone {
			return nil
		}
		p = &partial{From: d.From.Value, Ref: int(c.Ref), Ref16: c.Ref16, Total: c.Total, First: in.cfg.Now(), Parts: map[int]partText{}}
	}
	if _, dup := p.Parts[c.Seq]; !dup {
		p.Parts[c.Seq] = partText{Text: d.Text, SCTS: d.SCTS}
		if err := save(name, p); err != nil {
			return err
		}
	}
	if len(p.Parts) < p.Total {
		in.log.Debug("part kept", logging.Phone(p.From), zap.Int("seq", c.Seq), zap.Int("total", p.Total), zap.Int("have", len(p.Parts)))
		in.countPartials()
		return nil
	}
	return in.finish(ctx, name, p, true)
}

// finish publishes a partial message, complete or not, and marks it done.
func (in *Inbox) finish(ctx context.Context, name string, p *partial, complete bool) error {
	seqs := make([]int, 0, len(p.Parts))
	for s := range p.Parts {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	var text strings.Builder
	idParts := []string{p.From, strconv.FormatBool(p.Ref16), strconv.Itoa(p.Ref), strconv.Itoa(p.Total), strconv.FormatBool(complete)}
	at := p.Parts[seqs[0]].SCTS
	for _, s := range seqs {
		pt := p.Parts[s]
		text.WriteString(pt.Text)
		idParts = append(idParts, strconv.Itoa(s), pt.SCTS.UTC().Format(time.RFC3339), pt.Text)
	}
	ev := schema.Received{
		Event: schema.EventReceived, ID: schema.EventID("rcv", idParts...), From: p.From, Text: text.String(),
		ReceivedAt: at, Parts: p.Total, Complete: complete, Modem: in.cfg.IMEI(),
	}
	if err := in.publish(ctx, ev); err != nil {
		return err
	}
	p.DoneID, p.DoneAt = ev.ID, in.cfg.Now()
	if err := save(name, p); err != nil {
		return err
	}
	in.countPartials()
	return nil
}

func (in *Inbox) publish(ctx context.Context, ev schema.Received) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err := in.js.Publish(ctx, ev.Subject(), body, jetstream.WithMsgID(ev.ID)); err != nil {
		return fmt.Errorf("publish %s: %w", ev.ID, err)
	}
	in.received.WithLabelValues(strconv.FormatBool(ev.Complete)).Inc()
	in.log.Info("incoming SMS published", zap.String("id", ev.ID), logging.Phone(ev.From),
		zap.Int("parts", ev.Parts), zap.Bool("complete", ev.Complete))
	return nil
}

// quarantine keeps an undecodable PDU on disk for a human and reports it
// safe, so garbage never fills the SIM store.
func (in *Inbox) quarantine(tpdu []byte, why error) error {
	name := filepath.Join(in.dir, "invalid", schema.EventID("bad", hex.EncodeToString(tpdu))+".hex")
	if err := durable.WriteFile(name, []byte(hex.EncodeToString(tpdu)+"\n")); err != nil {
		return err
	}
	in.invalid.Inc()
	in.log.Warn("undecodable incoming PDU quarantined", zap.String("file", name), zap.Error(why))
	return nil
}

// Run forwards partial messages older than the timeout as incomplete and
// forgets completed ones after keepDone, until ctx ends.
func (in *Inbox) Run(ctx context.Context) {
	every := min(max(in.cfg.Timeout/4, 100*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		in.Sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep runs one round of Run.
func (in *Inbox) Sweep(ctx context.Context) {
	in.mu.Lock()
	defer in.mu.Unlock()
	names, _ := filepath.Glob(filepath.Join(in.dir, "partial", "*.json"))
	now := in.cfg.Now()
	for _, name := range names {
		p, err := load(name)
		switch {
		case err != nil:
			in.log.Warn("unreadable partial message", zap.String("file", name), zap.Error(err))
		case p.DoneID != "" && now.Sub(p.DoneAt) > keepDone:
			_ = os.Remove(name)
		case p.DoneID == "" && now.Sub(p.First) >= in.cfg.Timeout:
			in.log.Warn("forwarding an incomplete message after the reassembly timeout",
				logging.Phone(p.From), zap.Int("have", len(p.Parts)), zap.Int("total", p.Total))
			if err := in.finish(ctx, name, p, false); err != nil {
				in.log.Warn("incomplete message not published; retrying", zap.Error(err))
			}
		}
	}
	in.countPartials()
}

func (in *Inbox) countPartials() {
	names, _ := filepath.Glob(filepath.Join(in.dir, "partial", "*.json"))
	n := 0
	for _, name := range names {
		if p, err := load(name); err == nil && p.DoneID == "" {
			n++
		}
	}
	in.partialNum.Set(float64(n))
}

func load(name string) (*partial, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var p partial
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("inbox: %s: %w", name, err)
	}
	if p.Parts == nil {
		p.Parts = map[int]partText{}
	}
	return &p, nil
}

func save(name string, p *partial) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return durable.WriteFile(name, b)
}
