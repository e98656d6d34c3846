package gsm

import (
	"context"
	"errors"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
)

// Probe opens the port once and initialises the modem, for the diag and
// send subcommands: no supervisor, no recovery. ctx bounds the whole probe,
// registration included. Close releases the port.
func (m *Modem) Probe(ctx context.Context) (Status, error) {
	port, err := m.opener.Open(ctx)
	if err != nil {
		m.setState(StateDisconnected, err.Error())
		return m.Status(), err
	}
	m.update(func(s *Status) { s.Port = port.Name() })
	eng := at.New(port, at.WithTimeout(m.cfg.CommandTimeout), at.WithURCHandler(m.onURC),
		at.WithLogger(m.log.Named("at")), at.WithObserver(m.m.observe))
	m.mu.Lock()
	m.eng = eng
	m.closer = func() { eng.Close(); port.Close() }
	m.mu.Unlock()
	err = m.initialise(ctx, eng)
	if err != nil {
		switch {
		case errors.Is(err, ErrWrongPIN), errors.Is(err, ErrPUK), errors.Is(err, ErrPINRequired), errors.Is(err, ErrNoSIM):
			m.setState(StateSIMError, err.Error())
		case m.Status().State == StateReady:
		default:
			m.setState(m.Status().State, err.Error())
		}
	}
	return m.Status(), err
}

// Close releases a port opened by Probe.
func (m *Modem) Close() {
	m.mu.Lock()
	c := m.closer
	m.closer, m.eng = nil, nil
	m.mu.Unlock()
	if c != nil {
		c()
	}
}
