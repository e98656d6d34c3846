// Package sender turns jobs from JetStream into SMS through the modem. It
// pulls one job at a time, answers every later claim of an SMS it already
// sent or tried from the ledger (keyed on the SMS, not the claim), checks
// the TTL on the trusted clock, validates and encodes, records "attempting"
// before the first AT+CMGS, checks the TTL again right before it, keeps the
// job alive while a long send runs, and publishes the result before it acks
// the job. The ack and the result drive every upstream status.
package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/attempts"
	"github.com/sensorsreport/smsgw/services/modem/internal/delivery"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/ledger"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
	"github.com/sensorsreport/smsgw/shared/backoff"
	"github.com/sensorsreport/smsgw/shared/clock"
	"github.com/sensorsreport/smsgw/shared/logging"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// Modem is what the sender needs from the modem lifecycle.
type Modem interface {
	// WaitReady blocks until the modem can send or ctx ends.
	WaitReady(ctx context.Context) error
	// Submit sends one TPDU with AT+CMGS and returns its message reference.
	Submit(ctx context.Context, tpduLen int, hexPDU string) (mr int, err error)
	// Classify maps a Submit error to what it means for the SMS.
	Classify(err error) gsm.Class
}

// Attempts records, where every modem sees it, that this modem is about to
// send an SMS.
type Attempts interface {
	// Begin returns nil when this modem may send the SMS, an error
	// wrapping attempts.ErrElsewhere when another modem may have sent it,
	// or another error when that cannot be known now.
	Begin(ctx context.Context, tenant, smsID string) error
	// Abandon withdraws this modem's record of an SMS it handed back
	// before anything reached its hardware, so another modem may send it.
	Abandon(ctx context.Context, tenant, smsID string) error
}

// Config tunes the sender.
type Config struct {
	Region string // default region for national numbers (MODEM_COUNTRY)
	// Countries are the MODEM_COUNTRIES: jobs are pulled only from their
	// consumers, and a job for any other country is refused. Empty: every
	// country the poller queues jobs for.
	Countries   []string
	MaxParts    int           // part limit per SMS
	SendTimeout time.Duration // bound on one job's sending, and on the drain at shutdown
	// Backoff is the wait before each retry of a part after a transient
	// error; its length is the retry budget.
	Backoff []time.Duration
	// Heartbeat is how often a job in progress is kept alive; 0 means a
	// third of the consumer's AckWait, so a long send is never redelivered.
	Heartbeat time.Duration
	// Clock is the trusted time every TTL decision uses (required): the
	// poller's reference, never the Pi's unsynchronised wall clock.
	Clock *clock.Clock
	// Attempts is the "attempting" record every modem sees (nil: this
	// modem is the only one). It is written before the local ledger's.
	Attempts Attempts
	// Holding, if set, is told the ack subject of each job as it is taken
	// and "" once it is finished or handed back: the heartbeat carries it,
	// so the poller can hand the job to another modem when this one dies.
	Holding func(ackSubject string)
	Log     *zap.Logger
	Reg     prometheus.Registerer
}

// Sender pulls jobs and sends them.
type Sender struct {
	cfg    Config
	js     jetstream.JetStream
	modem  Modem
	ledger *ledger.Ledger
	refs   *pdu.RefCounter
	log    *zap.Logger
	m      metrics
	src    *source

	mu sync.Mutex
}

type metrics struct {
	sends   *prometheus.CounterVec
	parts   prometheus.Counter
	active  prometheus.Gauge
	refused *prometheus.CounterVec
}

// New builds a sender.
func New(cfg Config, js jetstream.JetStream, m Modem, l *ledger.Ledger) *Sender {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.MaxParts <= 0 {
		cfg.MaxParts = 10
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 120 * time.Second
	}
	if cfg.Backoff == nil {
		cfg.Backoff = []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second}
	}
	s := &Sender{cfg: cfg, js: js, modem: m, ledger: l, refs: pdu.NewRefCounter(uint8(rand.UintN(256))), log: cfg.Log,
		src: newSource(cfg.Countries, js, cfg.Log)}
	s.m = metrics{
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_modem_sends_total", Help: "Jobs finished, by outcome.",
		}, []string{"outcome"}),
		parts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sms_modem_parts_sent_total", Help: "SMS parts accepted by the network.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sms_modem_job_in_progress", Help: "1 while a job is being handled.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_modem_jobs_refused_total", Help: "Jobs handed back unsent because this modem must not send them (country: not in MODEM_COUNTRIES).",
		}, []string{"reason"}),
	}
	if cfg.Reg != nil {
		cfg.Reg.MustRegister(s.m.sends, s.m.parts, s.m.active, s.m.refused)
	}
	return s
}

// Run pulls and handles jobs until ctx ends. A job in flight when ctx ends
// is finished (bounded by SendTimeout), reported and acked before Run returns.
func (s *Sender) Run(ctx context.Context) error {
	defer s.src.close()
	retry := backoff.New(200*time.Millisecond, 5*time.Second)
	untrusted, noConsumer := false, false
	for ctx.Err() == nil {
		if err := s.modem.WaitReady(ctx); err != nil {
			break
		}
		// Without a trustworthy time no TTL can be checked: take no job.
		if _, _, err := s.cfg.Clock.Now(); err != nil {
			if !untrusted {
				s.log.Warn("not taking jobs until the time can be trusted", zap.Error(err))
				untrusted = true
			}
			retry.Wait(ctx)
			continue
		}
		if untrusted {
			s.log.Info("time is trusted again; taking jobs")
			untrusted = false
		}
		msg, err := s.src.pull(ctx)
		if errors.Is(err, errIdle) {
			continue
		}
		if errors.Is(err, errNoConsumer) != noConsumer {
			noConsumer = !noConsumer
			if noConsumer {
				s.log.Warn("no jobs consumer to pull from yet: is the poller running and claiming a country in MODEM_COUNTRIES (its SMS_COUNTRIES)?",
					zap.Strings("MODEM_COUNTRIES", s.cfg.Countries))
			}
		}
		if err != nil {
			s.log.Debug("pull job", zap.Error(err))
			retry.Wait(ctx)
			continue
		}
		retry.Reset()
		// The job's own context outlives ctx: a send that started is
		// finished and acknowledged, bounded by SendTimeout.
		s.hold(msg.Reply())
		s.handle(ctx, msg)
		s.hold("")
	}
	return nil
}

func (s *Sender) hold(ackSubject string) {
	if s.cfg.Holding != nil {
		s.cfg.Holding(ackSubject)
	}
}

// Use switches the sender to js, a new connection's JetStream after the old
// one closed for good. A job in flight publishes its result through it.
func (s *Sender) Use(js jetstream.JetStream) { s.mu.Lock(); s.js = js; s.mu.Unlock(); s.src.use(js) }

func (s *Sender) jetStream() jetstream.JetStream { s.mu.Lock(); defer s.mu.Unlock(); return s.js }

// refuseDelay is how long a job this modem must not send is kept from
// being delivered again.
const refuseDelay = 30 * time.Second

// handle processes one delivery to the end: publish a result and ack, or
// leave the job for redelivery when nothing was sent and we are stopping.
func (s *Sender) handle(runCtx context.Context, msg jetstream.Msg) {
	s.m.active.Set(1)
	defer s.m.active.Set(0)
	jobCtx, cancel := context.WithTimeout(context.WithoutCancel(runCtx), s.cfg.SendTimeout+30*time.Second)
	defer cancel()

	job, err := schema.Decode[schema.Job](msg.Data())
	if err != nil || job.ID == "" || job.SmsID == "" {
		// Without ids there is nothing to report upstream; the API's trust
		// timeout will expire the SMS. Terminate so it cannot block the queue.
		s.log.Error("dropping undecodable job", zap.Error(err))
		_ = msg.TermWithReason("undecodable job")
		return
	}
	log := s.log.With(zap.String("job", job.ID), logging.Phone(job.PhoneNumber))
	if cc := schema.JobCountry(job.CountryCode); !s.src.serves(cc) {
		// Routing by consumer keeps such a job away; should one come all
		// the same, a modem serving its country sends it, never this one.
		s.m.refused.WithLabelValues("country").Inc()
		log.Error("job for a country outside MODEM_COUNTRIES; handing it back unsent",
			zap.String("country", cc), zap.Strings("MODEM_COUNTRIES", s.cfg.Countries))
		_ = msg.NakWithDelay(refuseDelay)
		return
	}
	delivered := 1
	if md, err := msg.Metadata(); err == nil {
		delivered = int(md.NumDelivered)
	}

	// The ledger is keyed on the SMS: a redelivery of this claim and every
	// later claim of the same SMS (the API re-queues after its trust
	// timeout) are answered with the first outcome, never sent again.
	var res schema.Result
	switch e, err := s.ledger.Get(job.Tenant, job.SmsID); {
	case err == nil && e.State == ledger.Done && e.Result != nil:
		log.Info("SMS already handled; republishing its outcome", zap.Stringer("status", e.Result.Status),
			zap.String("handled_as", e.JobID))
		res = *e.Result
		res.JobID = job.ID
	case err != nil && !errors.Is(err, ledger.ErrNotFound):
		// Sending without knowing what the ledger says could duplicate.
		log.Error("ledger unreadable; handing the job back", zap.Error(err))
		_ = msg.NakWithDelay(10 * time.Second)
		return
	case err == nil:
		log.Warn("an earlier send of this SMS was interrupted; reporting Unknown, not resending",
			zap.String("attempted_as", e.JobID))
		res = s.result(job, schema.StatusUnknown, schema.CodeOutcomeUnknown, "interrupted while sending; not resent to avoid a duplicate")
		if err := s.ledger.Done(job, res, s.now()); err != nil {
			log.Error("ledger write failed", zap.Error(err))
			return
		}
	default:
		var ok bool
		res, ok = s.send(runCtx, jobCtx, msg, job, delivered, log)
		if !ok {
			return // stopping before anything was sent: redelivered later
		}
	}
	if err := s.publish(jobCtx, res); err != nil {
		log.Error("result not published; the job will be redelivered and answered from the ledger", zap.Error(err))
		return
	}
	if err := msg.DoubleAck(jobCtx); err != nil {
		log.Warn("ack not confirmed; a redelivery will be answered from the ledger", zap.Error(err))
	}
	s.m.sends.WithLabelValues(outcomeLabel(res)).Inc()
	log.Info("job finished", zap.Stringer("status", res.Status), zap.String("code", res.Code),
		zap.Int("parts", res.Parts), zap.String("tracking", res.TrackingID()))
}

// send runs the job to a final result. ok is false when the job should be
// left for redelivery (shutdown before any part was submitted).
func (s *Sender) send(runCtx, jobCtx context.Context, msg jetstream.Msg, job schema.Job, delivered int, log *zap.Logger) (schema.Result, bool) {
	now, _, err := s.cfg.Clock.Now()
	if err != nil {
		log.Warn("no trustworthy time; handing the job back", zap.Error(err))
		_ = msg.NakWithDelay(5 * time.Second)
		return schema.Result{}, false
	}
	if job.Expired(now) {
		return s.done(job, schema.StatusExpired, schema.CodeExpired, "TTL passed before sending", log), true
	}
	num, err := pdu.ParseNumber(job.PhoneNumber, s.cfg.Region)
	if err != nil {
		return s.done(job, schema.StatusFailed, schema.CodeInvalidNumber, err.Error(), log), true
	}
	parts, err := pdu.Encode(num, job.Message, s.refs, pdu.Options{
		MaxParts: s.cfg.MaxParts, ValidityPeriod: job.ExpiresAt.Sub(now),
	})
	switch {
	case errors.Is(err, pdu.ErrEmpty):
		return s.done(job, schema.StatusFailed, schema.CodeEmptyMessage, err.Error(), log), true
	case errors.Is(err, pdu.ErrTooManyParts):
		return s.done(job, schema.StatusFailed, schema.CodeTooLong, err.Error(), log), true
	case err != nil:
		return s.done(job, schema.StatusFailed, schema.CodeBadJob, err.Error(), log), true
	}

	stopHB := s.heartbeat(msg)
	defer stopHB()
	if s.cfg.Attempts != nil {
		switch err := s.cfg.Attempts.Begin(jobCtx, job.Tenant, job.SmsID); {
		case errors.Is(err, attempts.ErrElsewhere):
			log.Warn("another modem may have sent this SMS; reporting Unknown, not sending", zap.Error(err))
			return s.done(job, schema.StatusUnknown, schema.CodeOutcomeUnknown, "another modem may have sent it; not sent again to avoid a duplicate", log), true
		case err != nil:
			log.Warn("cannot record the attempt where every modem sees it; handing the job back", zap.Error(err))
			_ = msg.NakWithDelay(5 * time.Second)
			return schema.Result{}, false
		}
	}
	if err := s.ledger.Attempting(job, delivered, now); err != nil {
		log.Error("ledger write failed; not sending", zap.Error(err))
		_ = msg.NakWithDelay(5 * time.Second)
		return schema.Result{}, false
	}

	refs := make([]int, 0, len(parts))
	for i, p := range parts {
		for attempt := 0; ; attempt++ {
			if err := s.waitReady(runCtx, jobCtx, job, len(refs) == 0); err != nil {
				if len(refs) == 0 {
					if s.expired(job) {
						return s.done(job, schema.StatusExpired, schema.CodeExpired, "modem not ready before the TTL passed", log), true
					}
					return s.abandon(job, msg, log)
				}
				r := s.result(job, schema.StatusUnknown, schema.CodeOutcomeUnknown, "modem lost after part "+fmt.Sprint(len(refs))+" of "+fmt.Sprint(len(parts)))
				r.References, r.Parts = refs, len(parts)
				return s.store(job, r, log), true
			}
			// The last word before the first part leaves: shutting down, or
			// the TTL passed while waiting (the trusted clock, right before
			// AT+CMGS). Once a part is out the message is finished.
			if len(refs) == 0 {
				if runCtx.Err() != nil {
					return s.abandon(job, msg, log)
				}
				if s.expired(job) {
					return s.done(job, schema.StatusExpired, schema.CodeExpired, "TTL passed before sending", log), true
				}
			}
			sendCtx, cancel := context.WithTimeout(jobCtx, s.cfg.SendTimeout)
			mr, err := s.modem.Submit(sendCtx, p.TPDULen, p.Hex)
			cancel()
			if err == nil {
				refs = append(refs, mr)
				delivery.Sent(job.SmsID, job.Tenant, num.String(), p.Seq, p.Total, mr)
				s.m.parts.Inc()
				break
			}
			if errors.Is(err, gsm.ErrNotReady) && ctxAlive(jobCtx) {
				// Nothing was written: the modem went away between the
				// readiness check and the send. Wait for it again without
				// spending the retry budget meant for network refusals.
				attempt--
				continue
			}
			class := s.modem.Classify(err)
			log.Warn("part not sent", zap.Int("part", i+1), zap.Int("of", len(parts)), zap.Int("attempt", attempt+1), zap.Error(err))
			var r schema.Result
			switch {
			case class == gsm.Unknown:
				r = s.result(job, schema.StatusUnknown, schema.CodeOutcomeUnknown, err.Error())
			case class == gsm.Permanent:
				r = s.result(job, schema.StatusFailed, schema.CodeModemRejected, err.Error())
			case attempt >= len(s.cfg.Backoff):
				r = s.result(job, schema.StatusFailed, schema.CodeRetriesExceeded, err.Error())
			case !backoff.Sleep(jobCtx, s.cfg.Backoff[attempt]):
				r = s.result(job, schema.StatusFailed, schema.CodeRetriesExceeded, "gave up at the send deadline: "+err.Error())
			default:
				continue
			}
			if len(refs) > 0 && r.Status == schema.StatusFailed {
				// Earlier parts reached the phone: not Failed, Unknown.
				r = s.result(job, schema.StatusUnknown, schema.CodePartial,
					fmt.Sprintf("part %d of %d not sent after %d went out: %s", i+1, len(parts), len(refs), r.Reason))
			}
			r.References, r.Parts = refs, len(parts)
			return s.store(job, r, log), true
		}
	}
	r := s.result(job, schema.StatusSent, "", "")
	r.SentAt = s.now().UTC()
	r.References, r.Parts = refs, len(parts)
	return s.store(job, r, log), true
}

// waitReady waits for the modem. Before the first part it may wait until the
// TTL; after a part left it waits up to the send timeout, since finishing
// the message beats leaving the recipient half of it.
func (s *Sender) waitReady(runCtx, jobCtx context.Context, job schema.Job, first bool) error {
	ctx := jobCtx
	var cancel context.CancelFunc
	if first {
		// The TTL is on the trusted clock; the wait runs on the local
		// monotonic clock, so it is expressed as the time left.
		now, _, err := s.cfg.Clock.Now()
		if err != nil {
			return err
		}
		ctx, cancel = context.WithTimeout(jobCtx, job.ExpiresAt.Sub(now))
		defer cancel()
		// Stop waiting on shutdown as long as nothing has been sent.
		stop := context.AfterFunc(runCtx, cancel)
		defer stop()
	}
	return s.modem.WaitReady(ctx)
}

// now is the trusted time. Once a job is taken the clock has a reference or
// a synchronised system clock, and neither goes away.
func (s *Sender) now() time.Time {
	t, _, err := s.cfg.Clock.Now()
	if err != nil {
		return time.Now()
	}
	return t
}

// expired reports whether the job's TTL has passed on the trusted clock.
func (s *Sender) expired(job schema.Job) bool {
	t, _, err := s.cfg.Clock.Now()
	return err != nil || job.Expired(t)
}

// abandon gives a job back to the broker untouched.
func (s *Sender) abandon(job schema.Job, msg jetstream.Msg, log *zap.Logger) (schema.Result, bool) {
	if err := s.ledger.Forget(job.Tenant, job.SmsID); err != nil {
		log.Error("ledger forget failed", zap.Error(err))
	}
	if s.cfg.Attempts != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.cfg.Attempts.Abandon(ctx, job.Tenant, job.SmsID); err != nil {
			// The next modem reports it Unknown instead of sending it.
			log.Warn("attempt record not withdrawn", zap.Error(err))
		}
		cancel()
	}
	_ = msg.Nak()
	s.src.wakeOthers(job.CountryCode)
	log.Info("job handed back unsent")
	return schema.Result{}, false
}

func (s *Sender) result(job schema.Job, st schema.Status, code, reason string) schema.Result {
	return schema.Result{V: schema.Version, JobID: job.ID, SmsID: job.SmsID, Tenant: job.Tenant, Status: st, Code: code, Reason: reason}
}

func (s *Sender) done(job schema.Job, st schema.Status, code, reason string, log *zap.Logger) schema.Result {
	return s.store(job, s.result(job, st, code, reason), log)
}

// store records the outcome before anything is published: from here on a
// redelivery or a later claim is answered from the ledger.
func (s *Sender) store(job schema.Job, r schema.Result, log *zap.Logger) schema.Result {
	if r.Status != schema.StatusSent {
		log.Warn("job not sent", zap.Stringer("status", r.Status), zap.String("code", r.Code), zap.String("reason", r.Reason))
	}
	if err := s.ledger.Done(job, r, s.now()); err != nil {
		log.Error("ledger write failed", zap.Error(err))
	}
	return r
}

// publish sends the result to the results stream, retrying until it is
// stored or ctx ends. The Msg-Id makes a republish after a crash harmless.
func (s *Sender) publish(ctx context.Context, r schema.Result) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	b := backoff.New(100*time.Millisecond, 3*time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.jetStream().Publish(pctx, r.Subject(), data, jetstream.WithMsgID(r.MsgID()), jetstream.WithExpectStream(schema.ResultsStream))
		cancel()
		if err == nil {
			return nil
		}
		s.log.Debug("publish result", zap.Error(err))
		if !b.Wait(ctx) {
			return fmt.Errorf("publish result: %w", err)
		}
	}
}

// heartbeat keeps the job from being redelivered while we work on it.
func (s *Sender) heartbeat(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(s.heartbeatEvery())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

func (s *Sender) heartbeatEvery() time.Duration {
	if s.cfg.Heartbeat > 0 {
		return s.cfg.Heartbeat
	}
	if ackWait := s.src.consumerAckWait(); ackWait > 0 {
		return max(ackWait/3, 100*time.Millisecond)
	}
	return 10 * time.Second
}

func outcomeLabel(r schema.Result) string {
	if r.Code != "" {
		return r.Code
	}
	return "sent"
}

func ctxAlive(ctx context.Context) bool { return ctx.Err() == nil }
