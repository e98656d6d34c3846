package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/schema"
)

const (
	// longPull is how long one pull waits while the modem has a single
	// jobs consumer: a job ends it at once.
	longPull = 5 * time.Second
	// recheck is how long a modem with several jobs consumers waits for a
	// wake-up before it looks again anyway: a job handed back by a Nak with
	// a delay, or redelivered after its ack wait, raises none.
	recheck = 5 * time.Second
	// wokenPull is how long a woken modem's pull on the woken country waits:
	// the wake-up can overtake the stream's note to its consumer.
	wokenPull = 250 * time.Millisecond
	// relist is how often a modem serving any country lists the jobs
	// consumers again, so countries the poller adds are served.
	relist = 30 * time.Second
)

// errNoConsumer says no jobs consumer of a served country exists yet.
var errNoConsumer = errors.New("no jobs consumer for the countries this modem serves")

// errIdle says the pull ended without a job; the caller pulls again.
var errIdle = errors.New("no job")

// source hands out one job at a time from the jobs consumers of the
// countries the modem serves (modem-<CC>, one per country and shared by
// every modem serving it). With one consumer it waits in a long pull; with
// several it asks each in turn without waiting and, when all are empty,
// waits for a wake-up (the poller's, or another modem's, on
// sms.wake.<CC>) or the recheck timer. It never holds more than one
// job, so a job another modem could send never waits in this one's buffer.
type source struct {
	countries []string // MODEM_COUNTRIES; empty: every jobs consumer
	log       *zap.Logger

	mu       sync.Mutex
	js       jetstream.JetStream
	cons     map[string]jetstream.Consumer // by country
	missing  map[string]bool               // countries whose consumer was not found (logged once)
	listed   []string                      // every jobs consumer's country, when countries is empty
	listedAt time.Time
	ackWait  time.Duration
	next     int // round-robin start
	wakeConn *nats.Conn
	wakeSub  *nats.Subscription
	woken    map[string]bool
	wake     chan struct{}
}

func newSource(countries []string, js jetstream.JetStream, log *zap.Logger) *source {
	return &source{countries: countries, js: js, log: log, cons: map[string]jetstream.Consumer{},
		missing: map[string]bool{}, woken: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// use switches to a new connection's JetStream.
func (s *source) use(js jetstream.JetStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.js, s.cons, s.listedAt = js, map[string]jetstream.Consumer{}, time.Time{}
}

// close ends the wake-up subscription.
func (s *source) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wakeSub != nil {
		_ = s.wakeSub.Unsubscribe()
		s.wakeSub, s.wakeConn = nil, nil
	}
}

// serves reports whether the modem takes jobs for country cc.
func (s *source) serves(cc string) bool {
	return len(s.countries) == 0 || slices.Contains(s.countries, cc)
}

// pull returns the next job, errIdle when none came in time, or another
// error (the caller backs off).
func (s *source) pull(ctx context.Context) (jetstream.Msg, error) {
	cons, err := s.consumers(ctx)
	if err != nil {
		return nil, err
	}
	if len(cons) == 1 {
		nctx, cancel := context.WithTimeout(ctx, longPull)
		defer cancel()
		msg, err := cons[0].cons.Next(jetstream.FetchContext(nctx))
		return msg, s.pullErr(ctx, cons[0].cc, err)
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	// A wake-up from here on starts another round.
	s.mu.Lock()
	select {
	case <-s.wake:
	default:
	}
	woken := s.woken
	s.woken = map[string]bool{}
	start := s.next
	s.mu.Unlock()
	for i := range cons {
		c := cons[(start+i)%len(cons)]
		var batch jetstream.MessageBatch
		if woken[c.cc] {
			batch, err = c.cons.Fetch(1, jetstream.FetchMaxWait(wokenPull))
		} else {
			batch, err = c.cons.FetchNoWait(1)
		}
		if err == nil {
			for msg := range batch.Messages() {
				s.mu.Lock()
				s.next = (start + i + 1) % len(cons)
				s.mu.Unlock()
				return msg, nil
			}
			if err = batch.Error(); err == nil {
				continue // empty
			}
		}
		if err = s.pullErr(ctx, c.cc, err); !errors.Is(err, errIdle) {
			return nil, err
		}
	}
	t := time.NewTimer(recheck)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-s.wake:
	case <-t.C:
	}
	return nil, errIdle
}

// pullErr maps a pull's outcome: errIdle when nothing came, a consumer
// that went away dropped from the cache.
func (s *source) pullErr(ctx context.Context, cc string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, jetstream.ErrNoMessages) || ctx.Err() != nil:
		return errIdle
	case errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted):
		s.mu.Lock()
		delete(s.cons, cc)
		s.listedAt = time.Time{}
		s.mu.Unlock()
	}
	return fmt.Errorf("pull jobs of %s: %w", cc, err)
}

type countryConsumer struct {
	cc   string
	cons jetstream.Consumer
}

// consumers binds the jobs consumer of every served country that has one.
func (s *source) consumers(ctx context.Context) ([]countryConsumer, error) {
	countries := s.countries
	if len(countries) == 0 {
		var err error
		if countries, err = s.list(ctx); err != nil {
			return nil, err
		}
	}
	var out []countryConsumer
	for _, cc := range countries {
		s.mu.Lock()
		c, js := s.cons[cc], s.js
		s.mu.Unlock()
		if c == nil {
			var err error
			c, err = js.Consumer(ctx, schema.JobsStream, schema.JobsConsumerFor(cc))
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				s.mu.Lock()
				if !s.missing[cc] {
					s.log.Warn("the poller has no jobs consumer for a country in MODEM_COUNTRIES (not in its SMS_COUNTRIES?); waiting for it",
						zap.String("country", cc))
				}
				s.missing[cc] = true
				s.mu.Unlock()
				continue
			}
			if err != nil {
				return nil, err
			}
			s.mu.Lock()
			s.cons[cc] = c
			delete(s.missing, cc)
			if info := c.CachedInfo(); info != nil {
				s.ackWait = info.Config.AckWait
			}
			s.mu.Unlock()
		}
		out = append(out, countryConsumer{cc, c})
	}
	if len(out) == 0 {
		return nil, errNoConsumer
	}
	return out, nil
}

// list returns the country of every jobs consumer, asked of the broker at
// most every relist.
func (s *source) list(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	js, listed, at := s.js, s.listed, s.listedAt
	s.mu.Unlock()
	if !at.IsZero() && time.Since(at) < relist {
		return listed, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := js.Conn().RequestWithContext(rctx, fmt.Sprintf("$JS.API.CONSUMER.NAMES.%s", schema.JobsStream), []byte("{}"))
	if err != nil {
		return nil, fmt.Errorf("list jobs consumers: %w", err)
	}
	var names struct {
		Consumers []string `json:"consumers"`
		Error     *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &names); err != nil {
		return nil, fmt.Errorf("list jobs consumers: %w", err)
	}
	if names.Error != nil {
		return nil, fmt.Errorf("list jobs consumers: %s", names.Error.Description)
	}
	listed = listed[:0:0]
	for _, n := range names.Consumers {
		if cc, ok := schema.JobsConsumerCountry(n); ok {
			listed = append(listed, cc)
		}
	}
	slices.Sort(listed)
	s.mu.Lock()
	if !slices.Equal(listed, s.listed) {
		s.log.Info("serving the countries the poller queues jobs for", zap.Strings("countries", listed))
	}
	s.listed, s.listedAt = listed, time.Now()
	s.mu.Unlock()
	return listed, nil
}

// listen subscribes to wake-ups on the current connection.
func (s *source) listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	nc := s.js.Conn()
	if s.wakeConn == nc && s.wakeSub != nil && s.wakeSub.IsValid() {
		return nil
	}
	if s.wakeSub != nil {
		_ = s.wakeSub.Unsubscribe()
	}
	sub, err := nc.Subscribe(schema.WakeFilter, func(m *nats.Msg) {
		cc := strings.TrimPrefix(m.Subject, schema.WakeSubject+".")
		if !s.serves(cc) {
			return
		}
		s.mu.Lock()
		s.woken[cc] = true
		if len(s.countries) == 0 && !slices.Contains(s.listed, cc) {
			s.listedAt = time.Time{} // a country the poller just added
		}
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("listen for wake-ups: %w", err)
	}
	// Live before the first round, or a job queued in between would wait
	// for the recheck.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("listen for wake-ups: %w", err)
	}
	s.wakeSub, s.wakeConn = sub, nc
	return nil
}

// wakeOthers tells the other modems that a job for cc is waiting again.
func (s *source) wakeOthers(cc string) {
	s.mu.Lock()
	nc := s.js.Conn()
	s.mu.Unlock()
	_ = nc.Publish(schema.WakeSubjectFor(cc), nil)
}

func (s *source) consumerAckWait() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ackWait
}
