package canary_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/canary"
	"github.com/sensorsreport/smsgw/services/modem/internal/device"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
)

const own = "+40722999099"

// takeOnly hands incoming texts to the canary, as the inbox does.
type takeOnly struct{ c *canary.Canary }

func (r takeOnly) Receive(_ context.Context, tpdu []byte) error {
	d, err := pdu.DecodeDeliver(tpdu)
	if err != nil || !r.c.Take(d.From.Value, d.Text) {
		return errors.New("not a canary")
	}
	return nil
}

func setup(t *testing.T) (*modemsim.Sim, *canary.Canary, *prometheus.Registry, string) {
	t.Helper()
	sim := modemsim.New(modemsim.Config{Number: own})
	t.Cleanup(func() { _ = sim.Close() })
	link := filepath.Join(t.TempDir(), "tty")
	if _, err := sim.ServePTY(link); err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	m := gsm.New(gsm.Config{CommandTimeout: time.Second, KeepAlive: 200 * time.Millisecond, RegistrationPoll: 50 * time.Millisecond, Log: log},
		device.NewOpener(device.Config{Path: link, Log: log}))
	num, _ := pdu.ParseNumber(own, "RO")
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	c := canary.New(canary.Config{Timeout: 2 * time.Second, Number: num, Dir: dir, Log: log, Reg: reg}, m)
	m.SetReceiver(takeOnly{c})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return sim, c, reg, dir
}

func TestRoundTripAndFailure(t *testing.T) {
	sim, c, reg, dir := setup(t)
	if r := c.Check(t.Context()); !r.OK || r.RoundTrip <= 0 {
		t.Fatalf("round trip: %+v", r)
	}
	if got, ok, err := canary.Last(dir); err != nil || !ok || !got.OK {
		t.Fatalf("last result %+v %v %v", got, ok, err)
	}
	if n := histogramCount(t, reg, "sms_modem_canary_roundtrip_seconds"); n != 1 {
		t.Errorf("roundtrip histogram has %d observations, want 1", n)
	}
	sim.SetLoopback(false)
	r := c.Check(t.Context())
	if r.OK || r.Error == "" {
		t.Fatalf("no loopback but %+v", r)
	}
	if got := counterValue(t, reg, "sms_modem_canary_failures_total"); got != 1 {
		t.Errorf("failures_total %v, want 1", got)
	}
	if got, _, _ := canary.Last(dir); got.OK {
		t.Error("the failure was not recorded")
	}
	if len(sim.Store()) != 0 {
		t.Error("canary left on the SIM")
	}
}

func TestTakeConsumesOnlyCanaries(t *testing.T) {
	c := canary.New(canary.Config{}, nil)
	if c.Take("+40711111111", "smsgw canaryX") || c.Take("+40711111111", "hello") {
		t.Error("a normal text was taken")
	}
	if !c.Take("+40711111111", canary.Prefix+"deadbeef") {
		t.Error("a late canary must be consumed, never forwarded")
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}
