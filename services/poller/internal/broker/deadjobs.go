package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// DeadJobFunc handles a job that exhausted its deliveries, typically by
// publishing a Failed result. The job is deleted only after it returns nil.
type DeadJobFunc func(ctx context.Context, data []byte) error

// WatchDeadJobs hands every job that reached MaxDeliver to fn, then deletes
// it: a work-queue stream keeps such jobs by design, where they would sit
// unreported and count as pending forever. The server declares a job dead
// when the modem next pulls and publishes a MAX_DELIVERIES advisory once.
// Advisories are not stored, so a periodic scan (also run once at the
// start) catches jobs whose advisory was missed or whose fn failed. It
// blocks until ctx is done or the broker stops; call it once.
func (b *Broker) WatchDeadJobs(ctx context.Context, fn DeadJobFunc) error {
	// Every jobs consumer (one per country) raises its own advisory.
	subject := fmt.Sprintf("%s.%s.*", server.JSAdvisoryConsumerMaxDeliveryExceedPre, schema.JobsStream)
	seqs := make(chan uint64, 64)
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		var adv server.JSConsumerDeliveryExceededAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			b.log.Warn("bad max-deliveries advisory", zap.Error(err))
			return
		}
		select {
		case seqs <- adv.StreamSeq:
		default: // the next scan finds it
		}
	})
	if err != nil {
		return b.watchErr(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The subscription must be live before the first scan, or a job
	// exhausted in between would wait a whole scan interval.
	if err := b.nc.FlushTimeout(flushTimeout); err != nil {
		return b.watchErr(err)
	}

	tick := time.NewTicker(b.cfg.DeadJobScan)
	defer tick.Stop()
	b.scanDeadJobs(ctx, fn)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.done:
			return nil
		case seq := <-seqs:
			if err := b.reapDeadJob(ctx, seq, fn); err != nil {
				b.log.Warn("dead job not handled; will retry", zap.Uint64("seq", seq), zap.Error(err))
			}
		case <-tick.C:
			b.scanDeadJobs(ctx, fn)
		}
	}
}

// watchErr reports a failure to set up the watch, unless the broker is
// stopping: then the watch simply ends, as it would inside its loop.
func (b *Broker) watchErr(err error) error {
	select {
	case <-b.done:
		return nil
	default:
		return fmt.Errorf("watch dead jobs: %w", err)
	}
}

// scanDeadJobs scans each jobs consumer's subject (one per country) for
// dead jobs.
func (b *Broker) scanDeadJobs(ctx context.Context, fn DeadJobFunc) {
	names := b.jobs.ConsumerNames(ctx)
	var consumers []string
	for name := range names.Name() {
		if _, ok := schema.JobsConsumerCountry(name); ok {
			consumers = append(consumers, name)
		}
	}
	if err := names.Err(); err != nil {
		b.log.Warn("dead job scan", zap.Error(err))
		return
	}
	for _, name := range consumers {
		b.scanConsumer(ctx, name, fn)
	}
}

// scanConsumer reaps every stored job of one consumer's subject below its
// ack floor (or every delivered one while none is in flight). Several
// modems may each hold a job, in any order, so only the floor is a safe
// bound: everything of its subject at or below it was acked, terminated
// (both remove it from a work-queue stream) or dropped after MaxDeliver,
// so what is still stored there is dead. The server persists the floor
// only on the next ack, so it lags behind a dead job; the advisory covers
// the prompt case.
func (b *Broker) scanConsumer(ctx context.Context, name string, fn DeadJobFunc) {
	cons, err := b.js.Consumer(ctx, schema.JobsStream, name)
	if err != nil {
		b.log.Warn("dead job scan", zap.String("consumer", name), zap.Error(err))
		return
	}
	info := cons.CachedInfo()
	end := info.AckFloor.Stream + 1 // exclusive
	if info.NumAckPending == 0 {
		end = info.Delivered.Stream + 1
	}
	for seq := uint64(1); seq < end; {
		msg, err := b.jobs.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(info.Config.FilterSubject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return
		}
		if err != nil {
			b.log.Warn("dead job scan", zap.String("consumer", name), zap.Error(err))
			return
		}
		if msg.Sequence >= end {
			return
		}
		if err := b.reap(ctx, msg, fn); err != nil {
			b.log.Warn("dead job not handled; will retry", zap.Uint64("seq", msg.Sequence), zap.Error(err))
		}
		seq = msg.Sequence + 1
	}
}

func (b *Broker) reapDeadJob(ctx context.Context, seq uint64, fn DeadJobFunc) error {
	msg, err := b.jobs.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // already reaped by a scan, or acked late
	}
	if err != nil {
		return fmt.Errorf("get dead job: %w", err)
	}
	return b.reap(ctx, msg, fn)
}

func (b *Broker) reap(ctx context.Context, msg *jetstream.RawStreamMsg, fn DeadJobFunc) error {
	b.log.Warn("job exhausted its deliveries", zap.Uint64("seq", msg.Sequence), zap.String("subject", msg.Subject))
	if err := fn(ctx, msg.Data); err != nil {
		return fmt.Errorf("handle dead job: %w", err)
	}
	if err := b.jobs.DeleteMsg(ctx, msg.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete dead job: %w", err)
	}
	return nil
}
