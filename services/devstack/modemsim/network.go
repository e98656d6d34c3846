package modemsim

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/logging"
)

// job is a PDU waiting for the network.
type job struct {
	idx     int // into Sim.submits
	tpdu    *TPDU
	start   time.Time
	latency time.Duration
	epoch   uint64
	reset   <-chan struct{}
}

// partKey identifies the parts of one concatenated message.
type partKey struct {
	to         string
	ref, total int
	wide       bool
}

type assembly struct {
	parts map[int]*TPDU
	mrs   map[int]int
}

// ctrlZLocked closes the prompt and checks the PDU. It answers at once
// when the modem would (bad PDU, no network, no SMSC) and otherwise hands
// the part to the network.
func (s *Sim) ctrlZLocked() *job {
	now := time.Now()
	s.m.inPDU = false
	raw := string(s.m.pdu)
	idx := len(s.submits)
	s.submits = append(s.submits, Submit{At: now, Length: s.m.pduLen, PDU: raw})
	s.notifyLocked()

	t, err := checkPDU(raw, s.m.pduLen, s.m.overflow)
	if err != nil {
		s.log.Debug("PDU rejected", zap.Error(err))
		s.answerLocked(idx, now, fail(304), -1)
		return nil
	}
	s.submits[idx].TPDU = t
	switch {
	case s.regStatLocked() != 1:
		s.answerLocked(idx, now, fail(331), -1)
		return nil
	case t.SMSC == "" && s.smsc == "":
		s.answerLocked(idx, now, fail(330), -1)
		return nil
	case s.hangCMGS == HangAfterPDU:
		s.hangCMGS = HangNone
		s.deliverLocked(t) // it left; the client will never learn so
		s.hung = true
		return nil
	}
	return &job{idx: idx, tpdu: t, start: now, latency: s.latency, epoch: s.epoch, reset: s.resetCh}
}

// checkPDU validates the hex and the <length> of AT+CMGS, which counts
// TPDU octets without the SMSC field, then decodes.
func checkPDU(raw string, length int, overflow bool) (*TPDU, error) {
	if overflow {
		return nil, fmt.Errorf("%w: longer than %d hex digits", ErrPDU, maxPDUHex)
	}
	b, err := hex.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPDU, err)
	}
	if len(b) == 0 || len(b)-1-int(b[0]) != length {
		return nil, fmt.Errorf("%w: AT+CMGS=%d does not match the TPDU length", ErrPDU, length)
	}
	return decodeSubmit(b)
}

// network waits for the part's latency outside the lock, then answers,
// unless the modem lost power or rebooted meanwhile.
func (s *Sim) network(j *job) {
	if j.latency > 0 {
		t := time.NewTimer(j.latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-j.reset:
			return
		case <-s.done:
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != j.epoch {
		return
	}
	if len(s.cmsErrs) > 0 {
		code := s.cmsErrs[0]
		s.cmsErrs = s.cmsErrs[1:]
		s.answerLocked(j.idx, j.start, fail(code), -1)
		return
	}
	s.answerLocked(j.idx, j.start, okF, s.deliverLocked(j.tpdu))
}

// answerLocked writes the result of a submit and accounts for it.
// A hung modem writes nothing, so the Result stays empty.
func (s *Sim) answerLocked(idx int, start time.Time, f final, mr int) {
	res := ""
	if f.kind == fOK {
		res = fmt.Sprintf("+CMGS: %d", mr)
		s.infoLocked(res)
		s.finalLocked(okF, true)
	} else {
		res = s.finalLocked(f, true)
		s.stats.Rejected++
	}
	if !s.hung {
		s.submits[idx].Result = res
	}
	s.busy += time.Since(start)
	s.notifyLocked()
}

// deliverLocked hands a part to the network: it takes the next TP-MR and
// completes the message when every part is in.
func (s *Sim) deliverLocked(t *TPDU) int {
	mr := s.nextMR
	s.nextMR = (s.nextMR + 1) % 256
	s.stats.Accepted++
	s.log.Debug("part accepted", logging.Phone(t.To), zap.Int("mr", mr))
	s.afterAcceptLocked(t, mr)
	if t.Concat == nil {
		s.completeLocked([]*TPDU{t}, []int{mr})
		return mr
	}
	c := t.Concat
	key := partKey{to: t.To, ref: c.Ref, total: c.Total, wide: c.Wide}
	a := s.partial[key]
	if a == nil {
		a = &assembly{parts: map[int]*TPDU{}, mrs: map[int]int{}}
		s.partial[key] = a
	}
	if _, dup := a.parts[c.Seq]; dup {
		s.stats.DupParts++
		return mr
	}
	a.parts[c.Seq], a.mrs[c.Seq] = t, mr
	if len(a.parts) < c.Total {
		return mr
	}
	delete(s.partial, key)
	parts, mrs := make([]*TPDU, c.Total), make([]int, c.Total)
	for seq, p := range a.parts {
		parts[seq-1], mrs[seq-1] = p, a.mrs[seq]
	}
	s.completeLocked(parts, mrs)
	return mr
}

func (s *Sim) completeLocked(parts []*TPDU, mrs []int) {
	var text strings.Builder
	srr := false
	for _, p := range parts {
		text.WriteString(p.Text)
		srr = srr || p.StatusReport
	}
	msg := Message{
		To:             parts[0].To,
		Text:           text.String(),
		Parts:          len(parts),
		Refs:           slices.Clone(mrs),
		Encoding:       parts[0].Encoding,
		StatusReport:   srr,
		ValidityPeriod: parts[0].ValidityPeriod,
		At:             time.Now(),
	}
	s.received = append(s.received, msg)
	s.afterCompleteLocked(msg)
	s.log.Info("message received", logging.Phone(parts[0].To), zap.Int("parts", len(parts)))
	s.notifyLocked()
}
