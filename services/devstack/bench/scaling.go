package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/harness"
	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// scaleLatency is each simulated modem's network time per part in the
// scaling runs: a real modem's order of magnitude, so the modems, not the
// gateway, bound the throughput.
const scaleLatency = time.Second

// scaleModems are the modem counts the scaling section compares.
var scaleModems = []int{1, 2, 4}

// scaleResult is one scaling run: n SMS shared by modems modems.
type scaleResult struct {
	modems, n  int
	throughput float64 // at the simulators: first AT+CMGS on any to the last answer on any
	perModem   []int   // SMS each simulator received
}

// scaling runs the gateway with modems sms-modem processes (the stack's own
// and modems-1 more, each on its own simulator) and perModem SMS for each.
// Every modem is ready before the SMS are seeded, so none gets a head
// start; the window is measured at the simulators, as in run 2.
func (r *runner) scaling(ctx context.Context, modems, perModem int) (scaleResult, error) {
	name := fmt.Sprintf("scale-%d", modems)
	res := scaleResult{modems: modems, n: modems * perModem}
	o, err := r.options(name, scaleLatency)
	if err != nil {
		return res, err
	}
	st, err := harness.Start(ctx, o)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	defer st.Close()
	sims := []*modemsim.Sim{st.Sim}
	for i := 2; i <= modems; i++ {
		m, err := st.AddModem(ctx, fmt.Sprintf("m%d", i), modemsim.Config{PartLatency: scaleLatency}, modemDefaults...)
		if err != nil {
			return res, fmt.Errorf("%s: modem %d: %w", name, i, err)
		}
		sims = append(sims, m.Sim)
	}
	ids := make([]string, res.n)
	for i := range ids {
		ids[i] = st.Seed(message(name, i))
	}
	// Each SMS takes scaleLatency on one of the modems, plus a poll interval
	// before the first claim.
	timeout := time.Minute + pollInterval + time.Duration(perModem)*(scaleLatency+time.Second)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := st.WaitFinal(wctx, ids); err != nil {
		return res, fmt.Errorf("%s: %w: %d of %d not final after %s (%w)", name, ErrNotSent, len(st.Pending(ids)), res.n, timeout, err)
	}
	for _, id := range ids {
		if m, _ := st.API.Get(id); m.Status != schema.StatusSent {
			return res, fmt.Errorf("%s: %w: %s ended %s", name, ErrNotSent, id, m.Status)
		}
	}
	var first, last time.Time
	total := 0
	for _, sim := range sims {
		starts, rec := sim.CMGSStarts(), sim.Received()
		res.perModem = append(res.perModem, len(rec))
		total += len(rec)
		if len(starts) == 0 || len(rec) == 0 {
			continue // a modem that sent nothing shows in perModem
		}
		if first.IsZero() || starts[0].Before(first) {
			first = starts[0]
		}
		if l := rec[len(rec)-1].At; l.After(last) {
			last = l
		}
	}
	if total != res.n {
		return res, fmt.Errorf("%s: %w: the simulators received %d messages, want %d", name, ErrNotSent, total, res.n)
	}
	if res.throughput, err = Throughput(res.n, first, last); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	return res, nil
}
