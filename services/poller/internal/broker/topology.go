package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/schema"
)

const (
	streamMaxBytes = 64 << 20
	maxMsgSize     = schema.MaxMessageBytes
	dedupWindow    = 24 * time.Hour
	// claimsTTL keeps a claim record for longer than any result can take to
	// be reported and any claim can be re-queued: a week.
	claimsTTL = 7 * 24 * time.Hour
	// Dead letters are kept for an operator for a month, at most this many.
	deadMaxAge        = 30 * 24 * time.Hour
	deadMaxMsgs       = 10000
	resultsMaxMsgs    = 10000
	resultsAckWait    = 30 * time.Second
	resultsAckPending = 256
	maxModems         = 64
)

func (b *Broker) jobsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:      schema.JobsStream,
		Subjects:  []string{schema.JobsFilter},
		Retention: jetstream.WorkQueuePolicy,
		Storage:   jetstream.FileStorage,
		// A full stream refuses new jobs; the default DiscardOld would
		// silently evict the oldest queued SMS.
		Discard:    jetstream.DiscardNew,
		MaxMsgs:    b.cfg.JobsMaxMsgs,
		MaxBytes:   streamMaxBytes,
		MaxMsgSize: maxMsgSize,
		// A job can stay claimed upstream far longer than the 2 min default
		// window while a status update keeps failing; re-publishes of the
		// same claim must still be absorbed.
		Duplicates: dedupWindow,
		Replicas:   1,
	}
}

func resultsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       schema.ResultsStream,
		Subjects:   []string{schema.ResultsFilter},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Discard:    jetstream.DiscardNew,
		MaxMsgs:    resultsMaxMsgs,
		MaxBytes:   streamMaxBytes,
		MaxMsgSize: maxMsgSize,
		Duplicates: dedupWindow,
		Replicas:   1,
	}
}

func claimsBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       schema.ClaimsBucket,
		Description:  "every SMS this poller claimed: which results it may report, what to re-queue after a crash",
		History:      1,
		TTL:          claimsTTL,
		MaxValueSize: maxMsgSize + 4<<10, // a record holds the job while it is queued
		MaxBytes:     streamMaxBytes,
		Storage:      jetstream.FileStorage,
		Replicas:     1,
	}
}

// attemptsMaxBytes bounds the attempting records: each is a few dozen
// bytes, so 16 MB hold a week of a busy gateway.
const attemptsMaxBytes = 16 << 20

func attemptsBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      schema.AttemptsBucket,
		Description: "which modem is handing each SMS to its hardware: no other modem sends it",
		History:     1,
		// Longer than any later claim of the SMS can come (the API's trust
		// timeout, the modem's LEDGER_RETENTION).
		TTL:          claimsTTL,
		MaxValueSize: 1 << 10, // a MODEM_ID; the limit counts the headers of a Create too
		MaxBytes:     attemptsMaxBytes,
		Storage:      jetstream.FileStorage,
		Replicas:     1,
	}
}

func deadStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        schema.DeadStream,
		Description: "results given up: the SMS no longer exists upstream or can never be addressed",
		Subjects:    []string{schema.DeadSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		// The oldest dead letter goes first when full: new ones matter more.
		Discard:    jetstream.DiscardOld,
		MaxMsgs:    deadMaxMsgs,
		MaxAge:     deadMaxAge,
		MaxBytes:   streamMaxBytes,
		MaxMsgSize: maxMsgSize + 4<<10,
		Replicas:   1,
	}
}

// Events (sms.received, sms.delivery) are kept by limits, not removed on
// ack: without a webhook they stay in the broker for inspection, and the
// webhook consumer's ack floor says what was forwarded. The modem publishes
// with a stable Nats-Msg-Id, so a repeat after a crash is dropped here.
const (
	eventsMaxMsgs  = 10000
	eventsMaxBytes = 16 << 20 // events are small: about 10000 of them
	eventsMaxAge   = 30 * 24 * time.Hour
	eventsAckWait  = 30 * time.Second
)

func eventsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       schema.EventsStream,
		Subjects:   []string{schema.EventsFilter},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Discard:    jetstream.DiscardOld,
		MaxMsgs:    eventsMaxMsgs,
		MaxAge:     eventsMaxAge,
		MaxBytes:   eventsMaxBytes,
		MaxMsgSize: maxMsgSize,
		Duplicates: dedupWindow,
		Replicas:   1,
	}
}

func eventsConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       schema.EventsConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       eventsAckWait,
		MaxDeliver:    -1, // an event is retried until the webhook takes it
		MaxAckPending: 1,  // in order, one at a time
		FilterSubject: schema.EventsFilter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// jobsConsumerConfig is the consumer the modems serving country cc pull
// its jobs from. A work-queue stream refuses consumers whose filters
// overlap, so there is one per country, shared by every modem that serves
// it, never one per modem.
func (b *Broker) jobsConsumerConfig(cc string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:    schema.JobsConsumerFor(cc),
		AckPolicy:  jetstream.AckExplicitPolicy,
		AckWait:    b.cfg.AckWait,
		MaxDeliver: b.cfg.MaxDeliver,
		// Every modem sends one SMS at a time, so this bounds how many
		// modems can send a country's SMS in parallel (SMS Server Tools
		// drives up to 64).
		MaxAckPending: maxModems,
		FilterSubject: schema.JobSubject(cc),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

func resultsConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       schema.ResultsConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       resultsAckWait,
		MaxDeliver:    -1, // a result is retried until the API takes it
		MaxAckPending: resultsAckPending,
		FilterSubject: schema.ResultsFilter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// ensureTopology creates or updates the streams and consumers in place.
// Deleting and recreating would hand the modem a terminal "consumer
// deleted" and lose the delivery state.
func (b *Broker) ensureTopology(ctx context.Context) error {
	jobs, err := b.js.CreateOrUpdateStream(ctx, b.jobsStreamConfig())
	if err != nil {
		return fmt.Errorf("create stream %s: %w", schema.JobsStream, err)
	}
	results, err := b.js.CreateOrUpdateStream(ctx, resultsStreamConfig())
	if err != nil {
		return fmt.Errorf("create stream %s: %w", schema.ResultsStream, err)
	}
	events, err := b.js.CreateOrUpdateStream(ctx, eventsStreamConfig())
	if err != nil {
		return fmt.Errorf("create stream %s: %w", schema.EventsStream, err)
	}
	b.jobs = jobs
	if _, err := b.js.CreateOrUpdateStream(ctx, deadStreamConfig()); err != nil {
		return fmt.Errorf("create stream %s: %w", schema.DeadStream, err)
	}
	if b.claims, err = b.js.CreateOrUpdateKeyValue(ctx, claimsBucketConfig()); err != nil {
		return fmt.Errorf("create bucket %s: %w", schema.ClaimsBucket, err)
	}
	if _, err = b.js.CreateOrUpdateKeyValue(ctx, attemptsBucketConfig()); err != nil {
		return fmt.Errorf("create bucket %s: %w", schema.AttemptsBucket, err)
	}
	countries, err := b.jobsCountries(ctx)
	if err != nil {
		return err
	}
	type consumer struct {
		stream jetstream.Stream
		cfg    jetstream.ConsumerConfig
	}
	var all []consumer
	for _, cc := range countries {
		all = append(all, consumer{jobs, b.jobsConsumerConfig(cc)})
	}
	all = append(all, consumer{results, resultsConsumerConfig()}, consumer{events, eventsConsumerConfig()})
	for _, t := range all {
		name := t.stream.CachedInfo().Config.Name
		cons, err := t.stream.CreateOrUpdateConsumer(ctx, t.cfg)
		if err != nil {
			return fmt.Errorf("create consumer %s/%s: %w", name, t.cfg.Durable, err)
		}
		if err := b.checkConsumerAhead(ctx, t.stream, cons); err != nil {
			return err
		}
	}
	return nil
}

// legacyJobsConsumer is the single jobs consumer (filter sms.jobs.>) of
// releases before the per-country ones. Its filter overlaps theirs, which a
// work-queue stream refuses, so it is deleted before they are created.
const legacyJobsConsumer = "modem"

// jobsCountries returns the countries that need a jobs consumer (the
// configured ones, and any other a stored job is queued for, such as XX or
// a country taken out of SMS_COUNTRIES) and deletes the jobs consumers
// nothing needs: the legacy single consumer and those of countries with no
// job left. A job stored in a work-queue stream stays there when its
// consumer goes, and the new consumer (DeliverAll) delivers it again: one a
// modem held at the change is redelivered, and the SMS_ATTEMPTS record and
// the modem's ledger keep it from being sent twice.
func (b *Broker) jobsCountries(ctx context.Context) ([]string, error) {
	countries := slices.Clone(b.cfg.Countries)
	info, err := b.jobs.Info(ctx, jetstream.WithSubjectFilter(schema.JobsFilter))
	if err != nil {
		return nil, fmt.Errorf("stream info %s: %w", schema.JobsStream, err)
	}
	for _, subject := range slices.Sorted(maps.Keys(info.State.Subjects)) {
		cc := strings.TrimPrefix(subject, schema.JobsSubject+".")
		if !schema.ValidCountry(cc) {
			// schema.JobSubject never publishes there.
			b.log.Error("jobs are queued on a subject no jobs consumer can take", zap.String("subject", subject))
			continue
		}
		if !slices.Contains(countries, cc) {
			b.log.Warn("jobs are queued for a country outside SMS_COUNTRIES; keeping its consumer so a modem serving it can send them",
				zap.String("country", cc), zap.Uint64("jobs", info.State.Subjects[subject]))
			countries = append(countries, cc)
		}
	}
	names := b.jobs.ConsumerNames(ctx)
	var drop []string
	for name := range names.Name() {
		cc, ok := schema.JobsConsumerCountry(name)
		if name == legacyJobsConsumer || (ok && !slices.Contains(countries, cc)) {
			drop = append(drop, name)
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", schema.JobsStream, err)
	}
	for _, name := range drop {
		if err := b.js.DeleteConsumer(ctx, schema.JobsStream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer %s/%s: %w", schema.JobsStream, name, err)
		}
		b.log.Info("jobs consumer deleted", zap.String("consumer", name),
			zap.String("why", map[bool]string{true: "replaced by one consumer per country", false: "no country needs it"}[name == legacyJobsConsumer]))
	}
	return countries, nil
}

// checkConsumerAhead repairs the state a power cut can leave behind: the
// stream lost its tail but the consumer's floors survived, so it waits for
// sequences the stream will only reach after that many new messages, and
// new jobs starve silently (nats-server#4566, #5412, #8036). nats-server
// 2.15 rewinds a single-replica consumer itself while recovering, but older
// releases only warned and the reports keep coming, so the invariant is
// checked here too. The consumer is rewound to the stream's first message:
// in a work-queue stream everything still stored is unfinished, so
// redelivering it all is correct, and the modem's ledger absorbs repeats.
func (b *Broker) checkConsumerAhead(ctx context.Context, stream jetstream.Stream, cons jetstream.Consumer) error {
	si, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer info: %w", err)
	}
	st := si.State
	log := b.log.With(zap.String("stream", si.Config.Name), zap.String("consumer", ci.Name))
	log.Info("stream state",
		zap.Uint64("msgs", st.Msgs), zap.Uint64("last_seq", st.LastSeq),
		zap.Uint64("ack_floor", ci.AckFloor.Stream), zap.Uint64("delivered", ci.Delivered.Stream),
		zap.Int("ack_pending", ci.NumAckPending), zap.Int("redelivered", ci.NumRedelivered))
	if ci.AckFloor.Stream <= st.LastSeq && ci.Delivered.Stream <= st.LastSeq {
		return nil
	}
	start := max(st.FirstSeq, 1)
	log.Warn("consumer is ahead of its stream (store lost data, e.g. in a power cut); resetting",
		zap.Uint64("last_seq", st.LastSeq), zap.Uint64("ack_floor", ci.AckFloor.Stream),
		zap.Uint64("delivered", ci.Delivered.Stream), zap.Uint64("reset_to", start))
	if _, err := b.js.ResetConsumerToSequence(ctx, si.Config.Name, ci.Name, start); err != nil {
		return fmt.Errorf("reset consumer %s/%s: %w", si.Config.Name, ci.Name, err)
	}
	return nil
}
