package gsm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
)

// ErrSubmitInterrupted: the modem was lost after the PDU was written, so the
// SMS may have left; the sender must never resend it.
var ErrSubmitInterrupted = errors.New("modem lost after the PDU was written")

// Submit sends one TPDU, with TP-SRR set when Config.DeliveryReports asks
// for a status report on every part. It refuses when the modem is not ready, so nothing
// is written to a modem that is initialising or recovering.
func (m *Modem) Submit(ctx context.Context, tpduLen int, hexPDU string) (int, error) {
	m.mu.Lock()
	eng, st := m.eng, m.status.State
	m.mu.Unlock()
	if eng == nil || st != StateReady {
		return 0, fmt.Errorf("%w: %s", ErrNotReady, st)
	}
	if m.cfg.DeliveryReports {
		var err error
		if hexPDU, err = pdu.RequestStatusReport(hexPDU); err != nil {
			return 0, err
		}
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
