package gsm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
	"github.com/sensorsreport/smsgw/shared/backoff"
	"go.uber.org/zap"
)

// Run keeps the modem up until ctx ends. It returns only on ctx's end, or
// with ErrWrongPIN/ErrPUK after parking in the sim_error state until ctx ends.
func (m *Modem) Run(ctx context.Context) error {
	failures := 0
	for ctx.Err() == nil {
		m.setState(StateDisconnected, "opening "+m.portName())
		port, err := m.opener.OpenWait(ctx)
		if err != nil {
			break
		}
		m.update(func(s *Status) { s.Port = port.Name() })
		eng := at.New(port,
			at.WithTimeout(m.cfg.CommandTimeout),
			at.WithURCHandler(m.onURC),
			at.WithLogger(m.log.Named("at")),
			at.WithObserver(m.m.observe),
		)
		m.mu.Lock()
		m.eng = eng
		m.mu.Unlock()

		err = m.session(ctx, eng, &failures)
		m.setState(StateDisconnected, errString(err))
		m.mu.Lock()
		m.eng = nil
		m.mu.Unlock()
		eng.Close()
		port.Close()

		switch {
		case errors.Is(err, ErrWrongPIN), errors.Is(err, ErrPUK), errors.Is(err, ErrPINRequired):
			// Nothing changes without new configuration: park, never retry a PIN.
			m.setState(StateSIMError, err.Error())
			<-ctx.Done()
			return err
		case ctx.Err() != nil:
		case err != nil:
			failures++
			m.m.reconnects.Inc()
			m.log.Warn("modem session ended; reopening the port", zap.Error(err), zap.Int("consecutive", failures))
			if !backoff.Sleep(ctx, min(time.Duration(failures)*500*time.Millisecond, 10*time.Second)) {
				return nil
			}
		}
	}
	return nil
}

func (m *Modem) portName() string {
	if st := m.Status(); st.Port != "" {
		return st.Port
	}
	return "port"
}

// session initialises the modem on an open port and keeps it healthy. It
// returns when the port has to be reopened. failures counts the sessions
// in a row that ended without the modem becoming ready; session zeroes it
// once it is, so only a modem that keeps failing is reset.
func (m *Modem) session(ctx context.Context, eng *at.Engine, failures *int) error {
	// Drain a boot URC that arrived before this session: init covers it.
	select {
	case <-m.reinit:
	default:
	}
	if *failures >= 3 {
		m.resetModem(ctx, eng)
	}
	if err := m.initialise(ctx, eng); err != nil {
		return err
	}
	*failures = 0
	keep := time.NewTicker(m.cfg.KeepAlive)
	defer keep.Stop()
	// A read of the inbox that left messages behind (broker not there yet)
	// is retried sooner than the next keep-alive.
	var retry <-chan time.Time
	inboxWait := backoff.New(time.Second, max(m.cfg.KeepAlive, time.Second))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-eng.Closed():
			return fmt.Errorf("port closed: %w", at.ErrClosed)
		case why := <-m.reinit:
			m.setState(StateInitialising, "modem restarted ("+why+")")
			if err := m.initialise(ctx, eng); err != nil {
				return err
			}
		case <-m.kick:
			if err := m.recover(ctx, eng); err != nil {
				return err
			}
		case <-m.in.kick:
			retry = m.readInboxOrRetry(ctx, eng, inboxWait)
			if retry == nil {
				inboxWait.Reset()
			}
		case <-retry:
			retry = m.readInboxOrRetry(ctx, eng, inboxWait)
			if retry == nil {
				inboxWait.Reset()
			}
		case <-keep.C:
			m.kickInbox() // catches announcements lost while disconnected
			if err := m.poll(ctx, eng); err != nil {
				if errors.Is(err, at.ErrClosed) {
					return err
				}
				m.log.Warn("keep-alive failed", zap.Error(err))
				if err := m.recover(ctx, eng); err != nil {
					return err
				}
			}
		}
	}
}

// initialise runs the init sequence of modem-protocol.md §1.2 and waits for
// network registration.
func (m *Modem) initialise(ctx context.Context, eng *at.Engine) error {
	m.setState(StateInitialising, "")
	if err := m.sync(ctx, eng); err != nil {
		return err
	}
	cmd := func(c string) ([]string, error) { return eng.Command(ctx, c) }
	if _, err := eng.Command(ctx, "ATZ", at.WithCmdTimeout(6*time.Second)); errors.Is(err, at.ErrClosed) {
		return err
	}
	for _, c := range []string{"ATE0", "ATV1"} {
		if _, err := cmd(c); errors.Is(err, at.ErrClosed) {
			return err
		}
	}
	if _, err := cmd("AT+CMEE=1"); err != nil {
		_, _ = cmd("AT+CMEE=2")
	}
	if lines, err := cmd("AT+CFUN?"); err == nil && field(lines, "+CFUN:", 0) != "1" {
		m.log.Info("radio off; switching it on")
		_, _ = eng.Command(ctx, "AT+CFUN=1", at.WithCmdTimeout(40*time.Second))
	}
	if err := m.unlockSIM(ctx, eng); err != nil {
		return err
	}
	m.identify(ctx, eng)
	if _, err := cmd("AT+CMGF=0"); err != nil {
		return fmt.Errorf("modem refuses PDU mode (AT+CMGF=0): %w", err)
	}
	_, _ = cmd(`AT+CSCS="GSM"`)
	_, _ = cmd("AT+CSMS=0")
	if lines, err := cmd("AT+CSCA?"); err == nil {
		smsc := strings.Trim(field(lines, "+CSCA:", 0), `"`)
		m.update(func(s *Status) { s.SMSC = smsc })
		if smsc == "" {
			m.log.Warn("no SMS centre number on the SIM (AT+CSCA); sends will fail with +CMS ERROR: 330")
		}
	}
	if err := m.waitRegistered(ctx, eng); err != nil {
		return err
	}
	_ = m.poll(ctx, eng)
	// URCs last: new-message and status-report indications (§5.1).
	// Reports direct (ds=1), else stored (ds=2, read with the store), else none.
	for _, c := range []string{"AT+CNMI=2,1,0,1,0", "AT+CNMI=1,1,0,1,0", "AT+CNMI=2,1,0,2,0", "AT+CNMI=1,1,0,2,0",
		"AT+CNMI=2,1,0,0,0", "AT+CNMI=1,1,0,0,0"} {
		if _, err := cmd(c); err == nil || errors.Is(err, at.ErrClosed) {
			break
		}
	}
	if m.cfg.Receiver != nil {
		m.alignStorage(ctx, eng)
	}
	// Boot-like URCs seen while initialising are covered by this init; most
	// come from our own PIN entry ("+CPIN: READY", "SMS Ready") and would
	// otherwise start a second init right after the first.
	select {
	case <-m.reinit:
	default:
	}
	m.setState(StateReady, "")
	m.kickInbox() // read what arrived while we were away
	return nil
}

// sync gets the modem's attention: ESC closes a prompt a previous process
// left open (never Ctrl-Z, which would submit it), then AT until OK.
func (m *Modem) sync(ctx context.Context, eng *at.Engine) error {
	_ = eng.Escape()
	var err error
	for i := 0; i < 5; i++ {
		if _, err = eng.Command(ctx, "AT", at.WithCmdTimeout(2*time.Second)); err == nil || errors.Is(err, at.ErrClosed) || ctx.Err() != nil {
			return err
		}
	}
	return fmt.Errorf("modem does not answer AT: %w", err)
}

func (m *Modem) unlockSIM(ctx context.Context, eng *at.Engine) error {
	pinSent := false
	deadline := time.Now().Add(60 * time.Second)
	for {
		lines, err := eng.Command(ctx, "AT+CPIN?", at.WithCmdTimeout(15*time.Second))
		state := strings.TrimSpace(field(lines, "+CPIN:", -1))
		var cme *at.CMEError
		switch {
		case errors.Is(err, at.ErrClosed), ctx.Err() != nil:
			return err
		case errors.As(err, &cme) && cme.Code == 10:
			m.setState(StateSIMError, ErrNoSIM.Error())
			return ErrNoSIM
		case errors.As(err, &cme) && (cme.Code == 14 || cme.Code == 515) && time.Now().Before(deadline):
			// SIM busy right after boot: ask again shortly.
		case err != nil && state == "":
			return fmt.Errorf("AT+CPIN?: %w", err)
		case state == "READY":
			m.update(func(s *Status) { s.SIM = state })
			return nil
		case state == "SIM PIN" && !pinSent:
			if m.cfg.PIN == "" {
				return ErrPINRequired
			}
			m.log.Info("SIM asks for its PIN; entering it once")
			if _, err := eng.Command(ctx, `AT+CPIN="`+m.cfg.PIN+`"`, at.WithCmdTimeout(10*time.Second)); err != nil {
				if errors.As(err, &cme) && cme.Code == 16 {
					return ErrWrongPIN
				}
				if errors.Is(err, at.ErrClosed) {
					return err
				}
				// Any other answer: do not guess. Entering it again could burn
				// an attempt, so stop exactly as for a wrong PIN.
				return fmt.Errorf("%w: %v", ErrWrongPIN, err)
			}
			pinSent = true
		case state == "SIM PIN" && pinSent:
			return ErrWrongPIN
		case strings.Contains(state, "PUK"):
			return ErrPUK
		case time.Now().After(deadline):
			return fmt.Errorf("SIM not ready: %q", state)
		}
		m.update(func(s *Status) { s.SIM = state })
		if !backoff.Sleep(ctx, time.Second) {
			return ctx.Err()
		}
	}
}

func (m *Modem) identify(ctx context.Context, eng *at.Engine) {
	one := func(c string) string {
		lines, err := eng.Command(ctx, c)
		if err != nil || len(lines) == 0 {
			return ""
		}
		v := strings.TrimSpace(lines[0])
		if i := strings.Index(v, ":"); i >= 0 && strings.HasPrefix(v, "+") {
			v = strings.TrimSpace(v[i+1:])
		}
		return strings.Trim(v, `"`)
	}
	id := Identity{
		Manufacturer: one("AT+CGMI"), Model: one("AT+CGMM"), Revision: one("AT+CGMR"),
		IMEI: one("AT+CGSN"), IMSI: one("AT+CIMI"), ICCID: one("AT+CCID"),
	}
	m.update(func(s *Status) { s.Identity = id })
	m.log.Info("modem identified", zap.String("manufacturer", id.Manufacturer), zap.String("model", id.Model),
		zap.String("revision", id.Revision), zap.String("imei", id.IMEI))
}

func (m *Modem) waitRegistered(ctx context.Context, eng *at.Engine) error {
	for {
		stat, err := m.registration(ctx, eng)
		// A modem that stops answering is not "still searching": hand the
		// timeout to the caller, which starts recovery.
		if errors.Is(err, at.ErrClosed) || errors.Is(err, at.ErrTimeout) {
			return err
		}
		if Registered(stat) {
			return nil
		}
		m.setState(StateRegistering, "network registration stat "+strconv.Itoa(stat))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-eng.Closed():
			return at.ErrClosed
		case <-time.After(m.cfg.RegistrationPoll):
		}
	}
}

// registration asks CREG and CEREG; LTE-only modules register on CEREG alone.
func (m *Modem) registration(ctx context.Context, eng *at.Engine) (int, error) {
	best := -1
	var firstErr error
	for _, c := range []string{"AT+CREG?", "AT+CEREG?"} {
		lines, err := eng.Command(ctx, c)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		prefix := strings.TrimPrefix(strings.TrimSuffix(c, "?"), "AT") + ":"
		if n, err := strconv.Atoi(field(lines, prefix, 1)); err == nil && (best < 0 || Registered(n)) {
			best = n
		}
	}
	m.update(func(s *Status) { s.Registration = best })
	if best < 0 {
		return best, firstErr
	}
	return best, nil
}

// poll refreshes signal, registration and operator; it is the keep-alive.
func (m *Modem) poll(ctx context.Context, eng *at.Engine) error {
	lines, err := eng.Command(ctx, "AT+CSQ")
	if err != nil {
		return fmt.Errorf("AT+CSQ: %w", err)
	}
	if n, err := strconv.Atoi(field(lines, "+CSQ:", 0)); err == nil {
		m.update(func(s *Status) { s.Signal = n })
	}
	stat, err := m.registration(ctx, eng)
	if err != nil {
		return err
	}
	if lines, err := eng.Command(ctx, "AT+COPS?"); err == nil {
		op := strings.Trim(field(lines, "+COPS:", 2), `"`)
		m.update(func(s *Status) { s.Operator = op })
	}
	switch st := m.Status().State; {
	case !Registered(stat) && st == StateReady:
		m.setState(StateRegistering, "lost network registration (stat "+strconv.Itoa(stat)+")")
		return m.waitRegistered(ctx, eng)
	case Registered(stat) && st == StateRegistering:
		m.setState(StateReady, "")
	}
	return nil
}
