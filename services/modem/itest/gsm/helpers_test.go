package gsm_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/device"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
	"github.com/sensorsreport/smsgw/services/modem/itest/testlog"
)

// wait bounds every blocking step; it detects hangs and is not a timing
// assertion. Recovery from a hang takes several command timeouts, hence
// the generous value.
const wait = 30 * time.Second

// fast are lifecycle settings that keep each test short.
func fast(pin string) gsm.Config {
	return gsm.Config{
		PIN:              pin,
		CommandTimeout:   time.Second,
		SendTimeout:      2 * time.Second,
		KeepAlive:        200 * time.Millisecond,
		RegistrationPoll: 50 * time.Millisecond,
	}
}

func testLogger(t *testing.T) *zap.Logger { return testlog.New(t, zap.DebugLevel) }

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// newSim plugs a simulator into a real pty behind a by-id style symlink.
func newSim(t *testing.T, cfg modemsim.Config) (*modemsim.Sim, string) {
	t.Helper()
	sim := modemsim.New(cfg)
	t.Cleanup(func() { _ = sim.Close() })
	link := filepath.Join(t.TempDir(), "usb-Quectel_EC25-if02-port0")
	if _, err := sim.ServePTY(link); err != nil {
		t.Fatalf("serve pty: %v", err)
	}
	return sim, link
}

func newModem(t *testing.T, link string, cfg gsm.Config) *gsm.Modem {
	t.Helper()
	log := testLogger(t)
	cfg.Log = log
	return gsm.New(cfg, device.NewOpener(device.Config{Path: link, Log: log}))
}

// run starts the supervisor and returns a function that stops it and
// returns Run's error; cleanup stops it too.
func run(t *testing.T, m *gsm.Modem) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(wait):
				t.Error("Run did not return after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// startReady runs a modem on a fresh simulator and waits until it is ready.
func startReady(t *testing.T, simCfg modemsim.Config, cfg gsm.Config) (*modemsim.Sim, *gsm.Modem) {
	t.Helper()
	sim, link := newSim(t, simCfg)
	m := newModem(t, link, cfg)
	run(t, m)
	waitReady(t, m)
	return sim, m
}

func waitReady(t *testing.T, m *gsm.Modem) {
	t.Helper()
	if err := m.WaitReady(ctxT(t)); err != nil {
		t.Fatalf("modem never became ready: %v (status %+v)", err, m.Status())
	}
}

// waitState polls the status until it is in st: Status has no change
// notification besides readiness.
func waitState(t *testing.T, m *gsm.Modem, st gsm.State) gsm.Status {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		s := m.Status()
		if s.State == st {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %q never reached; last %+v", st, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func count(cmds []string, prefix string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(strings.ToUpper(c), strings.ToUpper(prefix)) {
			n++
		}
	}
	return n
}

func exact(cmds []string, cmd string) int {
	n := 0
	for _, c := range cmds {
		if strings.EqualFold(c, cmd) {
			n++
		}
	}
	return n
}

func encode(t *testing.T, to, text string) []pdu.Part {
	t.Helper()
	n, err := pdu.ParseNumber(to, "RO")
	if err != nil {
		t.Fatal(err)
	}
	parts, err := pdu.Encode(n, text, pdu.NewRefCounter(7), pdu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return parts
}

// submitAll sends every part and returns the message references.
func submitAll(t *testing.T, m *gsm.Modem, parts []pdu.Part) []int {
	t.Helper()
	var refs []int
	for _, p := range parts {
		mr, err := m.Submit(ctxT(t), p.TPDULen, p.Hex)
		if err != nil {
			t.Fatalf("part %d/%d: %v", p.Seq, p.Total, err)
		}
		refs = append(refs, mr)
	}
	return refs
}

// checkReceived requires the simulator's last message to be text to the
// number, with the references the modem reported.
func checkReceived(t *testing.T, sim *modemsim.Sim, n int, to, text string, refs []int) {
	t.Helper()
	if err := sim.WaitReceived(ctxT(t), n); err != nil {
		t.Fatal(err)
	}
	got := sim.Received()
	if len(got) != n {
		t.Fatalf("received %d messages, want %d", len(got), n)
	}
	msg := got[n-1]
	if msg.To != to || msg.Text != text || msg.Parts != len(refs) {
		t.Fatalf("received %+v, want %d part(s) of %q to %s", msg, len(refs), text, to)
	}
	for i := range refs {
		if msg.Refs[i] != refs[i] {
			t.Fatalf("network refs %v, modem reported %v", msg.Refs, refs)
		}
	}
}
