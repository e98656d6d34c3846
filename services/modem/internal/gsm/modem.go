// Package gsm drives one GSM modem on top of the AT engine. Where to look:
//
//   - modem.go: the Modem type, its configuration and New.
//   - lifecycle.go: Run, the supervised session: open the port, initialise
//     (PIN only when the SIM asks and never retried after a rejection, PDU
//     mode, identity, network registration) and the keep-alive.
//   - state.go: the health state ("ready" only when an SMS can be sent now)
//     and the snapshots the health server and heartbeat read.
//   - recovery.go: the recovery ladder of modem-protocol.md §6.1 when the
//     modem stops answering.
//   - urc.go: unsolicited result codes (reboots, registration, and the
//     receive path's new-message indications).
//   - send.go, send_classify.go: Submit (one AT+CMGS) and what a failed
//     submit means for the SMS.
//   - probe.go: the one-shot lifecycle of `sms-modem diag` and `send`.
//   - metrics.go: the modem's Prometheus metrics.
package gsm

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
	"github.com/sensorsreport/smsgw/services/modem/internal/device"
)

// Errors that describe the modem rather than one SMS.
var (
	ErrNotReady    = errors.New("modem not ready")
	ErrWrongPIN    = errors.New("SIM rejected the configured PIN; not retrying (fix MODEM_PIN, then restart)")
	ErrPUK         = errors.New("SIM is blocked and needs its PUK; unlock it in a phone")
	ErrPINRequired = errors.New("SIM asks for a PIN but MODEM_PIN is empty")
	ErrNoSIM       = errors.New("no SIM card")
	errReopen      = errors.New("port must be reopened")
)

// Config tunes the lifecycle.
type Config struct {
	PIN              string
	CommandTimeout   time.Duration // per AT command (MODEM_TIMEOUT)
	SendTimeout      time.Duration // one AT+CMGS (MODEM_SEND_TIMEOUT)
	KeepAlive        time.Duration // how often signal and registration are polled
	RegistrationPoll time.Duration
	// Receiver takes incoming SMS and status reports; nil leaves the SIM
	// store alone (MODEM_RECEIVE=false, and the diag tools).
	Receiver Receiver
	// DeliveryReports sets TP-SRR on every part submitted
	// (MODEM_DELIVERY_REPORTS).
	DeliveryReports bool
	Log             *zap.Logger
	Reg             prometheus.Registerer
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

	in inbox
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
		in:      inbox{kick: make(chan struct{}, 1)},
	}
	m.status = Status{State: StateDisconnected, Registration: -1, Signal: 99, Since: time.Now()}
	return m
}

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
