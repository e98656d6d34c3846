package gsm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
	"github.com/sensorsreport/smsgw/services/modem/internal/pdu"
	"github.com/sensorsreport/smsgw/shared/backoff"
)

// The modem side of receiving (modem-protocol.md §5.4): incoming SMS and
// status reports arrive stored (+CMTI, +CDSI) or routed directly (+CMT,
// +CDS). The store is read whole at the start of every session, after every
// announcement and on every keep-alive, and an entry is deleted only after
// the Receiver said it is safe. What an SMS means is the Receiver's business.

// Receiver takes SMS-DELIVER and SMS-STATUS-REPORT TPDUs off the modem.
type Receiver interface {
	// Receive is called with one TPDU (without the SMSC field). It returns
	// nil once the message is safe (published, or kept durably), and only
	// then is a stored message deleted from the SIM. An error leaves it on
	// the SIM for the next read.
	Receive(ctx context.Context, tpdu []byte) error
}

// SetReceiver makes r the Receiver; call it before Run.
func (m *Modem) SetReceiver(r Receiver) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.Receiver = r
}

// receiveTimeout bounds one Receive call so a broker outage cannot stall
// the keep-alive and recovery of the session loop.
const receiveTimeout = 10 * time.Second

// storeWarnRatio is the fill level above which a warning is logged.
const storeWarnRatio = 0.8

// inbox is the receive state of a Modem.
type inbox struct {
	kick   chan struct{} // something to read: a URC, a new session, a tick
	mu     sync.Mutex
	direct [][]byte // TPDUs routed directly (+CMT, +CDS), not yet taken
	warned bool
}

func (m *Modem) kickInbox() {
	if m.cfg.Receiver == nil {
		return
	}
	select {
	case m.in.kick <- struct{}{}:
	default:
	}
}

// onReceiveURC handles +CMTI/+CDSI (read the store) and +CMT/+CDS (a PDU
// that exists only in this line). It runs on the URC goroutine and never
// issues commands. It reports whether the URC was one of them.
func (m *Modem) onReceiveURC(u at.URC) bool {
	line := strings.TrimSpace(u.Line)
	switch {
	case strings.HasPrefix(line, "+CMTI:"), strings.HasPrefix(line, "+CDSI:"):
		m.kickInbox()
	case strings.HasPrefix(line, "+CMT:"), strings.HasPrefix(line, "+CDS:"):
		if m.cfg.Receiver == nil {
			return true
		}
		_, rest, _ := strings.Cut(line, ":")
		fields := strings.Split(rest, ",")
		n, err := strconv.Atoi(strings.TrimSpace(fields[len(fields)-1]))
		if err != nil {
			m.log.Warn("malformed direct SMS header", zap.String("urc", line))
			return true
		}
		_, tpdu, err := pdu.SplitSMSC(u.PDU, n)
		if err != nil {
			m.m.incomingInvalid.Inc()
			m.log.Warn("malformed direct SMS PDU", zap.Error(err))
			return true
		}
		m.in.mu.Lock()
		m.in.direct = append(m.in.direct, tpdu)
		m.in.mu.Unlock()
		m.kickInbox()
	default:
		return false
	}
	return true
}

// readInbox hands directly routed PDUs to the Receiver, then reads the
// whole store and deletes each entry the Receiver took. It stops at the
// first Receiver error: the rest stays on the SIM for the next round.
func (m *Modem) readInbox(ctx context.Context, eng *at.Engine) error {
	r := m.cfg.Receiver
	if r == nil {
		return nil
	}
	m.in.mu.Lock()
	direct := m.in.direct
	m.in.direct = nil
	m.in.mu.Unlock()
	for i, tpdu := range direct {
		err := m.receive(ctx, r, tpdu)
		if errors.Is(err, ErrLeave) {
			continue // a direct message cannot stay anywhere: not wanted, dropped
		}
		if err != nil {
			// A direct message exists only here: keep it for the next round.
			m.in.mu.Lock()
			m.in.direct = append(direct[i:], m.in.direct...)
			m.in.mu.Unlock()
			return fmt.Errorf("%w (routed directly): %w", errNotTaken, err)
		}
	}
	used, _, err := m.storage(ctx, eng)
	switch {
	case errors.Is(err, at.ErrClosed):
		return err
	case err == nil && used == 0:
		return nil
	case err != nil:
		// A modem whose AT+CPMS? we cannot read still gets its store read.
		m.log.Debug("store fill level unknown; listing anyway", zap.Error(err))
	}
	lines, err := eng.Command(ctx, "AT+CMGL=4", at.WithCmdTimeout(max(m.cfg.CommandTimeout, 30*time.Second)))
	if err != nil {
		return fmt.Errorf("AT+CMGL=4: %w", err)
	}
	for _, e := range parseList(lines) {
		if e.stat == 2 || e.stat == 3 {
			continue // stored outgoing messages are not ours to take
		}
		_, tpdu, err := pdu.SplitSMSC(e.pdu, e.length)
		if err != nil {
			// Unreadable: nothing can ever forward it; free the slot.
			m.m.incomingInvalid.Inc()
			m.log.Warn("deleting an unreadable stored message", zap.Int("index", e.index), zap.Error(err))
		} else if err := m.receive(ctx, r, tpdu); errors.Is(err, ErrLeave) {
			continue
		} else if err != nil {
			_, _, _ = m.storage(ctx, eng)
			return fmt.Errorf("%w (SIM index %d): %w", errNotTaken, e.index, err)
		}
		if _, err := eng.Command(ctx, "AT+CMGD="+strconv.Itoa(e.index)); err != nil {
			return fmt.Errorf("AT+CMGD=%d: %w", e.index, err)
		}
	}
	if _, _, err := m.storage(ctx, eng); errors.Is(err, at.ErrClosed) {
		return err
	}
	return nil
}

// ErrLeave is what a Receiver returns to leave a message on the SIM and go
// on with the next one (the `sms-modem canary` tool takes only its own). A
// message routed directly cannot be left anywhere and is dropped.
var ErrLeave = errors.New("leave this message on the SIM")

// ReadInbox reads the store once on a port opened by Probe.
func (m *Modem) ReadInbox(ctx context.Context) error {
	m.mu.Lock()
	eng := m.eng
	m.mu.Unlock()
	if eng == nil {
		return ErrNotReady
	}
	return m.readInbox(ctx, eng)
}

// errNotTaken: the Receiver refused a message; it stays where it is.
var errNotTaken = errors.New("incoming message not taken")

// readInboxOrRetry reads the inbox and, when something was left behind,
// returns a timer for the next try (nil when all is done). Errors other
// than a closed port are logged; a closed port ends the session anyway.
func (m *Modem) readInboxOrRetry(ctx context.Context, eng *at.Engine, wait *backoff.Backoff) <-chan time.Time {
	err := m.readInbox(ctx, eng)
	if err == nil || errors.Is(err, at.ErrClosed) || ctx.Err() != nil {
		return nil
	}
	d := wait.Next()
	m.log.Warn("incoming messages stay on the SIM for now; retrying", zap.Error(err), zap.Duration("in", d))
	return time.After(d)
}

// receive calls the Receiver with a bounded context.
func (m *Modem) receive(ctx context.Context, r Receiver, tpdu []byte) error {
	rctx, cancel := context.WithTimeout(ctx, receiveTimeout)
	defer cancel()
	return r.Receive(rctx, tpdu)
}

// storage reads AT+CPMS? (the first memory: the one read and deleted),
// updates the gauges and warns when the store is nearly full.
func (m *Modem) storage(ctx context.Context, eng *at.Engine) (used, total int, err error) {
	lines, err := eng.Command(ctx, "AT+CPMS?")
	if err != nil {
		return 0, 0, fmt.Errorf("AT+CPMS?: %w", err)
	}
	used, err1 := strconv.Atoi(field(lines, "+CPMS:", 1))
	total, err2 := strconv.Atoi(field(lines, "+CPMS:", 2))
	if err1 != nil || err2 != nil || total <= 0 {
		return 0, 0, fmt.Errorf("AT+CPMS?: unexpected answer %q", lines)
	}
	m.m.storeUsed.Set(float64(used))
	m.m.storeTotal.Set(float64(total))
	full := float64(used) > storeWarnRatio*float64(total)
	m.in.mu.Lock()
	warn := full && !m.in.warned
	m.in.warned = full
	m.in.mu.Unlock()
	if warn {
		m.log.Warn("SIM message store is nearly full; messages stay until the broker takes them",
			zap.Int("used", used), zap.Int("total", total))
	}
	return used, total, nil
}

// alignStorage makes the memory read and deleted (the first of AT+CPMS)
// the one new messages are stored in (the third), so AT+CMGL sees them.
func (m *Modem) alignStorage(ctx context.Context, eng *at.Engine) {
	lines, err := eng.Command(ctx, "AT+CPMS?")
	if err != nil {
		m.log.Warn("AT+CPMS? failed; reading the default message store", zap.Error(err))
		return
	}
	read, store := strings.Trim(field(lines, "+CPMS:", 0), `"`), strings.Trim(field(lines, "+CPMS:", 6), `"`)
	if store == "" || read == store {
		return
	}
	q := strconv.Quote(store)
	if _, err := eng.Command(ctx, "AT+CPMS="+q+","+q+","+q); err != nil {
		m.log.Warn("cannot select the message store", zap.String("memory", store), zap.Error(err))
	}
}

type listEntry struct {
	index, stat, length int
	pdu                 string
}

// parseList reads "+CMGL: <index>,<stat>,[<alpha>],<length>" lines, each
// followed by its PDU line. Malformed entries are skipped.
func parseList(lines []string) []listEntry {
	var out []listEntry
	for i := 0; i < len(lines); i++ {
		rest, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), "+CMGL:")
		if !ok || i+1 >= len(lines) {
			continue
		}
		f := strings.Split(rest, ",")
		if len(f) < 3 {
			continue
		}
		idx, e1 := strconv.Atoi(strings.TrimSpace(f[0]))
		stat, e2 := strconv.Atoi(strings.TrimSpace(f[1]))
		n, e3 := strconv.Atoi(strings.TrimSpace(f[len(f)-1]))
		if err := errors.Join(e1, e2, e3); err != nil || idx < 0 {
			continue
		}
		out = append(out, listEntry{index: idx, stat: stat, length: n, pdu: strings.TrimSpace(lines[i+1])})
		i++
	}
	return out
}
