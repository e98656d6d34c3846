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

// exhaust nak's the next job MaxDeliver times. The server declares it dead
// only when the following pull arrives, as the modem's next pull would.
func exhaust(t *testing.T, cons jetstream.Consumer, maxDeliver int) {
	t.Helper()
	for range maxDeliver {
		if err := next(t, cons).NakWithDelay(time.Millisecond); err != nil {
			t.Fatal(err)
		}
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
	// gets the next one, which stays in flight above the ack floor.
	publishJob(t, b, "queued.1")
	if msg := next(t, cons); string(msg.Data()) != "job queued.1" {
		t.Fatalf("job after the dead one = %q", msg.Data())
	}
	info, err := cons.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Stream != 3 || info.NumAckPending != 1 {
		t.Fatalf("consumer: delivered %d, ack pending %d; want the dead job skipped and the next in flight",
			info.Delivered.Stream, info.NumAckPending)
	}

	rec := newDeadJobRecorder()
	stop := watch(t, b, rec.handle)
	if got := rec.wait(t); got != "job missed.1" {
		t.Fatalf("start-up scan handed over %q", got)
	}
	waitFor(t, "dead job to be deleted", func() bool { return jobsPending(t, b) == 1 })
	stop() // returns after the start-up scan has finished
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
