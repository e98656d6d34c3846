// Package bench is `make bench`: it runs the real sms-poller and sms-modem
// binaries on the stand-ins and the modem simulator and measures what the
// performance issue asks for — the pipeline's own overhead with a modem that
// answers at once, how busy the gateway keeps a slow modem, how long an SMS
// waits in an idle gateway, memory and idle CPU of both services — and then
// drives gammu-smsd against the same simulator for a side-by-side figure.
// Every figure is printed next to its target with PASS or MISS, and written
// as JSON; a missed target is a finding, not a failure, so only a run that
// could not be carried out returns an error.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Config is one run of the bench.
type Config struct {
	Bin      string    // directory holding sms-poller and sms-modem
	Out      string    // results directory; its tmp/ holds the run's work files
	Quick    bool      // the short run CI uses to prove the bench works
	Progress io.Writer // one line per phase; nil discards
}

// plan sizes each measurement; the full plan stays under ten minutes, the
// quick one under two.
type plan struct {
	overheadN   int           // SMS through the zero-latency pipeline
	batchN      int           // SMS queued for the utilisation run and the gammu comparison
	idleSamples int           // single SMS into an idle gateway
	idleWindow  time.Duration // how long the worked stack is left alone
	scaleN      int           // SMS per modem in each scaling run
}

func planFor(quick bool) plan {
	if quick {
		return plan{overheadN: 200, batchN: 20, idleSamples: 2, idleWindow: time.Minute, scaleN: 5}
	}
	// Ten idle minutes would not fit the ten-minute budget after the
	// overhead run, so the window is eight; CPU is reported per minute.
	return plan{overheadN: 1000, batchN: 60, idleSamples: 5, idleWindow: 8 * time.Minute, scaleN: 30}
}

type runner struct {
	cfg      Config
	work     string
	progress io.Writer
}

func (r *runner) say(format string, args ...any) {
	fmt.Fprintf(r.progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// results gathers what the phases measured; gammu fields stay nil when it
// is not installed.
type results struct {
	overhead       overheadResult
	idle           idleResult
	latency        latencyResult
	util, ours0    batchResult
	gammu1, gammu0 *gammuResult
	scale          []scaleResult // one per scaleModems entry, in order
}

// Run carries out the whole bench and returns the report. The work files
// (service logs, stores, gammu's spool) are removed after a successful
// run and kept, with their path in the error, after a failed one.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	for _, b := range []string{"sms-poller", "sms-modem"} {
		if _, err := os.Stat(filepath.Join(cfg.Bin, b)); err != nil {
			return nil, fmt.Errorf("bench: %w (run make build)", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.Out, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	work, err := os.MkdirTemp(filepath.Join(cfg.Out, "tmp"), "run-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r := &runner{cfg: cfg, work: work, progress: cfg.Progress}
	p := planFor(cfg.Quick)
	rep := &Report{Mode: "full", StartedAt: time.Now().UTC(), Host: host()}
	if cfg.Quick {
		rep.Mode = "quick"
	}
	gv, gerr := gammuVersion(ctx)
	switch {
	case errors.Is(gerr, ErrNoGammu):
		r.say("%v: the comparison is left out", gerr)
	case gerr != nil:
		return nil, gerr
	default:
		rep.Host.Gammu = gv
	}

	res, err := r.measure(ctx, p, gerr == nil)
	if err != nil {
		return nil, fmt.Errorf("%w (work files kept in %s)", err, work)
	}
	if err := rep.fill(res, cfg.Bin); err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(rep.StartedAt).Seconds()
	_ = os.RemoveAll(work)
	return rep, nil
}

// measure runs the phases. The overhead run goes first, alone. Its stack
// then idles for the idle window, while the rest runs on stacks of its own:
// the idle-latency samples, the 1 s/part runs side by side (network time
// dominates them: utilisation, gammu-smsd, and the scaling runs one after
// the other), then the two zero-latency runs one after the
// other, since those compete for CPU. The idle window counts CPU only from
// when the rest has ended, if it ends in time.
func (r *runner) measure(ctx context.Context, p plan, withGammu bool) (results, error) {
	var res results
	r.say("overhead: %d SMS, simulator answering at once", p.overheadN)
	st, ov, err := r.overhead(ctx, p.overheadN)
	if err != nil {
		return res, err
	}
	defer st.Close()
	res.overhead = ov
	r.say("overhead: %.1f SMS/s; now idling %s, with the other runs alongside", ov.throughput, p.idleWindow)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	run := func(what string, f func() error) {
		if err := f(); err != nil {
			cancel(err)
			return
		}
		r.say("%s: done", what)
	}
	// quiet closes when every run beside the idle window has ended.
	quiet := make(chan struct{})
	var idling, others sync.WaitGroup
	idling.Go(func() {
		run("idle window", func() (err error) { res.idle, err = measureIdle(ctx, st, p.idleWindow, quiet); return })
	})
	others.Go(func() {
		run("idle latency", func() (err error) { res.latency, err = r.idleLatency(ctx, p.idleSamples); return })
	})
	others.Go(func() {
		var slow sync.WaitGroup
		slow.Go(func() {
			run("utilisation (1 s/part)", func() (err error) {
				res.util, err = r.batch(ctx, "utilisation", p.batchN, time.Second)
				return
			})
		})
		slow.Go(func() {
			run("scaling (1, 2, 4 modems, 1 s/part)", func() error {
				for _, n := range scaleModems {
					sr, err := r.scaling(ctx, n, p.scaleN)
					if err != nil {
						return err
					}
					res.scale = append(res.scale, sr)
				}
				return nil
			})
		})
		if withGammu {
			slow.Go(func() {
				run("gammu-smsd (1 s/part)", func() error {
					g, err := r.gammu(ctx, "gammu-1s", p.batchN, time.Second)
					res.gammu1 = &g
					return err
				})
			})
		}
		slow.Wait()
		if ctx.Err() != nil {
			return
		}
		run("ours (0 s/part)", func() (err error) { res.ours0, err = r.batch(ctx, "batch-0s", p.batchN, 0); return })
		if withGammu && ctx.Err() == nil {
			run("gammu-smsd (0 s/part)", func() error {
				g, err := r.gammu(ctx, "gammu-0s", p.batchN, 0)
				res.gammu0 = &g
				return err
			})
		}
	})
	others.Wait()
	close(quiet)
	idling.Wait()
	if err := context.Cause(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// fill turns the results into figures, in the order.
func (rep *Report) fill(res results, bin string) error {
	ov := res.overhead
	sec := "1 Overhead"
	rep.add(sec, fmt.Sprintf("throughput, %d SMS, 0 s/part", ov.n), ov.throughput, "SMS/s", &Target{">=", 50})
	rep.add(sec, "claim → confirmed PATCH, median", ms(ov.median), "ms", &Target{"<", 20})
	rep.add(sec, "claim → confirmed PATCH, p99", ms(ov.p99), "ms", nil)
	for _, c := range []struct {
		who string
		d   time.Duration
	}{{"sms-poller", ov.cpu.poller}, {"sms-modem", ov.cpu.modem}, {"stand-ins + simulator", ov.cpu.self}} {
		rep.add(sec, "CPU during the run, "+c.who, 100*c.d.Seconds()/ov.wall.Seconds(), "% of a core", nil)
	}

	sec = "2 Utilisation"
	rep.add(sec, fmt.Sprintf("modem busy in AT+CMGS, %d SMS, 1 s/part", res.util.n), 100*res.util.utilisation, "%", &Target{">=", 98})

	sec = "3 Idle latency"
	mx, err := Percentile(res.latency.samples, 100)
	if err != nil {
		return err
	}
	mean, err := Mean(res.latency.samples)
	if err != nil {
		return err
	}
	lim := ms(pollInterval + 100*time.Millisecond)
	rep.add(sec, fmt.Sprintf("seeded → AT+CMGS, max of %d", len(res.latency.samples)), ms(mx), "ms", &Target{"<=", lim})
	rep.add(sec, fmt.Sprintf("seeded → AT+CMGS, mean of %d", len(res.latency.samples)), ms(mean), "ms", nil)

	sec = "4 Footprint"
	rep.add(sec, "sms-poller peak RSS (run 1)", mb(ov.pollerMem.Peak), "MB", &Target{"<", 40})
	rep.add(sec, "sms-modem peak RSS (run 1)", mb(ov.modemMem.Peak), "MB", &Target{"<", 20})
	idle := res.idle
	idleMin := idle.window.Minutes()
	after := fmt.Sprintf("after %s idle", fmtMinutes(idleMin))
	rep.add(sec, "sms-poller RSS "+after, mb(idle.pollerMem.RSS), "MB", &Target{"<", 40})
	rep.add(sec, "sms-modem RSS "+after, mb(idle.modemMem.RSS), "MB", &Target{"<", 20})
	rep.add(sec, "sms-poller RSS "+after+", anonymous part", mb(idle.pollerMem.Anon), "MB", nil)
	rep.add(sec, "sms-modem RSS "+after+", anonymous part", mb(idle.modemMem.Anon), "MB", nil)
	cpuMin := idle.cpuSpan.Minutes()
	rep.add(sec, "CPU per idle minute, both", (idle.cpu.poller+idle.cpu.modem).Seconds()/cpuMin, "s", &Target{"<", 0.2})
	rep.add(sec, "CPU per idle minute, sms-poller", idle.cpu.poller.Seconds()/cpuMin, "s", nil)
	rep.add(sec, "CPU per idle minute, sms-modem", idle.cpu.modem.Seconds()/cpuMin, "s", nil)
	for _, b := range []string{"sms-poller", "sms-modem"} {
		fi, err := os.Stat(filepath.Join(bin, b))
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		rep.add(sec, b+" binary size", mb(fi.Size()), "MB", nil)
	}

	sec = "5 vs gammu-smsd"
	rep.add(sec, fmt.Sprintf("ours, %d SMS, 0 s/part", res.ours0.n), res.ours0.throughput, "SMS/s", nil)
	if g := res.gammu0; g != nil {
		rep.add(sec, fmt.Sprintf("gammu-smsd, %d SMS, 0 s/part", g.n), g.throughput, "SMS/s", nil)
		rep.add(sec, "ours / gammu-smsd, 0 s/part", res.ours0.throughput/g.throughput, "×", nil)
	}
	rep.add(sec, fmt.Sprintf("ours, %d SMS, 1 s/part", res.util.n), res.util.throughput, "SMS/s", nil)
	if g := res.gammu1; g != nil {
		rep.add(sec, fmt.Sprintf("gammu-smsd, %d SMS, 1 s/part", g.n), g.throughput, "SMS/s", nil)
		rep.add(sec, "ours / gammu-smsd, 1 s/part", res.util.throughput/g.throughput, "×", nil)
		rep.add(sec, "gammu-smsd modem busy in AT+CMGS, 1 s/part", 100*g.utilisation, "%", nil)
	}
	rep.add(sec, "ours peak RSS, poller + modem, 0 s/part", mb(res.ours0.peak), "MB", nil)
	if g := res.gammu0; g != nil {
		rep.add(sec, "gammu-smsd peak RSS, 0 s/part", mb(g.peak), "MB", nil)
		rep.add(sec, "ours / gammu-smsd, peak RSS", float64(res.ours0.peak)/float64(g.peak), "×", nil)
	}

	sec = "6 Disk"
	perSMS := func(b int64) float64 { return float64(b) / float64(ov.n) / 1e3 }
	rep.add(sec, "written to storage per SMS, sms-poller", perSMS(ov.cpu.pollerWrites), "KB", nil)
	rep.add(sec, "written to storage per SMS, sms-modem", perSMS(ov.cpu.modemWrites), "KB", nil)
	rep.add(sec, "written to storage per SMS, both", perSMS(ov.cpu.pollerWrites+ov.cpu.modemWrites), "KB", &Target{"<=", 16})
	rep.add(sec, fmt.Sprintf("ledger on disk after %d SMS", ov.n), float64(ov.ledger)/1e3, "KB", nil)
	rep.add(sec, fmt.Sprintf("broker store on disk after %d SMS", ov.n), mb(ov.store), "MB", nil)

	sec = "7 Scaling"
	if len(res.scale) > 0 {
		one := res.scale[0].throughput
		for _, sr := range res.scale {
			modems := fmt.Sprintf("%d modems", sr.modems)
			if sr.modems == 1 {
				modems = "1 modem"
			}
			rep.add(sec, fmt.Sprintf("%s, %d SMS, 1 s/part", modems, sr.n), sr.throughput, "SMS/s", nil)
			if sr.modems > 1 {
				rep.add(sec, fmt.Sprintf("%d modems / 1 modem", sr.modems), sr.throughput/one, "×", &Target{">=", 0.95 * float64(sr.modems)})
			}
		}
	}

	rep.note("gateway: product defaults POLL_INTERVAL=%s, MAX_QUEUED_JOBS=%d, JOB_ACK_WAIT=%s, %s, LOG_LEVEL=info",
		pollInterval, maxQueued, ackWait, strings.Join(modemDefaults, ", "))
	rep.note("runs 1, 2 and 5 seed the whole queue before the services start; throughput in 1 is SMS over first claim → last confirmed PATCH (API stand-in's history)")
	rep.note("2 and the gammu comparison are measured at the simulator for both sides: SMS (and time inside AT+CMGS) over first AT+CMGS → last answer; our 1 s/part figure is run 2")
	rep.note("our end-to-end (first claim → last PATCH) for the same batches: %s SMS/s at 0 s/part, %s SMS/s at 1 s/part",
		FormatValue(res.ours0.endToEnd), FormatValue(res.util.endToEnd))
	rep.note("6: write_bytes from /proc/<pid>/io over run 1 (every write fsync'd: the broker's file store, the claim records, the ledger journal); sizes are allocated blocks (du); KB are 10³ bytes")
	if len(res.scale) > 0 {
		var shares []string
		for _, sr := range res.scale {
			shares = append(shares, fmt.Sprintf("%d: %v", sr.modems, sr.perModem))
		}
		rep.note("7: every modem ready before the SMS are seeded; SMS over the first AT+CMGS on any simulator → the last answer on any; SMS per modem %s", strings.Join(shares, "; "))
	}
	rep.note("3 seeds each SMS at a random point of the poller's %s sleep, on a stack of its own, while runs 2 and 5 go on", pollInterval)
	rep.note("4: peak RSS is VmHWM at the end of run 1; the idle window (%s) follows run 1 on the same stack; RSS beyond the anonymous part is mostly the executable's own pages; MB are 10⁶ bytes", res.idle.window)
	if res.idle.quiet {
		rep.note("4: idle CPU is utime+stime from /proc over the last %s of the window, after every other run had ended", res.idle.cpuSpan.Round(time.Second))
	} else {
		rep.note("4: idle CPU is utime+stime from /proc over the whole window, while other runs still shared the machine: it reads high")
	}
	if res.gammu0 == nil {
		rep.note("gammu-smsd comparison left out: %v", ErrNoGammu)
	} else {
		var s []string
		for _, g := range gammuSettings {
			s = append(s, fmt.Sprintf("%s=%s (%s)", g.key, g.value, g.why))
		}
		rep.note("gammu-smsd: files backend, connection=at, outbox filled with gammu-smsd-inject before start; other settings default; %s", strings.Join(s, "; "))
	}
	return nil
}

func fmtMinutes(m float64) string {
	if m == float64(int(m)) {
		return fmt.Sprintf("%d min", int(m))
	}
	return fmt.Sprintf("%.1f min", m)
}

func host() Host {
	h := Host{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}
