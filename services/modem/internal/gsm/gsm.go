// Package gsm runs the modem's lifecycle on top of the AT engine: it opens
// the port, initialises the modem (PIN only when the SIM asks and never
// retried after a rejection, PDU mode, identity, network registration),
// keeps a health state that says "ready" only when an SMS can be sent now,
// watches for reboots and unplugs, and climbs the recovery ladder of
// modem-protocol.md §6.1 when the modem stops answering.
package gsm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
	"github.com/sensorsreport/smsgw/services/modem/internal/device"
	"github.com/sensorsreport/smsgw/shared/backoff"
)

// Errors that describe the modem rather than one SMS.
var (
	ErrNotReady          = errors.New("modem not ready")
	ErrSubmitInterrupted = errors.New("modem lost after the PDU was written")
	ErrWrongPIN          = errors.New("SIM rejected the configured PIN; not retrying (fix MODEM_PIN, then restart)")
	ErrPUK               = errors.New("SIM is blocked and needs its PUK; unlock it in a phone")
	ErrPINRequired       = errors.New("SIM asks for a PIN but MODEM_PIN is empty")
	ErrNoSIM             = errors.New("no SIM card")
	errReopen            = errors.New("port must be reopened")
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

// Config tunes the lifecycle.
type Config struct {
	PIN              string
	CommandTimeout   time.Duration // per AT command (MODEM_TIMEOUT)
	SendTimeout      time.Duration // one AT+CMGS (MODEM_SEND_TIMEOUT)
	KeepAlive        time.Duration // how often signal and registration are polled
	RegistrationPoll time.Duration
	Log              *zap.Logger
	Reg              prometheus.Registerer
}

// Modem owns the port and the AT engine.
type Modem struct {
	cfg    Config
	opener *device.Opener
	log    *zap.Logger
	m      *metrics

	mu      sync.Mutex
	status  Status
	eng     *at.Engine
	closer  func()        // set by Probe
	readyCh chan struct{} // closed while ready
	changed chan struct{} // closed and replaced on every state change

	kick   chan struct{} // a send saw the modem misbehave: recover
	reinit chan string   // a boot URC: settings are gone
}

// New builds a modem; Run brings it up.
func New(cfg Config, opener *device.Opener) *Modem {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 10 * time.Second
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 120 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.RegistrationPoll <= 0 {
		cfg.RegistrationPoll = time.Second
	}
	m := &Modem{
		cfg: cfg, opener: opener, log: cfg.Log,
		m:       newMetrics(cfg.Reg),
		readyCh: make(chan struct{}),
		changed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		reinit:  make(chan string, 1),
	}
	m.status = Status{State: StateDisconnected, Registration: -1, Signal: 99, Since: time.Now()}
	return m
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
		case <-keep.C:
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
	for _, c := range []string{"AT+CNMI=2,1,0,1,0", "AT+CNMI=1,1,0,1,0", "AT+CNMI=2,1,0,0,0", "AT+CNMI=1,1,0,0,0"} {
		if _, err := cmd(c); err == nil || errors.Is(err, at.ErrClosed) {
			break
		}
	}
	// Boot-like URCs seen while initialising are covered by this init; most
	// come from our own PIN entry ("+CPIN: READY", "SMS Ready") and would
	// otherwise start a second init right after the first.
	select {
	case <-m.reinit:
	default:
	}
	m.setState(StateReady, "")
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

// recover climbs the ladder: ESC, then AT probes; if the modem answers, the
// settings a reboot would lose are restored. Otherwise the caller reopens
// the port (and after repeated failures resets the modem).
func (m *Modem) recover(ctx context.Context, eng *at.Engine) error {
	m.setState(StateRecovering, "modem stopped answering")
	m.m.recoveries.WithLabelValues("escape").Inc()
	_ = eng.Escape()
	for i := 0; i < 3; i++ {
		if _, err := eng.Command(ctx, "AT", at.WithCmdTimeout(2*time.Second)); err == nil {
			m.log.Info("modem answers again after ESC")
			return m.initialise(ctx, eng)
		} else if errors.Is(err, at.ErrClosed) {
			return err
		}
	}
	m.m.recoveries.WithLabelValues("reopen").Inc()
	return errReopen
}

// resetModem is the last software step of the ladder: AT+CFUN=1,1 restarts
// the modem (the USB device may disappear and come back).
func (m *Modem) resetModem(ctx context.Context, eng *at.Engine) {
	m.m.recoveries.WithLabelValues("reset").Inc()
	m.log.Warn("modem keeps failing; resetting it with AT+CFUN=1,1")
	_ = eng.Escape()
	_, _ = eng.Command(ctx, "AT+CFUN=1,1", at.WithCmdTimeout(15*time.Second))
}

// onURC runs on the engine's URC goroutine: it must not issue commands.
func (m *Modem) onURC(u at.URC) {
	line := strings.TrimSpace(u.Line)
	switch {
	case line == "RDY", line == "+CFUN: 1", line == "SMS Ready", line == "Call Ready",
		line == "SMS DONE", line == "+QIND: SMS DONE", strings.HasPrefix(line, "^SYSSTART"),
		line == "+CPIN: NOT READY", line == "+CPIN: NOT INSERTED":
		select {
		case m.reinit <- line:
		default:
		}
	case strings.HasPrefix(line, "+CREG:"), strings.HasPrefix(line, "+CEREG:"):
		// Unsolicited form: stat first.
		_, rest, _ := strings.Cut(line, ":")
		if n, err := strconv.Atoi(strings.TrimSpace(strings.Split(rest, ",")[0])); err == nil && !Registered(n) && m.Status().State == StateReady {
			m.setState(StateRegistering, "network registration lost (URC)")
			m.kickRecovery()
		}
	case strings.Contains(line, "UNDER-VOLTAGE"), strings.Contains(line, "POWER DOWN"):
		m.log.Error("modem power problem; check the power supply", zap.String("urc", line))
	default:
		m.log.Debug("URC", zap.String("line", line))
	}
}

func (m *Modem) kickRecovery() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Submit sends one TPDU. It refuses when the modem is not ready, so nothing
// is written to a modem that is initialising or recovering.
func (m *Modem) Submit(ctx context.Context, tpduLen int, hexPDU string) (int, error) {
	m.mu.Lock()
	eng, st := m.eng, m.status.State
	m.mu.Unlock()
	if eng == nil || st != StateReady {
		return 0, fmt.Errorf("%w: %s", ErrNotReady, st)
	}
	start := time.Now()
	mr, err := eng.SendPDU(ctx, tpduLen, hexPDU, m.cfg.SendTimeout)
	m.m.cmgs.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		return mr, nil
	case errors.Is(err, at.ErrResultTimeout), errors.Is(err, at.ErrPromptTimeout):
		m.kickRecovery()
	case errors.Is(err, at.ErrSubmitUnknown):
		m.kickRecovery()
		return 0, fmt.Errorf("%w: %w", ErrSubmitInterrupted, err)
	case errors.Is(err, at.ErrClosed):
		return 0, fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	var cms *at.CMSError
	if errors.As(err, &cms) {
		m.m.cmsErrors.WithLabelValues(strconv.Itoa(cms.Code)).Inc()
	}
	return 0, err
}

// Classify implements the sender's view of Submit errors.
func (m *Modem) Classify(err error) Class { return Classify(err) }

// field returns the idx-th comma-separated value after prefix in the first
// line that has it (idx -1: the whole value).
func field(lines []string, prefix string, idx int) string {
	for _, l := range lines {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), prefix)
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if idx < 0 {
			return rest
		}
		parts := strings.Split(rest, ",")
		if idx < len(parts) {
			return strings.TrimSpace(parts[idx])
		}
		return ""
	}
	return ""
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

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
