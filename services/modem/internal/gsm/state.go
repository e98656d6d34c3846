package gsm

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// State is the modem's health state.
type State string

// States, in roughly the order a healthy start passes through them.
const (
	StateDisconnected State = "disconnected"
	StateInitialising State = "initialising"
	StateRegistering  State = "registering"
	StateReady        State = "ready"
	StateRecovering   State = "recovering"
	StateSIMError     State = "sim_error"
)

// Identity is what the modem says it is.
type Identity struct {
	Manufacturer, Model, Revision, IMEI, IMSI, ICCID string
}

// Status is a snapshot of the modem's state.
type Status struct {
	State        State
	Reason       string
	Port         string
	SIM          string // the +CPIN answer, e.g. READY, SIM PIN
	Registration int    // +CREG/+CEREG stat; -1 unknown
	Operator     string
	Signal       int // +CSQ rssi: 0..31, 99 unknown
	SMSC         string
	Identity
	Since time.Time
}

// Registered reports whether stat allows sending SMS.
func Registered(stat int) bool {
	switch stat {
	case 1, 5, 6, 7, 9, 10:
		return true
	}
	return false
}

// Status returns a snapshot.
func (m *Modem) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// Ready returns nil when an SMS can be sent now, else why not.
func (m *Modem) Ready() error {
	st := m.Status()
	if st.State == StateReady {
		return nil
	}
	if st.Reason != "" {
		return fmt.Errorf("%w: %s (%s)", ErrNotReady, st.State, st.Reason)
	}
	return fmt.Errorf("%w: %s", ErrNotReady, st.State)
}

// Healthy is the liveness view: false only when the modem needs a human
// (SIM problems) or has been unreachable for longer than grace.
func (m *Modem) Healthy(grace time.Duration) error {
	st := m.Status()
	switch {
	case st.State == StateSIMError:
		return fmt.Errorf("SIM: %s", st.Reason)
	case st.State != StateReady && time.Since(st.Since) > grace:
		return fmt.Errorf("modem %s for %s: %s", st.State, time.Since(st.Since).Round(time.Second), st.Reason)
	}
	return nil
}

// Changed returns a channel that is closed at the next state change.
func (m *Modem) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// WaitReady blocks until the modem is ready or ctx ends.
func (m *Modem) WaitReady(ctx context.Context) error {
	for {
		m.mu.Lock()
		ready, ch := m.status.State == StateReady, m.readyCh
		m.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *Modem) setState(s State, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.status.State == s && m.status.Reason == reason {
		return
	}
	was := m.status.State
	m.status.State, m.status.Reason, m.status.Since = s, reason, time.Now()
	close(m.changed)
	m.changed = make(chan struct{})
	if s == StateReady && was != StateReady {
		close(m.readyCh)
	} else if s != StateReady && was == StateReady {
		m.readyCh = make(chan struct{})
	}
	lvl := m.log.Info
	if s == StateSIMError || s == StateRecovering {
		lvl = m.log.Warn
	}
	lvl("modem state", zap.String("state", string(s)), zap.String("was", string(was)), zap.String("reason", reason))
}

func (m *Modem) update(f func(*Status)) {
	m.mu.Lock()
	f(&m.status)
	m.m.signal.Set(float64(m.status.Signal))
	m.m.registration.Set(float64(m.status.Registration))
	m.mu.Unlock()
}
