package broker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// deadJobRecorder is a DeadJobFunc that records what it was given and can
// be told to fail.
type deadJobRecorder struct {
	mu    sync.Mutex
	got   []string
	fail  int // fail this many calls first
	calls chan string
	check func() // runs inside the handler, before it returns
}

func newDeadJobRecorder() *deadJobRecorder {
	return &deadJobRecorder{calls: make(chan string, 16)}
}

func (r *deadJobRecorder) handle(_ context.Context, data []byte) error {
	r.mu.Lock()
	r.got = append(r.got, string(data))
	failing := r.fail > 0
	r.fail--
	check := r.check
	r.mu.Unlock()
	if check != nil {
		check()
	}
	r.calls <- string(data)
	if failing {
		return errors.New("upstream unavailable")
	}
	return nil
}

func (r *deadJobRecorder) handled() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func (r *deadJobRecorder) wait(t *testing.T) string {
	t.Helper()
	select {
	case data := <-r.calls:
		return data
	case <-time.After(waitTimeout):
		t.Fatal("dead job handler not called")
		return ""
	}
}

// watch runs WatchDeadJobs until the test ends; stop ends it early and
// waits for it to return.
func watch(t *testing.T, b *Broker, fn DeadJobFunc) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.WatchDeadJobs(ctx, fn) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("WatchDeadJobs: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// exhaust nak's the next job MaxDeliver times, then pulls once more, as
// the modem's next pull would: the server declares the job dead only then.
// That pull finds no other job (the caller queues the next one after), and
// it waits on the server until the last Nak was processed: with several
// jobs allowed in flight, a pull could otherwise overtake the Nak.
func exhaust(t *testing.T, cons jetstream.Consumer, maxDeliver int) {
	t.Helper()
	for range maxDeliver {
		if err := next(t, cons).Nak(); err != nil {
			t.Fatal(err)
		}
	}
	if msg, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond)); err == nil {
		t.Fatalf("pull after the last Nak got %q; want the job declared dead", msg.Data())
	}
}

func deadJobConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.MaxDeliver = 2
	return cfg
}

func TestDeadJobIsHandedOverThenDeleted(t *testing.T) {
	cfg := deadJobConfig(t)
	b := startBroker(t, cfg)
	rec := newDeadJobRecorder()
	// The periodic scan stays at its one-minute default, so only the
	// advisory can deliver this job in time.
	watch(t, b, rec.handle)

	cons := connectModem(t, b).consumer(t)
	publishJob(t, b, "dead.1")
	exhaust(t, cons, cfg.MaxDeliver)
	// The queue moves on past the dead job.
	publishJob(t, b, "alive.1")
	msg := next(t, cons)
	if string(msg.Data()) != "job alive.1" {
		t.Fatalf("next job = %q", msg.Data())
	}
	if err := msg.DoubleAck(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	if got := rec.wait(t); got != "job dead.1" {
		t.Fatalf("dead job handler got %q", got)
	}
	waitFor(t, "dead job to be deleted", func() bool { return jobsPending(t, b) == 0 })
	if got := rec.handled(); len(got) != 1 {
		t.Fatalf("dead job handler calls = %q, want one", got)
	}
}

func TestDeadJobStaysWhenHandlerFailsAndIsRetried(t *testing.T) {
	cfg := deadJobConfig(t)
	cfg.DeadJobScan = 50 * time.Millisecond
	b := startBroker(t, cfg)
	rec := newDeadJobRecorder()
	rec.fail = 1
	stored := make(chan bool, 4)
	rec.check = func() {
		_, err := b.jobs.GetMsg(context.Background(), 1)
		stored <- err == nil
	}
	watch(t, b, rec.handle)

	cons := connectModem(t, b).consumer(t)
	publishJob(t, b, "flaky.1")
	exhaust(t, cons, cfg.MaxDeliver)
	publishJob(t, b, "next.1")
	if err := next(t, cons).DoubleAck(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	rec.wait(t) // fails
	if !<-stored {
		t.Fatal("dead job gone before the handler returned")
	}
	if got := rec.wait(t); got != "job flaky.1" {
		t.Fatalf("retry got %q", got)
	}
	if !<-stored {
		t.Fatal("dead job gone after the handler failed; it must stay for the retry")
	}
	waitFor(t, "dead job to be deleted after the retry", func() bool { return jobsPending(t, b) == 0 })
	if got := rec.handled(); len(got) != 2 {
		t.Fatalf("dead job handler calls = %q, want two", got)
	}
}

func TestDeadJobFoundByScanWithoutAdvisory(t *testing.T) {
	cfg := deadJobConfig(t) // the periodic scan stays at its one-minute default
	b := startBroker(t, cfg)
	cons := connectModem(t, b).consumer(t)
	// A finished job first, so the scan must step over a gap to seq 2.
	publishJob(t, b, "done.1")
	if err := next(t, cons).DoubleAck(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	publishJob(t, b, "missed.1")
	exhaust(t, cons, cfg.MaxDeliver)
	// Nobody listens for the advisory. The pull that skips the dead job
	// gets the next one; two modems hold a job each, and the second one
	// finishes first: the job still in flight lies between the dead job and
	// the last delivered one.
	publishJob(t, b, "queued.1")
	publishJob(t, b, "queued.2")
	first, second := next(t, cons), next(t, cons)
	if string(first.Data()) != "job queued.1" || string(second.Data()) != "job queued.2" {
		t.Fatalf("jobs after the dead one = %q, %q", first.Data(), second.Data())
	}
	if err := second.DoubleAck(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Stream != 4 || info.NumAckPending != 1 {
		t.Fatalf("consumer: delivered %d, ack pending %d; want the dead job skipped and one job in flight",
			info.Delivered.Stream, info.NumAckPending)
	}

	// A scan now must leave the job in flight alone (and may leave the
	// dead job for later: the ack floor cannot pass it yet).
	rec := newDeadJobRecorder()
	b.scanDeadJobs(testCtx(t), rec.handle)
	if got := rec.handled(); len(got) != 0 {
		t.Fatalf("scan with a job in flight handed over %q; want nothing", got)
	}
	// Once it is acked, the start-up scan of the watch finds the dead job.
	if err := first.DoubleAck(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	stop := watch(t, b, rec.handle)
	if got := rec.wait(t); got != "job missed.1" {
		t.Fatalf("scan handed over %q", got)
	}
	waitFor(t, "dead job to be deleted", func() bool { return jobsPending(t, b) == 0 })
	stop()
	if got := rec.handled(); len(got) != 1 {
		t.Fatalf("dead job handler calls = %q, want only the dead job", got)
	}
}

func TestWatchDeadJobsStopsOnShutdown(t *testing.T) {
	b := startBroker(t, testConfig(t))
	done := make(chan error, 1)
	go func() {
		done <- b.WatchDeadJobs(context.Background(), func(context.Context, []byte) error { return nil })
	}()
	b.Shutdown()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WatchDeadJobs = %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("WatchDeadJobs still running after Shutdown")
	}
	if _, err := b.JobsPending(testCtx(t)); err == nil {
		t.Fatal("JobsPending after Shutdown succeeded")
	}
}
