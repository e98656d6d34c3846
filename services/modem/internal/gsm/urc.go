package gsm

import (
	"strconv"
	"strings"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
	"go.uber.org/zap"
)

// onURC runs on the engine's URC goroutine: it must not issue commands.
func (m *Modem) onURC(u at.URC) {
	if m.onReceiveURC(u) {
		return
	}
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
