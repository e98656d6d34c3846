package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/devstack/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// ErrNotSent means a run ended with SMS that did not reach Sent: the
// figures would describe a failure, not the gateway.
var ErrNotSent = errors.New("bench: SMS not sent")

// Product defaults the gateway stacks run with (the harness shortens some
// of them for the tests; the bench must not).
const (
	pollInterval = 10 * time.Second
	ackWait      = 2 * time.Minute
	maxQueued    = 2
)

var modemDefaults = []string{"MODEM_TIMEOUT=30s", "MODEM_SEND_TIMEOUT=120s", "MODEM_KEEPALIVE=30s"}

// options describes a stack with the product defaults and a simulator
// answering each part after latency, working in its own directory.
func (r *runner) options(name string, latency time.Duration) (harness.Options, error) {
	dir := filepath.Join(r.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return harness.Options{}, err
	}
	return harness.Options{
		Bin: r.cfg.Bin, Dir: dir,
		PollInterval: pollInterval, AckWait: ackWait, MaxQueued: maxQueued,
		Sim:      modemsim.Config{PartLatency: latency},
		ModemEnv: modemDefaults,
	}, nil
}

// startLoaded seeds n SMS before either service runs, then starts both:
// the first claim finds the whole load waiting, as after an outage.
func (r *runner) startLoaded(ctx context.Context, name string, n int, latency time.Duration) (*harness.Stack, []string, error) {
	o, err := r.options(name, latency)
	if err != nil {
		return nil, nil, err
	}
	o.NoServices = true
	st, err := harness.Start(ctx, o)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: start stand-ins: %w", name, err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = st.Seed(message(name, i))
	}
	for _, p := range []*harness.Proc{st.Poller, st.Modem} {
		if err := p.Start(); err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := st.WaitModemReady(ctx); err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return st, ids, nil
}

// message is a single-part GSM 7-bit SMS to a Romanian mobile number.
func message(tag string, i int) smsapi.SMS {
	return smsapi.SMS{
		PhoneNumber: fmt.Sprintf("+4072%07d", i),
		Message:     fmt.Sprintf("Bench %s %d: freezer 2 back within range", tag, i),
		Tenant:      "bench",
	}
}

// waitSent waits until every SMS is final and checks they were all Sent.
// It first waits for the simulator to hold as many messages as there are
// ids, a cheap check: WaitFinal looks every id up under the API's lock
// after each request, which for a long batch would slow the very API the
// gateway is being timed against.
func waitSent(ctx context.Context, st *harness.Stack, ids []string, timeout time.Duration) ([]Lifecycle, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := st.Sim.WaitReceived(wctx, len(ids))
	if err == nil {
		err = st.WaitFinal(wctx, ids)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %d of %d not final after %s (%w)", ErrNotSent, len(st.Pending(ids)), len(ids), timeout, err)
	}
	ls := make([]Lifecycle, 0, len(ids))
	for _, id := range ids {
		m, _ := st.API.Get(id)
		l, ok := LifecycleOf(st.API.History(id))
		if m.Status != schema.StatusSent || !ok {
			return nil, fmt.Errorf("%w: %s ended %s", ErrNotSent, id, m.Status)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// usage is the CPU time of the services and of the bench process, which
// hosts the API stand-in and the simulator, and the bytes each service
// wrote to storage.
type usage struct {
	poller, modem, self       time.Duration
	pollerWrites, modemWrites int64
}

func usageOf(st *harness.Stack) (usage, error) {
	var u usage
	for _, x := range []struct {
		pid    int
		dst    *time.Duration
		writes *int64
	}{{st.Poller.Pid(), &u.poller, &u.pollerWrites}, {st.Modem.Pid(), &u.modem, &u.modemWrites}, {os.Getpid(), &u.self, nil}} {
		if x.pid == 0 {
			return u, errors.New("a service is not running")
		}
		d, err := CPUOf(x.pid)
		if err != nil {
			return u, err
		}
		*x.dst = d
		if x.writes != nil {
			if *x.writes, err = WritesOf(x.pid); err != nil {
				return u, err
			}
		}
	}
	return u, nil
}

func (u usage) sub(v usage) usage {
	return usage{u.poller - v.poller, u.modem - v.modem, u.self - v.self, u.pollerWrites - v.pollerWrites, u.modemWrites - v.modemWrites}
}

// dirSize adds up the allocated size of the files under dir (du, not ls:
// a preallocated journal counts in full).
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// memOf reads both services' memory.
func memOf(st *harness.Stack) (poller, modem Mem, err error) {
	if poller, err = MemOf(st.Poller.Pid()); err != nil {
		return
	}
	modem, err = MemOf(st.Modem.Pid())
	return
}

// overheadResult is measurement 1: the pipeline with a zero-latency modem.
type overheadResult struct {
	n                   int
	throughput          float64
	median, p99         time.Duration
	cpu                 usage
	wall                time.Duration
	pollerMem, modemMem Mem
	ledger, store       int64 // bytes on disk after the run: the modem's ledger, the broker's store
}

// overhead runs n SMS through a modem that answers at once, so what is
// measured is the gateway. The stack stays up for the idle measurement.
func (r *runner) overhead(ctx context.Context, n int) (*harness.Stack, overheadResult, error) {
	st, ids, err := r.startLoaded(ctx, "overhead", n, 0)
	if err != nil {
		return nil, overheadResult{}, err
	}
	res, err := measureOverhead(ctx, st, ids)
	if err != nil {
		st.Close()
		return nil, res, fmt.Errorf("overhead: %w", err)
	}
	return st, res, nil
}

func measureOverhead(ctx context.Context, st *harness.Stack, ids []string) (overheadResult, error) {
	res := overheadResult{n: len(ids)}
	u0, err := usageOf(st)
	if err != nil {
		return res, err
	}
	ls, err := waitSent(ctx, st, ids, time.Minute+time.Duration(len(ids))*100*time.Millisecond)
	if err != nil {
		return res, err
	}
	u1, err := usageOf(st)
	if err != nil {
		return res, err
	}
	res.cpu = u1.sub(u0)
	if res.pollerMem, res.modemMem, err = memOf(st); err != nil {
		return res, err
	}
	if res.ledger, err = dirSize(filepath.Join(st.Dir(), "modem", "ledger")); err != nil {
		return res, err
	}
	if res.store, err = dirSize(filepath.Join(st.Dir(), "jetstream")); err != nil {
		return res, err
	}
	first, last, each, err := Span(ls)
	if err != nil {
		return res, err
	}
	res.wall = last.Sub(first)
	if res.throughput, err = Throughput(len(ls), first, last); err != nil {
		return res, err
	}
	if res.median, err = Percentile(each, 50); err != nil {
		return res, err
	}
	res.p99, err = Percentile(each, 99)
	return res, err
}

// idleResult is the idle half of measurement 4.
type idleResult struct {
	window              time.Duration
	pollerMem, modemMem Mem
	cpu                 usage         // over cpuSpan; self is not meaningful here
	cpuSpan             time.Duration // the part of the window CPU was counted over
	quiet               bool          // cpuSpan began after the other runs ended
}

// measureIdle leaves a stack that has just worked alone for window and reads
// what it holds and burns meanwhile. The other runs share the machine during
// the first part of the window, and a busy machine makes even an idle Go
// process spend more on scheduling; so once quiet is closed CPU is counted
// afresh, and the whole window is used only if it never is.
func measureIdle(ctx context.Context, st *harness.Stack, window time.Duration, quiet <-chan struct{}) (idleResult, error) {
	res := idleResult{window: window}
	from := time.Now()
	u0, err := usageOf(st)
	if err != nil {
		return res, fmt.Errorf("idle: %w", err)
	}
	t := time.NewTimer(window)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("idle: %w", context.Cause(ctx))
		case <-quiet:
			quiet, res.quiet, from = nil, true, time.Now()
			if u0, err = usageOf(st); err != nil {
				return res, fmt.Errorf("idle: %w", err)
			}
		case <-t.C:
			done = true
		}
	}
	u1, err := usageOf(st)
	if err != nil {
		return res, fmt.Errorf("idle: %w", err)
	}
	res.cpu, res.cpuSpan = u1.sub(u0), time.Since(from)
	if res.pollerMem, res.modemMem, err = memOf(st); err != nil {
		return res, fmt.Errorf("idle: %w", err)
	}
	return res, nil
}

// latencyResult is measurement 3.
type latencyResult struct {
	samples []time.Duration
}

// idleLatency seeds one SMS at a time into an idle gateway, at a random
// point of the poller's sleep, and times it to the start of its AT+CMGS.
func (r *runner) idleLatency(ctx context.Context, samples int) (latencyResult, error) {
	var res latencyResult
	o, err := r.options("idle-latency", 0)
	if err != nil {
		return res, err
	}
	st, err := harness.Start(ctx, o)
	if err != nil {
		return res, fmt.Errorf("idle latency: %w", err)
	}
	defer st.Close()
	if err := st.WaitPollerReady(ctx); err != nil {
		return res, fmt.Errorf("idle latency: %w", err)
	}
	for i := range samples {
		// The offset puts the arrival anywhere in the poller's sleep, which
		// restarts after each send.
		t := time.NewTimer(rand.N(pollInterval))
		select {
		case <-ctx.Done():
			t.Stop()
			return res, fmt.Errorf("idle latency: %w", context.Cause(ctx))
		case <-t.C:
		}
		before, submits := len(st.Sim.CMGSStarts()), len(st.Sim.Submits())
		seeded := time.Now()
		id := st.Seed(message("idle", i))
		wctx, cancel := context.WithTimeout(ctx, pollInterval+30*time.Second)
		err := st.Sim.WaitSubmits(wctx, submits+1)
		cancel()
		if err != nil {
			return res, fmt.Errorf("idle latency: %w", err)
		}
		starts := st.Sim.CMGSStarts()
		if len(starts) <= before {
			return res, errors.New("idle latency: a PDU was submitted without an AT+CMGS")
		}
		res.samples = append(res.samples, starts[before].Sub(seeded))
		if _, err := waitSent(ctx, st, []string{id}, 30*time.Second); err != nil {
			return res, fmt.Errorf("idle latency: %w", err)
		}
	}
	return res, nil
}

// batchResult is a queue of n single-part SMS through one stack: the
// utilisation run (measurement 2) and our side of the gammu comparison.
type batchResult struct {
	n           int
	latency     time.Duration
	throughput  float64 // at the simulator: first AT+CMGS to the last answer
	endToEnd    float64 // at the API: first claim to the last confirmed PATCH
	utilisation float64
	peak        int64 // poller plus modem VmHWM
}

func (r *runner) batch(ctx context.Context, name string, n int, latency time.Duration) (batchResult, error) {
	res := batchResult{n: n, latency: latency}
	st, ids, err := r.startLoaded(ctx, name, n, latency)
	if err != nil {
		return res, err
	}
	defer st.Close()
	ls, err := waitSent(ctx, st, ids, time.Minute+time.Duration(n)*(latency+time.Second))
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	if res.throughput, res.utilisation, err = simWindow(st.Sim, n); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	first, last, _, err := Span(ls)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	if res.endToEnd, err = Throughput(n, first, last); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	p, m, err := memOf(st)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	res.peak = p.Peak + m.Peak
	return res, nil
}

// simWindow measures a finished run at the simulator, the same way for
// any client: n messages from the first AT+CMGS to the last answer, and
// the share of that window spent inside AT+CMGS.
func simWindow(sim *modemsim.Sim, n int) (throughput, utilisation float64, err error) {
	starts, rec := sim.CMGSStarts(), sim.Received()
	if len(rec) != n || len(starts) == 0 {
		return 0, 0, fmt.Errorf("simulator received %d messages after %d AT+CMGS, want %d: %w", len(rec), len(starts), n, ErrNotSent)
	}
	if st := sim.Stats(); st.Rejected > 0 || st.Accepted != n {
		return 0, 0, fmt.Errorf("simulator accepted %d parts and rejected %d, want %d single parts: %w", st.Accepted, st.Rejected, n, ErrNotSent)
	}
	first, last := starts[0], rec[n-1].At
	if throughput, err = Throughput(n, first, last); err != nil {
		return 0, 0, err
	}
	utilisation, err = Utilisation(sim.CMGSBusy(), first, last)
	return throughput, utilisation, err
}
