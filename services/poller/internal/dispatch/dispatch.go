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
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/backoff"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// Claim is one SMS the API handed us (and already marked Entrusted).
type Claim struct {
	ID, Tenant, Phone, Message, Country string
	Timestamp                           time.Time
	TTL                                 time.Duration // 0: schema.DefaultTTL
	RetryCount                          int
}

// Upstream is the SMS API as the dispatcher needs it.
type Upstream interface {
	// Claim takes the next Pending SMS for country cc, or returns nil.
	Claim(ctx context.Context, cc string) (*Claim, error)
	// Report PATCHes a result and confirms the API applied it.
	Report(ctx context.Context, r schema.Result) error
	// Transient reports whether err may go away by itself.
	Transient(err error) bool
	// Stranded lists SMS that are Entrusted upstream and may be ours: a
	// crash between a claim and its publish leaves them there.
	Stranded(ctx context.Context) ([]Claim, error)
}

// Queue is the broker as the dispatcher needs it.
type Queue interface {
	JetStream() jetstream.JetStream
	Conn() *nats.Conn
	JobsPending(ctx context.Context) (int, error)
}

// Config tunes the dispatcher.
type Config struct {
	Countries    []string
	PollInterval time.Duration // idle wait when the API has nothing for us
	// MaxQueued is how many unsent jobs may wait in the stream. Every claim
	// starts the SMS's clock upstream, so claiming far ahead of the modem
	// only strands SMS until their TTL passes.
	MaxQueued int
	Log       *zap.Logger
	Reg       prometheus.Registerer
	Now       func() time.Time
}

// Dispatcher runs the claim and report loops.
type Dispatcher struct {
	cfg Config
	up  Upstream
	q   Queue
	log *zap.Logger
	m   metrics

	wake chan struct{} // a result arrived or the modem became ready

	mu          sync.Mutex
	modem       schema.ModemStatus
	modemSeenAt time.Time
	inflight    map[string]time.Time // job id -> claimed at (metrics only)
	apiErr      error
	apiOKAt     time.Time
}

// New builds a dispatcher.
func New(cfg Config, up Upstream, q Queue) *Dispatcher {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Second
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 2
	}
	d := &Dispatcher{
		cfg: cfg, up: up, q: q, log: cfg.Log, m: newMetrics(cfg.Reg),
		wake: make(chan struct{}, 1), inflight: map[string]time.Time{},
	}
	if cfg.Reg != nil {
		cfg.Reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "sms_poller_jobs_in_flight", Help: "Jobs queued by this process and not yet reported.",
			}, func() float64 { d.mu.Lock(); defer d.mu.Unlock(); return float64(len(d.inflight)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "sms_poller_oldest_job_age_seconds", Help: "Age of the oldest job in flight.",
			}, func() float64 { return d.OldestInFlight().Seconds() }),
		)
	}
	return d
}

// Run runs until ctx ends, then stops claiming, reports the results that are
// already waiting (up to drain) and returns.
func (d *Dispatcher) Run(ctx context.Context, drain time.Duration) error {
	sub, err := d.q.Conn().Subscribe(schema.StatusSubject, d.onModemStatus)
	if err != nil {
		return fmt.Errorf("subscribe modem status: %w", err)
	}
	defer sub.Unsubscribe()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.requeueStranded(ctx)
		d.claimLoop(ctx)
	}()
	d.reportLoop(ctx, drain)
	wg.Wait()
	return nil
}

func (d *Dispatcher) onModemStatus(m *nats.Msg) {
	st, err := schema.Decode[schema.ModemStatus](m.Data)
	if err != nil {
		d.log.Warn("bad modem status", zap.Error(err))
		return
	}
	d.mu.Lock()
	wasReady := d.modemReadyLocked()
	d.modem, d.modemSeenAt = st, d.cfg.Now()
	nowReady := d.modemReadyLocked()
	d.mu.Unlock()
	d.m.modemReady.Set(boolGauge(nowReady))
	if nowReady && !wasReady {
		d.log.Info("modem ready; claiming", zap.String("operator", st.Operator), zap.Int("signal", st.Signal))
		d.poke()
	} else if !nowReady && wasReady {
		d.log.Warn("modem not ready; claiming paused", zap.String("reason", st.Reason))
	}
}

func (d *Dispatcher) modemReadyLocked() bool {
	valid := time.Duration(d.modem.ValidFor)
	return d.modem.Ready && d.cfg.Now().Sub(d.modemSeenAt) < valid
}

// ModemReady reports whether a fresh heartbeat says the modem can send.
func (d *Dispatcher) ModemReady() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.modemSeenAt.IsZero():
		return errors.New("no heartbeat from the modem yet")
	case d.modemReadyLocked():
		return nil
	case !d.modem.Ready:
		return fmt.Errorf("modem not ready: %s", d.modem.Reason)
	}
	return fmt.Errorf("modem silent for %s", d.cfg.Now().Sub(d.modemSeenAt).Round(time.Second))
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
		d.apiOKAt = d.cfg.Now()
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

// requeueStranded republishes every Entrusted SMS that may be ours. Job ids
// are derived from the claim, so one whose job is queued, in flight or
// already done is absorbed by the stream's dedup window (and the modem's
// ledger behind it); only a claim lost in a crash becomes a new job.
func (d *Dispatcher) requeueStranded(ctx context.Context) {
	b := backoff.New(time.Second, 30*time.Second)
	for {
		claims, err := d.up.Stranded(ctx)
		d.apiResult(err)
		if err == nil {
			for i := range claims {
				d.enqueue(ctx, &claims[i])
			}
			if len(claims) > 0 {
				d.log.Info("re-queued Entrusted SMS found at start (duplicates are absorbed)", zap.Int("count", len(claims)))
			}
			return
		}
		d.log.Warn("cannot list Entrusted SMS; retrying", zap.Error(err))
		if !b.Wait(ctx) {
			return
		}
	}
}

func (d *Dispatcher) claimLoop(ctx context.Context) {
	errWait := backoff.New(time.Second, time.Minute)
	next := 0 // round-robin start, so one busy country cannot starve another
	for ctx.Err() == nil {
		if err := d.ModemReady(); err != nil {
			d.wait(ctx, d.cfg.PollInterval)
			continue
		}
		pending, err := d.q.JobsPending(ctx)
		if err != nil {
			d.log.Warn("cannot read the job queue depth", zap.Error(err))
			d.wait(ctx, time.Second)
			continue
		}
		d.m.queued.Set(float64(pending))
		if pending >= d.cfg.MaxQueued {
			// Back-pressure: results poke us; the timer covers a result
			// that was acked before we started waiting.
			d.wait(ctx, 250*time.Millisecond)
			continue
		}
		claimed, err := d.claimOne(ctx, &next)
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

// claimOne asks each country in turn and queues the first SMS it gets.
func (d *Dispatcher) claimOne(ctx context.Context, next *int) (bool, error) {
	n := len(d.cfg.Countries)
	for i := 0; i < n; i++ {
		cc := d.cfg.Countries[(*next+i)%n]
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
		d.enqueue(ctx, c)
		return true, nil
	}
	return false, nil
}

// enqueue publishes the claim as a job, or as an Expired result when it is
// already stale. The SMS is Entrusted upstream now, so the publish is
// retried even through shutdown for a while: losing it here would leave it
// stranded until the API's trust timeout.
func (d *Dispatcher) enqueue(ctx context.Context, c *Claim) {
	now := d.cfg.Now()
	ttl := c.TTL
	if ttl <= 0 {
		ttl = schema.DefaultTTL
	}
	job := schema.Job{
		V: schema.Version, ID: schema.JobID(c.ID, c.RetryCount), SmsID: c.ID, Tenant: c.Tenant,
		PhoneNumber: c.Phone, Message: c.Message, CountryCode: c.Country,
		CreatedAt: c.Timestamp, ExpiresAt: c.Timestamp.Add(ttl), ClaimedAt: now,
	}
	log := d.log.With(zap.String("sms", c.ID), zap.String("tenant", c.Tenant), logging.Phone(c.Phone))
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if job.Expired(now) {
		log.Info("claimed SMS is already past its TTL; reporting Expired", zap.Time("expired_at", job.ExpiresAt))
		r := schema.Result{V: schema.Version, JobID: job.ID, SmsID: job.SmsID, Tenant: job.Tenant,
			Status: schema.StatusExpired, Code: schema.CodeExpired, Reason: "TTL passed before the gateway claimed it"}
		if err := d.publish(pubCtx, r.Subject(), r.MsgID(), r, schema.ResultsStream); err != nil {
			log.Error("could not queue the Expired result; the API will expire the SMS itself", zap.Error(err))
		}
		return
	}
	if err := d.publish(pubCtx, schema.JobSubject(c.Country), job.ID, job, schema.JobsStream); err != nil {
		log.Error("claimed SMS could not be queued; the API's trust timeout will hand it out again", zap.Error(err))
		return
	}
	d.mu.Lock()
	d.inflight[job.ID] = now
	d.mu.Unlock()
	d.m.jobs.Inc()
	log.Info("SMS queued for the modem", zap.String("job", job.ID), zap.Int("chars", len([]rune(job.Message))))
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

func (d *Dispatcher) report(ctx context.Context, msg jetstream.Msg) {
	r, err := schema.Decode[schema.Result](msg.Data())
	if err != nil || r.SmsID == "" {
		d.log.Error("dropping undecodable result", zap.Error(err))
		_ = msg.TermWithReason("undecodable result")
		return
	}
	log := d.log.With(zap.String("sms", r.SmsID), zap.String("job", r.JobID), zap.Stringer("status", r.Status))
	err = d.up.Report(ctx, r)
	d.apiResult(err)
	switch {
	case err == nil:
		if err := msg.DoubleAck(ctx); err != nil {
			log.Warn("result ack not confirmed; it may be reported again (PATCH is idempotent)", zap.Error(err))
		}
		d.m.reports.WithLabelValues(r.Status.String(), "ok").Inc()
		d.done(r)
		log.Info("status reported", zap.String("tracking", r.TrackingID()), zap.String("code", r.Code))
	case d.up.Transient(err):
		n := uint64(1)
		if md, err := msg.Metadata(); err == nil {
			n = md.NumDelivered
		}
		delay := min(time.Duration(1<<min(n, 6))*time.Second, time.Minute)
		d.m.reports.WithLabelValues(r.Status.String(), "retry").Inc()
		log.Warn("reporting failed; will retry", zap.Duration("in", delay), zap.Error(err))
		_ = msg.NakWithDelay(delay)
	default:
		// A permanent refusal (the SMS was deleted, say) cannot be fixed by
		// retrying; keeping it would block nothing but would loop forever.
		d.m.reports.WithLabelValues(r.Status.String(), "rejected").Inc()
		log.Error("API refused the status update; dropping it", zap.Error(err))
		_ = msg.TermWithReason("rejected by the API")
		d.done(r)
	}
}

func (d *Dispatcher) done(r schema.Result) {
	d.mu.Lock()
	if at, ok := d.inflight[r.JobID]; ok {
		d.m.latency.Observe(d.cfg.Now().Sub(at).Seconds())
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
	now := d.cfg.Now()
	for _, at := range d.inflight {
		oldest = max(oldest, now.Sub(at))
	}
	return oldest
}

// DeadJob turns a job that exhausted its deliveries into a Failed result.
func (d *Dispatcher) DeadJob(ctx context.Context, data []byte) error {
	job, err := schema.Decode[schema.Job](data)
	if err != nil {
		d.log.Error("dead job is undecodable; removing it", zap.Error(err))
		return nil
	}
	r := schema.Result{V: schema.Version, JobID: job.ID, SmsID: job.SmsID, Tenant: job.Tenant,
		Status: schema.StatusFailed, Code: schema.CodeMaxDeliveries, Reason: "the modem never finished this job"}
	d.log.Warn("job exhausted its deliveries; reporting Failed", zap.String("job", job.ID))
	return d.publish(ctx, r.Subject(), r.MsgID(), r, schema.ResultsStream)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
