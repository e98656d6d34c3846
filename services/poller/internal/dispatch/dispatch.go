// Package dispatch is the poller's half of the pipeline: it claims SMS from
// the API only while the modem is ready and the job queue is short, turns
// each claim into one idempotently published job, and turns each result
// from the modem into a confirmed PATCH before acknowledging it.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/poller/internal/claims"
	"github.com/sensorsreport/smsgw/shared/backoff"
	"github.com/sensorsreport/smsgw/shared/clock"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// Claim is one SMS the API handed us (and already marked Entrusted).
type Claim struct {
	ID, Tenant, Phone, Message, Country string
	Timestamp                           time.Time
	TTL                                 time.Duration // 0: schema.DefaultTTL
	RetryCount                          int
	// Invalid says why the API's answer cannot be sent (fields of the
	// wrong type, say). The SMS is Entrusted to us all the same, so it is
	// reported Failed at once with the Id and Tenant that could be read.
	Invalid string
}

// Verdict is what a failed status update means for its result.
type Verdict int

const (
	// Retry: the SMS may still be Entrusted upstream; keep the result and
	// try again later. Everything not provably hopeless is Retry.
	Retry Verdict = iota
	// Gone: the SMS provably no longer exists upstream.
	Gone
	// Unreportable: the API can never take this update (no tenant, say).
	Unreportable
)

// Upstream is the SMS API as the dispatcher needs it.
type Upstream interface {
	// Claim takes the next Pending SMS for country cc, or returns nil.
	Claim(ctx context.Context, cc string) (*Claim, error)
	// Report PATCHes a result and confirms the API applied it.
	Report(ctx context.Context, r schema.Result) error
	// Verdict classifies a Report error.
	Verdict(err error) Verdict
	// Status reads an SMS's current upstream status.
	Status(ctx context.Context, tenant, id string) (schema.Status, error)
}

// Queue is the broker as the dispatcher needs it.
type Queue interface {
	JetStream() jetstream.JetStream
	Conn() *nats.Conn
	JobsByCountry(ctx context.Context) (map[string]int, error)
}

// Config tunes the dispatcher.
type Config struct {
	Countries    []string
	PollInterval time.Duration // idle wait when the API has nothing for us
	// MaxQueued is how many unsent jobs may wait in the stream per ready
	// modem. Every claim starts the SMS's clock upstream, so claiming far
	// ahead of the modems only strands SMS until their TTL passes.
	MaxQueued int
	// Claims records every claim (required).
	Claims *claims.Store
	// Clock is the trusted time (required): the SMS API's, learned from its
	// Date headers. The modem asks for it on schema.ClockSubject.
	Clock *clock.Clock
	Log   *zap.Logger
	Reg   prometheus.Registerer
}

// Dispatcher runs the claim and report loops.
type Dispatcher struct {
	cfg Config
	up  Upstream
	q   Queue
	log *zap.Logger
	m   metrics

	wake chan struct{} // a result arrived or a modem became ready

	mu       sync.Mutex
	modems   map[string]*modemView // by MODEM_ID
	inflight map[string]time.Time  // job id -> claimed at (metrics only)
	apiErr   error
	apiOKAt  time.Time
}

// New builds a dispatcher.
func New(cfg Config, up Upstream, q Queue) *Dispatcher {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Second
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 2
	}
	d := &Dispatcher{
		cfg: cfg, up: up, q: q, log: cfg.Log, m: newMetrics(cfg.Reg),
		wake: make(chan struct{}, 1), inflight: map[string]time.Time{}, modems: map[string]*modemView{},
	}
	if cfg.Reg != nil {
		cfg.Reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "sms_poller_jobs_in_flight", Help: "Jobs queued by this process and not yet reported.",
			}, func() float64 { d.mu.Lock(); defer d.mu.Unlock(); return float64(len(d.inflight)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "sms_poller_oldest_job_age_seconds", Help: "Age of the oldest job in flight.",
			}, func() float64 { return d.OldestInFlight().Seconds() }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "sms_poller_modem_ready", Help: "1 while a fresh heartbeat of at least one modem says ready.",
			}, func() float64 { return boolGauge(d.ModemReady() == nil) }),
			modemCollector{d},
		)
	}
	return d
}

// Run runs until ctx ends, then stops claiming, reports the results that are
// already waiting (up to drain) and returns. Claims stranded by an earlier
// crash are re-queued beside claiming, never before it.
func (d *Dispatcher) Run(ctx context.Context, drain time.Duration) error {
	nc := d.q.Conn()
	sub, err := nc.Subscribe(schema.StatusFilter, d.onModemStatus)
	if err != nil {
		return fmt.Errorf("subscribe modem status: %w", err)
	}
	defer sub.Unsubscribe()
	clockSub, err := nc.Subscribe(schema.ClockSubject, d.onClockRequest)
	if err != nil {
		return fmt.Errorf("subscribe clock requests: %w", err)
	}
	defer clockSub.Unsubscribe()

	var wg sync.WaitGroup
	wg.Go(func() { d.requeueStranded(ctx) })
	wg.Go(func() { d.claimLoop(ctx) })
	wg.Go(func() { d.releaseLoop(ctx) })
	d.reportLoop(ctx, drain)
	wg.Wait()
	return nil
}

// onClockRequest answers the modem's request for the trusted time.
func (d *Dispatcher) onClockRequest(m *nats.Msg) {
	r := schema.ClockReading{V: schema.Version}
	now, src, err := d.cfg.Clock.Now()
	if err != nil {
		r.Error = err.Error()
	} else {
		r.Now, r.Source = now, string(src)
	}
	b, _ := json.Marshal(r)
	_ = m.Respond(b)
}

// now is the trusted time, or the local clock when there is none yet (the
// modem checks again before sending, and sends nothing without one).
func (d *Dispatcher) now() time.Time {
	if t, _, err := d.cfg.Clock.Now(); err == nil {
		return t
	}
	return time.Now()
}

func (d *Dispatcher) onModemStatus(m *nats.Msg) {
	st, err := schema.Decode[schema.ModemStatus](m.Data)
	if err != nil {
		d.log.Warn("bad modem status", zap.String("subject", m.Subject), zap.Error(err))
		return
	}
	// The subject is the modem's identity (its permissions allow one
	// token); a body claiming another id is not trusted.
	id := strings.TrimPrefix(m.Subject, schema.StatusSubject+".")
	if st.ID != id {
		d.log.Warn("modem status with an id that is not its subject's; ignored", zap.String("subject", m.Subject), zap.String("id", st.ID))
		return
	}
	now := time.Now()
	d.mu.Lock()
	wasReady := d.readyCountLocked(now)
	v, ok := d.modems[id]
	if !ok {
		v = &modemView{}
		d.modems[id] = v
	}
	// Two processes beating with one MODEM_ID while both are fresh: neither
	// counts until one has been silent for its validity.
	dup := ok && v.st.Instance != st.Instance && v.freshAt(now)
	if dup {
		v.conflictUntil = now.Add(max(time.Duration(v.st.ValidFor), time.Duration(st.ValidFor)))
	}
	v.st, v.seenAt = st, now
	d.pruneLocked(now)
	nowReady := d.readyCountLocked(now)
	d.mu.Unlock()
	if dup {
		d.log.Error("two modems use the same MODEM_ID; claiming nothing for it until one stops", zap.String("modem", id))
	}
	if nowReady > wasReady {
		d.log.Info("modem ready; claiming", zap.String("modem", id), zap.String("operator", st.Operator),
			zap.Int("signal", st.Signal), zap.Strings("countries", st.Countries), zap.Int("ready_modems", nowReady))
		d.poke()
	} else if nowReady < wasReady {
		d.log.Warn("modem not ready", zap.String("modem", id), zap.String("reason", st.Reason), zap.Int("ready_modems", nowReady))
	}
}

// releaseLoop hands back the job a modem held when its heartbeat stopped
// (SIGKILL, power cut, cable): a Nak on the job's ack subject redelivers it
// to another modem now, not after JOB_ACK_WAIT. Whether that modem may
// send it is for the SMS_ATTEMPTS record to say: a job the dead modem may
// have handed to its hardware is reported Unknown, never sent twice.
func (d *Dispatcher) releaseLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.releaseHeld()
	}
}

// heldPrefix is what every ack subject of a modem's job starts with; the
// jobs consumer's name (modem-<CC>) follows.
const heldPrefix = "$JS.ACK." + schema.JobsStream + "."

// heldCountry checks that subject, from a modem's heartbeat, is the ack
// subject of a job of a jobs consumer ($JS.ACK.SMS_JOBS.modem-<CC> and the
// five numbers of a delivery) and returns the consumer's country.
func heldCountry(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, heldPrefix)
	if !ok || strings.ContainsAny(subject, "*> \t\r\n") {
		return "", false
	}
	tokens := strings.Split(rest, ".")
	if len(tokens) != 6 {
		return "", false
	}
	for _, n := range tokens[1:] {
		if _, err := strconv.ParseUint(n, 10, 64); err != nil {
			return "", false
		}
	}
	return schema.JobsConsumerCountry(tokens[0])
}

func (d *Dispatcher) releaseHeld() {
	now := time.Now()
	type held struct{ modem, subject string }
	var todo []held
	d.mu.Lock()
	for id, v := range d.modems {
		if h := v.st.Holding; h != "" && h != v.released && !v.freshAt(now) {
			v.released = h
			todo = append(todo, held{id, h})
		}
	}
	d.mu.Unlock()
	for _, h := range todo {
		log := d.log.With(zap.String("modem", h.modem))
		// The subject comes from a modem's heartbeat: only a job's ack
		// subject is ever published to, never anything it names.
		cc, ok := heldCountry(h.subject)
		if !ok {
			d.m.released.WithLabelValues("refused").Inc()
			log.Error("modem heartbeat names a held job that is no job's ack subject; ignored", zap.String("holding", h.subject))
			continue
		}
		if err := d.q.Conn().Publish(h.subject, []byte("-NAK")); err != nil {
			d.m.released.WithLabelValues("error").Inc()
			log.Warn("could not hand back the silent modem's job; it returns after JOB_ACK_WAIT", zap.Error(err))
			continue
		}
		d.m.released.WithLabelValues("nak").Inc()
		d.wakeModems(cc)
		log.Warn("modem went silent holding a job; handed it to the other modems")
	}
}

// forgetAfter is how long a silent modem stays listed (check, metrics).
const forgetAfter = time.Hour

// modemView is the latest heartbeat of one modem.
type modemView struct {
	st            schema.ModemStatus
	released      string    // the held job's ack subject this poller Nak'ed
	seenAt        time.Time // local monotonic clock, never the beat's own time
	conflictUntil time.Time // another process beat with the same MODEM_ID
}

func (v *modemView) freshAt(now time.Time) bool {
	return now.Sub(v.seenAt) < time.Duration(v.st.ValidFor)
}

func (v *modemView) readyAt(now time.Time) bool {
	return v.st.Ready && v.freshAt(now) && !now.Before(v.conflictUntil)
}

// serves reports whether the modem takes jobs for country cc.
func (v *modemView) serves(cc string) bool {
	return len(v.st.Countries) == 0 || slices.Contains(v.st.Countries, cc)
}

// state is the modem's state (a sms_poller_modem_up state) and why.
func (v *modemView) state(now time.Time) (string, string) {
	switch {
	case now.Before(v.conflictUntil):
		return stateConflict, "another modem uses the same MODEM_ID"
	case !v.freshAt(now):
		return stateSilent, fmt.Sprintf("no heartbeat for %s", now.Sub(v.seenAt).Round(time.Second))
	case v.st.Ready:
		return stateReady, ""
	case v.st.Limited:
		return stateLimited, v.st.Reason
	}
	return stateNotReady, v.st.Reason
}

func (d *Dispatcher) readyCountLocked(now time.Time) int {
	n := 0
	for _, v := range d.modems {
		if v.readyAt(now) {
			n++
		}
	}
	return n
}

func (d *Dispatcher) pruneLocked(now time.Time) {
	for id, v := range d.modems {
		if now.Sub(v.seenAt) > forgetAfter {
			delete(d.modems, id)
		}
	}
}

// served is a country some ready modem serves, and how many do.
type served struct {
	cc     string
	modems int
}

// readyFor returns how many modems are ready now and which of countries
// at least one of them serves (with how many), in countries' order.
func (d *Dispatcher) readyFor(countries []string) (int, []served) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []served
	for _, cc := range countries {
		n := 0
		for _, v := range d.modems {
			if v.readyAt(now) && v.serves(cc) {
				n++
			}
		}
		if n > 0 {
			out = append(out, served{cc, n})
		}
	}
	return d.readyCountLocked(now), out
}

// ModemInfo is one modem as the poller sees it.
type ModemInfo struct {
	ID        string
	Ready     bool
	State     string   // ready, not_ready, limited, silent or conflict
	Reason    string   // why not ready
	Countries []string // empty: any
	Holding   bool     // its heartbeat names a job it holds
	RateLimit []schema.RateWindow
}

// Modems lists every modem heard from in the last hour, by id.
func (d *Dispatcher) Modems() []ModemInfo {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]ModemInfo, 0, len(d.modems))
	for id, v := range d.modems {
		state, reason := v.state(now)
		out = append(out, ModemInfo{ID: id, Ready: v.readyAt(now), State: state, Reason: reason, Countries: v.st.Countries, Holding: v.st.Holding != "", RateLimit: v.st.RateLimit})
	}
	slices.SortFunc(out, func(a, b ModemInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// ModemReady is nil while a fresh heartbeat of at least one modem says it
// can send, else why not.
func (d *Dispatcher) ModemReady() error {
	ms := d.Modems()
	if len(ms) == 0 {
		return errors.New("no heartbeat from any modem yet")
	}
	var why []string
	for _, m := range ms {
		if m.Ready {
			return nil
		}
		why = append(why, m.ID+": "+m.State+" "+m.Reason)
	}
	return fmt.Errorf("no modem ready (%s)", strings.Join(why, "; "))
}

// APIHealthy reports the outcome of the latest API call.
func (d *Dispatcher) APIHealthy() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.apiErr
}

func (d *Dispatcher) apiResult(err error) {
	d.mu.Lock()
	d.apiErr = err
	if err == nil {
		d.apiOKAt = time.Now()
	}
	d.mu.Unlock()
}

func (d *Dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// wait blocks for dur, a poke, or ctx's end.
func (d *Dispatcher) wait(ctx context.Context, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-d.wake:
	case <-t.C:
	}
	return true
}

// requeueStranded re-queues the claims an earlier run recorded but never
// got a result for: a crash between the claim record and the job's publish
// leaves them Entrusted upstream. It knows them from its own records, so it
// never takes another gateway's SMS, and it reads each one by id with its
// tenant, which every API generation answers. A job that is still queued or
// was already handled is absorbed by the stream's dedup window and, behind
// it, the modem's ledger.
func (d *Dispatcher) requeueStranded(ctx context.Context) {
	b := backoff.New(time.Second, time.Minute)
	var recs []claims.Record
	for {
		var err error
		if recs, err = d.cfg.Claims.Queued(ctx); err == nil {
			break
		}
		d.log.Warn("cannot read the claim records; retrying", zap.Error(err))
		if !b.Wait(ctx) {
			return
		}
	}
	requeued := 0
	for _, rec := range recs {
		if rec.Job == nil {
			continue
		}
		b.Reset()
		for {
			st, err := d.up.Status(ctx, rec.Tenant, rec.SmsID)
			d.apiResult(err)
			if err == nil {
				if d.requeue(ctx, rec, st) {
					requeued++
				}
				break
			}
			if d.up.Verdict(err) != Retry {
				d.log.Info("claimed SMS no longer exists upstream; nothing to re-queue", zap.String("sms", rec.SmsID), zap.Error(err))
				break
			}
			d.log.Warn("cannot read a claimed SMS; retrying", zap.String("sms", rec.SmsID), zap.Error(err))
			if !b.Wait(ctx) {
				return
			}
		}
	}
	if len(recs) > 0 {
		d.log.Info("checked claims left from the last run", zap.Int("open", len(recs)), zap.Int("requeued", requeued))
	}
}

// requeue republishes rec's job (or the result queued instead of one) if
// the SMS is still Entrusted upstream.
func (d *Dispatcher) requeue(ctx context.Context, rec claims.Record, st schema.Status) bool {
	switch {
	case st == schema.StatusEntrusted && rec.Result != nil:
		r := *rec.Result
		if err := d.publish(ctx, r.Subject(), r.MsgID(), r, schema.ResultsStream); err != nil {
			d.log.Error("could not re-queue a result", zap.String("sms", rec.SmsID), zap.Error(err))
		}
		return true
	case st == schema.StatusEntrusted && !slices.Contains(d.cfg.Countries, schema.JobCountry(rec.Job.CountryCode)):
		// No jobs consumer may exist for it any more, so a job would wait
		// for ever; the API hands it out again after its trust timeout.
		d.log.Warn("stranded claim of a country no longer in SMS_COUNTRIES; not re-queued",
			zap.String("sms", rec.SmsID), zap.String("country", rec.Job.CountryCode))
	case st == schema.StatusEntrusted:
		d.publishJob(ctx, *rec.Job, d.log.With(zap.String("sms", rec.SmsID), zap.String("tenant", rec.Tenant)))
		return true
	case st.Final():
		// Reported (perhaps by a result we are about to see again).
		if err := d.cfg.Claims.Finish(ctx, rec.Tenant, rec.SmsID, claims.Reported, st, d.now()); err != nil {
			d.log.Warn("claim record not updated", zap.Error(err))
		}
	}
	// Pending: the API re-queued it; the next claim brings it back.
	return false
}

func (d *Dispatcher) claimLoop(ctx context.Context) {
	errWait := backoff.New(time.Second, time.Minute)
	next := 0 // round-robin start, so one busy country cannot starve another
	for ctx.Err() == nil {
		ready, served := d.readyFor(d.cfg.Countries)
		if ready == 0 || len(served) == 0 {
			d.wait(ctx, d.cfg.PollInterval)
			continue
		}
		byCC, err := d.q.JobsByCountry(ctx)
		if err != nil {
			d.log.Warn("cannot read the job queue depth", zap.Error(err))
			d.wait(ctx, time.Second)
			continue
		}
		total, queued := 0, 0
		for _, n := range byCC {
			total += n
		}
		d.m.queued.Set(float64(total))
		// MAX_QUEUED_JOBS per ready modem, over the countries ready modems
		// serve and for each country over the modems serving it: the jobs
		// of a country no ready modem serves (its SIM rate-limited, say)
		// wait for it without holding up the others.
		var countries []string
		for _, s := range served {
			queued += byCC[s.cc]
			if byCC[s.cc] < d.cfg.MaxQueued*s.modems {
				countries = append(countries, s.cc)
			}
		}
		if queued >= d.cfg.MaxQueued*ready || len(countries) == 0 {
			// Back-pressure: results poke us; the timer covers a result
			// that was acked before we started waiting.
			d.wait(ctx, 250*time.Millisecond)
			continue
		}
		claimed, err := d.claimOne(ctx, countries, &next)
		switch {
		case err != nil:
			if !errWait.Wait(ctx) {
				return
			}
		case claimed:
			errWait.Reset() // work exists: claim again at once
		default:
			errWait.Reset()
			d.wait(ctx, d.cfg.PollInterval)
		}
	}
}

// claimOne asks each country some ready modem serves in turn and queues
// the first SMS it gets.
func (d *Dispatcher) claimOne(ctx context.Context, countries []string, next *int) (bool, error) {
	n := len(countries)
	for i := 0; i < n; i++ {
		cc := countries[(*next+i)%n]
		c, err := d.up.Claim(ctx, cc)
		d.apiResult(err)
		if err != nil {
			d.m.claims.WithLabelValues(cc, "error").Inc()
			if ctx.Err() == nil {
				d.log.Warn("claim failed", zap.String("country", cc), zap.Error(err))
			}
			return false, err
		}
		if c == nil {
			d.m.claims.WithLabelValues(cc, "empty").Inc()
			d.log.Debug("nothing to send", zap.String("country", cc))
			continue
		}
		d.m.claims.WithLabelValues(cc, "claimed").Inc()
		*next = (*next + i + 1) % n
		d.enqueue(ctx, c, cc)
		return true, nil
	}
	return false, nil
}

// enqueue records the claim and publishes it as a job, or, when it must
// not be sent (unusable, already stale, too big), as a Failed or Expired
// result. The SMS is Entrusted upstream now, so the publish is retried even
// through shutdown for a while: losing it here would leave it stranded
// until the next start re-queues it from the claim record.
func (d *Dispatcher) enqueue(ctx context.Context, c *Claim, claimed string) {
	now := d.now()
	ttl := c.TTL
	if ttl <= 0 {
		ttl = schema.DefaultTTL
	}
	log := d.log.With(zap.String("sms", c.ID), zap.String("tenant", c.Tenant), logging.Phone(c.Phone))
	job := schema.Job{
		V: schema.Version, ID: schema.JobID(c.ID, c.RetryCount), SmsID: c.ID, Tenant: c.Tenant,
		PhoneNumber: c.Phone, Message: c.Message, CountryCode: d.route(c.Country, claimed, log),
		CreatedAt: c.Timestamp, ExpiresAt: c.Timestamp.Add(ttl), ClaimedAt: now,
	}
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	result := func(st schema.Status, code, reason string) schema.Result {
		return schema.Result{V: schema.Version, JobID: job.ID, SmsID: job.SmsID, Tenant: job.Tenant, Status: st, Code: code, Reason: reason}
	}
	data, err := json.Marshal(job)
	switch {
	case c.Tenant == "":
		// Without a tenant the API can take no status for it (contract
		// §1.5), and sending it would leave it Entrusted to be claimed and
		// answered again: it is kept for an operator instead.
		d.m.claimRefused.WithLabelValues("no_tenant").Inc()
		log.Error("claimed SMS has no tenant; not sending it, dead-lettered", zap.String("invalid", c.Invalid))
		_ = d.deadLetter(pubCtx, result(schema.StatusFailed, schema.CodeBadJob, "no tenant"), "the SMS has no tenant, so no status can ever be reported for it")
	case c.Invalid != "":
		d.m.claimRefused.WithLabelValues("invalid").Inc()
		log.Error("claimed SMS is unusable; reporting Failed", zap.String("reason", c.Invalid))
		d.issueResult(pubCtx, job, result(schema.StatusFailed, schema.CodeBadJob, "unusable SMS from the API: "+c.Invalid), log)
	case job.Expired(now):
		log.Info("claimed SMS is already past its TTL; reporting Expired", zap.Time("expired_at", job.ExpiresAt))
		d.issueResult(pubCtx, job, result(schema.StatusExpired, schema.CodeExpired, "TTL passed before the gateway claimed it"), log)
	case err != nil || len(data) > schema.MaxMessageBytes:
		d.m.claimRefused.WithLabelValues("too_long").Inc()
		log.Error("claimed SMS is too long to queue; reporting Failed", zap.Int("chars", len([]rune(c.Message))))
		d.issueResult(pubCtx, job, result(schema.StatusFailed, schema.CodeTooLong,
			fmt.Sprintf("message of %d characters is longer than any SMS the gateway can send", len([]rune(c.Message)))), log)
	default:
		if err := d.record(pubCtx, job, nil, log); err != nil {
			return
		}
		if d.publishJob(pubCtx, job, log) {
			log.Info("SMS queued for the modem", zap.String("job", job.ID), zap.Int("chars", len([]rune(job.Message))))
		}
	}
}

// record writes the claim record before anything is published for it: a
// result is accepted only for a recorded job, and a restart re-queues it.
func (d *Dispatcher) record(ctx context.Context, job schema.Job, result *schema.Result, log *zap.Logger) error {
	b := backoff.New(50*time.Millisecond, 2*time.Second)
	for {
		err := d.cfg.Claims.Issue(ctx, job, result, d.now())
		if err == nil {
			return nil
		}
		log.Warn("claim record not written; retrying", zap.Error(err))
		if !b.Wait(ctx) {
			log.Error("claimed SMS could not be recorded; the API's trust timeout will hand it out again", zap.Error(err))
			return err
		}
	}
}

// issueResult records the claim and queues a result for it without a job.
func (d *Dispatcher) issueResult(ctx context.Context, job schema.Job, r schema.Result, log *zap.Logger) {
	if err := d.record(ctx, job, &r, log); err != nil {
		return
	}
	if err := d.publish(ctx, r.Subject(), r.MsgID(), r, schema.ResultsStream); err != nil {
		log.Error("could not queue the result; the next start re-queues the claim", zap.Error(err))
	}
}

// publishJob queues the job for the modem.
func (d *Dispatcher) publishJob(ctx context.Context, job schema.Job, log *zap.Logger) bool {
	if err := d.publish(ctx, schema.JobSubject(job.CountryCode), job.ID, job, schema.JobsStream); err != nil {
		log.Error("claimed SMS could not be queued; the next start re-queues it", zap.Error(err))
		return false
	}
	d.wakeModems(job.CountryCode)
	d.mu.Lock()
	d.inflight[job.ID] = time.Now()
	d.mu.Unlock()
	d.m.jobs.Inc()
	return true
}

// wakeModems tells the modems that pull from several jobs consumers that
// a job for cc is waiting now (a modem with one consumer waits in a pull
// and needs no word). It is a hint: a lost one costs a modem's slow
// re-check, never a job.
func (d *Dispatcher) wakeModems(cc string) {
	if err := d.q.Conn().Publish(schema.WakeSubjectFor(cc), nil); err != nil {
		d.log.Debug("wake modems", zap.Error(err))
	}
}

// route is the country a claimed SMS is queued for: its own CountryCode
// (which the API's per-country claim makes equal to claimed) when this
// poller claims that country, else the country it was claimed for. Only
// the claimed countries have a jobs consumer and a ready modem serving
// them; a job queued for any other would wait for ever.
func (d *Dispatcher) route(country, claimed string, log *zap.Logger) string {
	cc := schema.JobCountry(strings.ToUpper(country))
	if slices.Contains(d.cfg.Countries, cc) || claimed == "" {
		return cc
	}
	log.Warn("claimed SMS names a country this poller does not claim; queued for the country it was claimed for",
		zap.String("country_code", country), zap.String("claimed_for", claimed))
	return claimed
}

func (d *Dispatcher) publish(ctx context.Context, subject, msgID string, v any, stream string) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b := backoff.New(50*time.Millisecond, 2*time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = d.q.JetStream().Publish(pctx, subject, data, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(stream))
		cancel()
		if err == nil {
			return nil
		}
		d.log.Warn("publish failed; retrying", zap.String("subject", subject), zap.Error(err))
		if !b.Wait(ctx) {
			return err
		}
	}
}

// reportLoop PATCHes every result and acks it only after the API confirmed.
func (d *Dispatcher) reportLoop(ctx context.Context, drain time.Duration) {
	js := d.q.JetStream()
	var cons jetstream.Consumer
	for {
		var err error
		cons, err = js.Consumer(ctx, schema.ResultsStream, schema.ResultsConsumer)
		if err == nil {
			break
		}
		d.log.Warn("results consumer not available", zap.Error(err))
		if !backoff.Sleep(ctx, time.Second) {
			return
		}
	}
	// On shutdown keep reporting for up to drain, so results that are
	// already here reach the API before the broker stops.
	workCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopTimer := context.AfterFunc(ctx, func() { time.AfterFunc(drain, cancel) })
	defer stopTimer()
	for workCtx.Err() == nil {
		draining := ctx.Err() != nil
		wait := 30 * time.Second // a result ends the wait at once; a long pull keeps an idle Pi quiet
		if draining {
			wait = 300 * time.Millisecond
		}
		nctx, ncancel := context.WithTimeout(workCtx, wait)
		stopPull := func() bool { return false }
		if !draining {
			// Shutdown cuts an idle long pull short; the drain uses short ones.
			stopPull = context.AfterFunc(ctx, ncancel)
		}
		msg, err := cons.Next(jetstream.FetchContext(nctx))
		stopPull()
		ncancel()
		if err != nil {
			if draining {
				return // drained: nothing arrived within the short wait
			}
			if ctx.Err() != nil {
				continue // the long pull was cut short: drain now
			}
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && workCtx.Err() == nil {
				d.log.Warn("pull results", zap.Error(err))
				backoff.Sleep(workCtx, time.Second)
			}
			continue
		}
		d.report(workCtx, msg)
	}
}

// report PATCHes one result. It reports only what a modem may report, and
// only for a job this poller issued; it gives a result up only when the SMS
// provably no longer exists (or can never be addressed), and then into the
// dead-letter stream, never silently.
func (d *Dispatcher) report(ctx context.Context, msg jetstream.Msg) {
	r, err := schema.Decode[schema.Result](msg.Data())
	switch {
	case err != nil || r.SmsID == "" || r.JobID == "":
		d.refuse(msg, "undecodable", fmt.Sprintf("result without ids (%v)", err), zap.ByteString("data", clip(msg.Data())))
		return
	case !schema.Reportable(r.Status):
		d.refuse(msg, "status", "a modem may report only Sent, Failed, Expired or Unknown", zap.String("sms", r.SmsID), zap.Stringer("status", r.Status))
		return
	}
	log := d.log.With(zap.String("sms", r.SmsID), zap.String("job", r.JobID), zap.Stringer("status", r.Status))
	rec, err := d.cfg.Claims.Get(ctx, r.Tenant, r.SmsID)
	switch {
	case errors.Is(err, claims.ErrNotFound) || (err == nil && !rec.Issued(r.JobID)):
		d.refuse(msg, "not_issued", "no job of this poller matches the result", zap.String("sms", r.SmsID), zap.String("job", r.JobID))
		return
	case err != nil:
		log.Warn("claim record unreadable; retrying the result", zap.Error(err))
		_ = msg.NakWithDelay(2 * time.Second)
		return
	case rec.State == claims.Reported && r.Status == schema.StatusUnknown:
		// Another modem that found the SMS attempted elsewhere says Unknown
		// about a job whose result is already in (a failover after the
		// first modem reported but before it acked): it knows less.
		d.m.refused.WithLabelValues("already_reported").Inc()
		log.Warn("result refused: Unknown after the SMS was reported", zap.Stringer("reported", rec.Status))
		_ = msg.TermWithReason("refused: already_reported")
		return
	}
	err = d.up.Report(ctx, r)
	d.apiResult(err)
	if err == nil {
		if err := msg.DoubleAck(ctx); err != nil {
			log.Warn("result ack not confirmed; it may be reported again (PATCH is idempotent)", zap.Error(err))
		}
		if err := d.cfg.Claims.Finish(ctx, r.Tenant, r.SmsID, claims.Reported, r.Status, d.now()); err != nil {
			log.Warn("claim record not updated; the next start will check the SMS upstream", zap.Error(err))
		}
		d.m.reports.WithLabelValues(r.Status.String(), "ok").Inc()
		d.done(r)
		log.Info("status reported", zap.String("tracking", r.TrackingID()), zap.String("code", r.Code))
		return
	}
	switch v := d.up.Verdict(err); v {
	case Gone, Unreportable:
		reason := "the SMS no longer exists upstream"
		if v == Unreportable {
			reason = "the API cannot take a status for this SMS"
		}
		if derr := d.deadLetter(ctx, r, reason+": "+err.Error()); derr != nil {
			_ = msg.NakWithDelay(5 * time.Second) // keep it until the dead letter is stored
			return
		}
		_ = msg.TermWithReason(reason)
		if err := d.cfg.Claims.Finish(ctx, r.Tenant, r.SmsID, claims.Dead, r.Status, d.now()); err != nil {
			log.Warn("claim record not updated", zap.Error(err))
		}
		d.m.reports.WithLabelValues(r.Status.String(), "dead").Inc()
		d.done(r)
	default:
		n := uint64(1)
		if md, err := msg.Metadata(); err == nil {
			n = md.NumDelivered
		}
		delay := min(time.Duration(1<<min(n, 8))*time.Second, 5*time.Minute)
		d.m.reports.WithLabelValues(r.Status.String(), "retry").Inc()
		log.Warn("reporting failed; will retry", zap.Duration("in", delay), zap.Error(err))
		_ = msg.NakWithDelay(delay)
	}
}

// refuse drops a result that must not reach the API, counted and logged.
func (d *Dispatcher) refuse(msg jetstream.Msg, why, detail string, fields ...zap.Field) {
	d.m.refused.WithLabelValues(why).Inc()
	d.log.Error("result refused: "+detail, append(fields, zap.String("reason", why))...)
	_ = msg.TermWithReason("refused: " + why)
}

// deadLetter keeps a result the API will never take, for an operator.
func (d *Dispatcher) deadLetter(ctx context.Context, r schema.Result, reason string) error {
	dl := schema.DeadLetter{V: schema.Version, Result: r, Reason: reason, At: d.now()}
	err := d.publish(ctx, schema.DeadSubject, "dead."+r.JobID, dl, schema.DeadStream)
	if err != nil {
		d.log.Error("dead letter not stored", zap.String("sms", r.SmsID), zap.Error(err))
		return err
	}
	d.m.dead.Inc()
	d.log.Error("result given up and kept in the dead-letter stream "+schema.DeadStream,
		zap.String("sms", r.SmsID), zap.String("tenant", r.Tenant), zap.Stringer("status", r.Status), zap.String("reason", reason))
	return nil
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

func (d *Dispatcher) done(r schema.Result) {
	d.mu.Lock()
	if at, ok := d.inflight[r.JobID]; ok {
		d.m.latency.Observe(time.Since(at).Seconds())
		delete(d.inflight, r.JobID)
	}
	d.mu.Unlock()
	d.poke()
}

// OldestInFlight returns the age of the oldest job this process queued and
// has not seen a result for.
func (d *Dispatcher) OldestInFlight() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	var oldest time.Duration
	for _, at := range d.inflight {
		oldest = max(oldest, time.Since(at))
	}
	return oldest
}

// DeadJob turns a job that exhausted its deliveries into an Unknown
// result: the modem took it that many times without finishing, and one of
// those times may have sent it, so it is never offered again.
func (d *Dispatcher) DeadJob(ctx context.Context, data []byte) error {
	job, err := schema.Decode[schema.Job](data)
	if err != nil {
		d.log.Error("dead job is undecodable; removing it", zap.Error(err))
		return nil
	}
	r := schema.Result{V: schema.Version, JobID: job.ID, SmsID: job.SmsID, Tenant: job.Tenant,
		Status: schema.StatusUnknown, Code: schema.CodeMaxDeliveries, Reason: "the modem never finished this job; it may have been sent"}
	d.log.Warn("job exhausted its deliveries; reporting Unknown", zap.String("job", job.ID))
	return d.publish(ctx, r.Subject(), r.MsgID(), r, schema.ResultsStream)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
