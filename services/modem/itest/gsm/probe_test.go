package gsm_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/sensorsreport/smsgw/services/devstack/modemsim"
	"github.com/sensorsreport/smsgw/services/modem/internal/gsm"
)

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
