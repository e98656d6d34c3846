package gsm_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/at"
	"github.com/sensorsreport/smsgw/services/modem/internal/device"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
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

// logBuffer collects the logs of a test and prints them only if it fails:
// goroutines that outlive a test must not call t.Log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) Sync() error { return nil }

func testLogger(t *testing.T) *zap.Logger {
	t.Helper()
	lb := &logBuffer{}
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	t.Cleanup(func() {
		if t.Failed() {
			lb.mu.Lock()
			t.Logf("logs:\n%s", lb.buf.String())
			lb.mu.Unlock()
		}
	})
	return zap.New(zapcore.NewCore(enc, lb, zap.DebugLevel))
}

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

func TestInitWithoutPIN(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	st := m.Status()
	if st.Manufacturer != "Quectel" || st.Model != "EC25" || st.IMEI != "490154203237518" ||
		st.IMSI != "001010123456789" || st.ICCID != "89001012345678901234" {
		t.Errorf("identity %+v", st.Identity)
	}
	if st.SIM != "READY" || !gsm.Registered(st.Registration) || st.SMSC != "+40722270333" {
		t.Errorf("status %+v", st)
	}
	if err := m.Ready(); err != nil {
		t.Errorf("Ready = %v", err)
	}
	cmds := sim.Commands()
	if n := count(cmds, "AT+CPIN="); n != 0 {
		t.Errorf("PIN entered %d times without being asked", n)
	}
	for _, want := range []string{"ATE0", "AT+CMEE=1", "AT+CMGF=0", "AT+CNMI="} {
		if count(cmds, want) == 0 {
			t.Errorf("init never sent %s; commands %q", want, cmds)
		}
	}
	// The keep-alive refreshes signal and operator once registered.
	if err := sim.WaitCommand(ctxT(t), "AT+COPS?", 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for st = m.Status(); st.Signal != 23 || st.Operator != "SIM Sim"; st = m.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("signal/operator never polled: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInitWithPINEntersItOnce(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{PIN: "4321"}, fast("4321"))
	if st := m.Status(); st.SIM != "READY" {
		t.Errorf("SIM %q, want READY", st.SIM)
	}
	// The SIM answers our PIN with "+CPIN: READY" and "SMS Ready". They are
	// no reboot: once two keep-alives have run, a second init would show.
	if err := sim.WaitCommand(ctxT(t), "AT+CSQ", count(sim.Commands(), "AT+CSQ")+2); err != nil {
		t.Fatal(err)
	}
	if n := exact(sim.Commands(), "ATE0"); n != 1 {
		t.Errorf("initialised %d times, want once", n)
	}
	// Ready means a send works now, PIN entry included.
	parts := encode(t, "+40722000111", "after the PIN")
	checkReceived(t, sim, 1, "+40722000111", "after the PIN", submitAll(t, m, parts))
	if n := count(sim.Commands(), `AT+CPIN="`); n != 1 {
		t.Errorf("PIN entered %d times, want exactly once; commands %q", n, sim.Commands())
	}
}

func TestWrongPINParksAndNeverRetries(t *testing.T) {
	sim, link := newSim(t, modemsim.Config{PIN: "4321"})
	m := newModem(t, link, fast("0000"))
	stop := run(t, m)
	st := waitState(t, m, gsm.StateSIMError)
	if !strings.Contains(st.Reason, "MODEM_PIN") {
		t.Errorf("reason %q does not say what to fix", st.Reason)
	}
	if err := m.Ready(); !errors.Is(err, gsm.ErrNotReady) {
		t.Errorf("Ready = %v, want ErrNotReady", err)
	}
	if err := m.Healthy(time.Hour); err == nil {
		t.Error("Healthy = nil with a rejected PIN; it needs a human")
	}
	if err := stop(); !errors.Is(err, gsm.ErrWrongPIN) {
		t.Fatalf("Run = %v, want ErrWrongPIN", err)
	}
	// Run has returned: nothing can be sent any more, so the count is final.
	if n := count(sim.Commands(), `AT+CPIN="`); n != 1 {
		t.Fatalf("PIN sent %d times, want once; commands %q", n, sim.Commands())
	}
}

func TestMissingPINParks(t *testing.T) {
	sim, link := newSim(t, modemsim.Config{PIN: "4321"})
	m := newModem(t, link, fast(""))
	stop := run(t, m)
	waitState(t, m, gsm.StateSIMError)
	if err := stop(); !errors.Is(err, gsm.ErrPINRequired) {
		t.Fatalf("Run = %v, want ErrPINRequired", err)
	}
	if n := count(sim.Commands(), `AT+CPIN="`); n != 0 {
		t.Fatalf("a PIN was sent %d times without one configured", n)
	}
}

func TestRegistrationDelay(t *testing.T) {
	sim, link := newSim(t, modemsim.Config{RegistrationDelay: 1500 * time.Millisecond})
	m := newModem(t, link, fast(""))
	run(t, m)
	st := waitState(t, m, gsm.StateRegistering)
	if st.Registration != 2 {
		t.Errorf("registration %d while searching, want 2", st.Registration)
	}
	if _, err := m.Submit(ctxT(t), 1, "00"); !errors.Is(err, gsm.ErrNotReady) {
		t.Errorf("Submit while registering = %v, want ErrNotReady", err)
	}
	waitReady(t, m)
	if st := m.Status(); st.Registration != 1 {
		t.Errorf("registration %d when ready, want 1", st.Registration)
	}
	if n := len(sim.Submits()); n != 0 {
		t.Errorf("%d PDUs reached the modem before it was registered", n)
	}
}

func TestSubmitSingleAndConcatenated(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))

	refs := submitAll(t, m, encode(t, "0722000111", "Hello from the gateway €"))
	checkReceived(t, sim, 1, "+40722000111", "Hello from the gateway €", refs)

	long := strings.Repeat("Sensor 12 alarm: temperature above threshold. ", 6) // > 160 septets
	parts := encode(t, "+40722000111", long)
	if len(parts) < 2 {
		t.Fatalf("test text needs %d part(s); want a concatenated one", len(parts))
	}
	checkReceived(t, sim, 2, "+40722000111", long, submitAll(t, m, parts))

	uni := strings.Repeat("Temperatură ridicată în seră 🌡️. ", 4) // UCS2, surrogate pairs
	parts = encode(t, "+40722000111", uni)
	checkReceived(t, sim, 3, "+40722000111", uni, submitAll(t, m, parts))
	if got := sim.Received()[2].Encoding; got != modemsim.UCS2 {
		t.Errorf("encoding %s, want UCS2", got)
	}
}

func TestSubmitCMSErrorsAreClassified(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	part := encode(t, "+40722000111", "classified")[0]
	for _, tc := range []struct {
		code int
		want gsm.Class
	}{
		{42, gsm.Transient}, // congestion
		{38, gsm.Transient}, // network out of order
		{21, gsm.Permanent}, // short message transfer rejected
		{304, gsm.Permanent},
		{332, gsm.Unknown}, // network timeout: may have left
	} {
		sim.InjectCMSErrors(tc.code, 1)
		_, err := m.Submit(ctxT(t), part.TPDULen, part.Hex)
		var cms *at.CMSError
		if !errors.As(err, &cms) || cms.Code != tc.code {
			t.Fatalf("code %d: Submit = %v, want that +CMS ERROR", tc.code, err)
		}
		if got := m.Classify(err); got != tc.want {
			t.Errorf("code %d classified %s, want %s", tc.code, got, tc.want)
		}
		// An error answer leaves the modem usable.
		if err := m.Ready(); err != nil {
			t.Fatalf("code %d: modem not ready after an error answer: %v", tc.code, err)
		}
	}
	refs := submitAll(t, m, []pdu.Part{part})
	checkReceived(t, sim, 1, "+40722000111", "classified", refs)
}

func TestHangDuringKeepAliveRecovers(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	connected, probes := sim.Stats().Connections, exact(sim.Commands(), "AT")
	sim.Hang()
	// The keep-alive times out, ESC and AT probes get nothing, the port is
	// reopened, and the modem keeps trying until it answers again.
	waitState(t, m, gsm.StateRecovering)
	if err := sim.WaitConnected(ctxT(t), connected+1); err != nil {
		t.Fatalf("port never reopened: %v", err)
	}
	if n := exact(sim.Commands(), "AT"); n < probes+3 {
		t.Errorf("%d bare AT probes before the reopen, want at least 3 more than %d", n, probes)
	}
	if err := m.Ready(); err == nil {
		t.Fatal("ready while the modem is hung")
	}
	before := sim.Stats().Boots
	sim.Unhang()
	waitReady(t, m)
	if sim.Stats().Boots != before {
		t.Error("the modem was rebooted; Unhang alone should have been enough")
	}
	refs := submitAll(t, m, encode(t, "+40722000111", "after the hang"))
	checkReceived(t, sim, 1, "+40722000111", "after the hang", refs)
}

func TestUnplugReplugReconnects(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	connected := sim.Stats().Connections
	if err := sim.Unplug(); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, gsm.StateDisconnected)
	if _, err := m.Submit(ctxT(t), 1, "00"); !errors.Is(err, gsm.ErrNotReady) {
		t.Errorf("Submit while unplugged = %v, want ErrNotReady", err)
	}
	if err := sim.Replug(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, m)
	// The kernel may hand the new pty the old number; the connection count
	// shows the port really was opened again.
	if st := m.Status(); st.Port != sim.SlavePath() || sim.Stats().Connections <= connected {
		t.Errorf("port %q after replug, new pty %q, connections %d (were %d)",
			st.Port, sim.SlavePath(), sim.Stats().Connections, connected)
	}
	refs := submitAll(t, m, encode(t, "+40722000111", "after the replug"))
	checkReceived(t, sim, 1, "+40722000111", "after the replug", refs)
}

func TestRepeatedUnplugsDoNotResetTheModem(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	// Each unplug ends one session, but every replug brings the modem back:
	// these are not consecutive failures, so the reset rung is never reached.
	for i := 0; i < 4; i++ {
		if err := sim.Unplug(); err != nil {
			t.Fatal(err)
		}
		waitState(t, m, gsm.StateDisconnected)
		if err := sim.Replug(); err != nil {
			t.Fatal(err)
		}
		waitReady(t, m)
	}
	if n := count(sim.Commands(), "AT+CFUN=1,1"); n != 0 {
		t.Fatalf("modem reset %d times although it came back after every unplug", n)
	}
}

func TestLostRegistration(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	sim.SetRegistered(false)
	waitState(t, m, gsm.StateRegistering)
	part := encode(t, "+40722000111", "back on the network")[0]
	if _, err := m.Submit(ctxT(t), part.TPDULen, part.Hex); !errors.Is(err, gsm.ErrNotReady) {
		t.Fatalf("Submit without network = %v, want ErrNotReady", err)
	}
	sim.SetRegistered(true)
	waitReady(t, m)
	refs := submitAll(t, m, []pdu.Part{part})
	checkReceived(t, sim, 1, "+40722000111", "back on the network", refs)
}

func TestHangWhileRegisteringRecovers(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	sim.SetRegistered(false)
	waitState(t, m, gsm.StateRegistering)
	// A modem that stops answering while the network is away must still
	// climb the ladder instead of waiting for a registration forever.
	connected := sim.Stats().Connections
	sim.Hang()
	if err := sim.WaitConnected(ctxT(t), connected+1); err != nil {
		t.Fatalf("port never reopened: %v (status %+v)", err, m.Status())
	}
	sim.Unhang()
	sim.SetRegistered(true)
	waitReady(t, m)
}

func TestSubmitWithEndedContextIsTransient(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	part := encode(t, "+40722000111", "never written")[0]
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := m.Submit(ctx, part.TPDULen, part.Hex)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit = %v, want the context's error", err)
	}
	if got := m.Classify(err); got != gsm.Transient {
		t.Fatalf("Classify(%v) = %s: nothing was written, so a retry is safe", err, got)
	}
	if n := count(sim.Commands(), "AT+CMGS"); n != 0 {
		t.Fatalf("AT+CMGS sent %d times", n)
	}
}

func TestRebootReinitialises(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{PIN: "4321"}, fast("4321"))
	pins := count(sim.Commands(), `AT+CPIN="`)
	sim.Reboot()
	// The boot URCs start a full init: echo off again, PIN again (the SIM
	// locked itself), PDU mode again.
	if err := sim.WaitCommand(ctxT(t), "ATE0", 2); err != nil {
		t.Fatal(err)
	}
	waitReady(t, m)
	if n := count(sim.Commands(), `AT+CPIN="`); n != pins+1 {
		t.Errorf("PIN entered %d times after the reboot, want once more than %d", n, pins)
	}
	refs := submitAll(t, m, encode(t, "+40722000111", "after the reboot"))
	checkReceived(t, sim, 1, "+40722000111", "after the reboot", refs)
}

func TestURCNoiseDuringSends(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{Seed: 42}, fast(""))
	sim.SetURCNoise(true)
	sim.SetLineNoise(true)
	long := strings.Repeat("noise-proof ", 20)
	for i := 1; i <= 4; i++ {
		refs := submitAll(t, m, encode(t, "+40722000111", long))
		checkReceived(t, sim, i, "+40722000111", long, refs)
	}
	if sim.Stats().NoiseURCs == 0 {
		t.Fatal("no noise was injected; the test proves nothing")
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("noise knocked the modem out of ready: %v", err)
	}
	if n := sim.Stats().DupParts; n != 0 {
		t.Errorf("%d parts were sent twice", n)
	}
}

func TestResultTimeoutIsUnknownAndNotResent(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	part := encode(t, "+40722000111", "did it leave?")[0]
	sim.HangCMGS(modemsim.HangAfterPDU)
	_, err := m.Submit(ctxT(t), part.TPDULen, part.Hex)
	if err == nil {
		t.Fatal("Submit succeeded without a +CMGS answer")
	}
	if got := gsm.Classify(err); got != gsm.Unknown {
		t.Fatalf("Classify(%v) = %s, want unknown", err, got)
	}
	if !errors.Is(err, at.ErrSubmitUnknown) {
		t.Errorf("error %v does not match at.ErrSubmitUnknown", err)
	}
	// The failed send starts recovery; the modem comes back once it answers.
	waitState(t, m, gsm.StateRecovering)
	sim.Unhang()
	waitReady(t, m)
	if n := len(sim.Submits()); n != 1 {
		t.Fatalf("%d PDUs submitted, want 1: an unknown outcome must never be resent", n)
	}
	if n := count(sim.Commands(), "AT+CMGS="); n != 1 {
		t.Fatalf("AT+CMGS sent %d times, want 1", n)
	}
	if got := sim.Received(); len(got) != 1 || got[0].Text != "did it leave?" {
		t.Fatalf("received %+v; the simulated network did take the part", got)
	}
}

func TestPromptTimeoutIsTransient(t *testing.T) {
	sim, m := startReady(t, modemsim.Config{}, fast(""))
	part := encode(t, "+40722000111", "no prompt")[0]
	sim.HangCMGS(modemsim.HangBeforePrompt)
	// The caller's deadline (the sender's send timeout) ends the wait for
	// the prompt; the engine's own prompt timeout is longer.
	ctx, cancel := context.WithTimeout(ctxT(t), time.Second)
	defer cancel()
	_, err := m.Submit(ctx, part.TPDULen, part.Hex)
	if got := gsm.Classify(err); err == nil || got != gsm.Transient {
		t.Fatalf("Submit = %v classified %s, want a transient error", err, got)
	}
	if errors.Is(err, at.ErrSubmitUnknown) {
		t.Fatalf("Submit = %v: no prompt means nothing was submitted", err)
	}
	sim.Unhang()
	waitReady(t, m)
	if n := len(sim.Submits()); n != 0 {
		t.Fatalf("%d PDUs reached the modem without a prompt", n)
	}
	refs := submitAll(t, m, []pdu.Part{part})
	checkReceived(t, sim, 1, "+40722000111", "no prompt", refs)
}

func TestProbe(t *testing.T) {
	sim, link := newSim(t, modemsim.Config{PIN: "4321"})
	m := newModem(t, link, fast("4321"))
	defer m.Close()
	st, err := m.Probe(ctxT(t))
	if err != nil {
		t.Fatalf("Probe = %v", err)
	}
	if st.State != gsm.StateReady || st.IMEI != "490154203237518" || st.SIM != "READY" || st.Port != sim.SlavePath() {
		t.Fatalf("status %+v", st)
	}
	refs := submitAll(t, m, encode(t, "+40722000111", "probe send"))
	checkReceived(t, sim, 1, "+40722000111", "probe send", refs)
	m.Close()
	if _, err := m.Submit(ctxT(t), 1, "00"); err == nil {
		t.Fatal("Submit after Close succeeded")
	}
}

func TestProbeWrongPIN(t *testing.T) {
	sim, link := newSim(t, modemsim.Config{PIN: "4321"})
	m := newModem(t, link, fast("1111"))
	defer m.Close()
	st, err := m.Probe(ctxT(t))
	if !errors.Is(err, gsm.ErrWrongPIN) {
		t.Fatalf("Probe = %v, want ErrWrongPIN", err)
	}
	if st.State != gsm.StateSIMError {
		t.Fatalf("state %q, want sim_error", st.State)
	}
	if n := count(sim.Commands(), `AT+CPIN="`); n != 1 {
		t.Fatalf("PIN sent %d times, want once", n)
	}
}

func TestProbeNoModem(t *testing.T) {
	m := newModem(t, filepath.Join(t.TempDir(), "nothing-here"), fast(""))
	defer m.Close()
	st, err := m.Probe(ctxT(t))
	if err == nil || st.State != gsm.StateDisconnected {
		t.Fatalf("Probe = %+v, %v; want disconnected with an error", st, err)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want gsm.Class
	}{
		{&at.CMSError{Code: 42}, gsm.Transient},
		{&at.CMSError{Code: 331}, gsm.Transient},
		{&at.CMSError{Code: 500}, gsm.Transient},
		{&at.CMSError{Code: 21}, gsm.Permanent},
		{&at.CMSError{Code: 330}, gsm.Permanent},
		{&at.CMSError{Code: 200}, gsm.Permanent},
		{&at.CMSError{Code: 332}, gsm.Unknown},
		{at.ErrPromptTimeout, gsm.Transient},
		{at.ErrResultTimeout, gsm.Unknown},
		{gsm.ErrSubmitInterrupted, gsm.Unknown},
		{gsm.ErrNotReady, gsm.Transient},
		{&at.CMEError{Code: 100}, gsm.Transient},
		{context.DeadlineExceeded, gsm.Transient},
	} {
		if got := gsm.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
