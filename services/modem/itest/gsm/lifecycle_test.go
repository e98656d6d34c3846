package gsm_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
)

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
