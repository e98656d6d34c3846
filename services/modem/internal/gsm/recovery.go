package gsm

import (
	"context"
	"errors"
	"time"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
)

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

func (m *Modem) kickRecovery() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}
