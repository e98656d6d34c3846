package modemsim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/shared/logging"
)

// The receive side: a SIM message store with a capacity, incoming SMS
// announced by +CMTI (stored) or +CMT (direct), status reports (+CDS, or
// stored and announced by +CDSI) for parts sent with TP-SRR, and loopback
// of SMS sent to the modem's own number.

// Stored is one entry of the SIM store.
type Stored struct {
	Index  int
	Stat   int    // 0 REC UNREAD, 1 REC READ
	Length int    // TPDU octets
	PDU    string // hex, SMSC field first
	Report bool   // an SMS-STATUS-REPORT rather than an SMS-DELIVER
}

// held is a TPDU the network keeps while the store is full.
type held struct {
	tpdu   []byte
	report bool
}

// Deliver has the network deliver an incoming SMS now: each part (in
// in.Order) is stored and announced with +CMTI, or sent as +CMT when
// in.Direct. Parts that find the store full are held by the network and
// stored as soon as space frees, as real networks do. It returns the number
// of parts.
func (s *Sim) Deliver(in Incoming) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deliverIncomingLocked(in)
}

func (s *Sim) deliverIncomingLocked(in Incoming) (int, error) {
	ref := in.Ref
	if ref == 0 {
		s.inRef++
		ref = s.inRef
	}
	parts, err := deliverPDUs(in, ref)
	if err != nil {
		return 0, err
	}
	order := in.Order
	if order == nil {
		for i := range parts {
			order = append(order, i+1)
		}
	}
	for _, seq := range order {
		if seq < 1 || seq > len(parts) {
			return 0, fmt.Errorf("modemsim: part %d of %d", seq, len(parts))
		}
	}
	for _, seq := range order {
		s.mtLocked(parts[seq-1], false, in.Direct)
	}
	s.stats.Delivered++
	s.log.Info("incoming SMS", logging.Phone(in.From), zap.Int("parts", len(parts)))
	return len(parts), nil
}

// DeliverTPDU delivers one raw SMS-DELIVER TPDU (hostile input for tests).
func (s *Sim) DeliverTPDU(tpdu []byte, direct bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mtLocked(tpdu, false, direct)
}

// mtLocked routes one mobile-terminated TPDU as the CNMI settings say:
// reports per <ds>, messages per <mt> (direct only when asked and enabled).
func (s *Sim) mtLocked(tpdu []byte, report, direct bool) {
	cnmi := s.m.cnmi
	switch {
	case report && cnmi[3] == 0:
		return // reports not routed: the network drops them
	case report && cnmi[3] == 1, !report && direct && cnmi[1] == 2:
		hdr := "+CMT: ,"
		if report {
			hdr = "+CDS: "
		}
		s.urcLocked(hdr + strconv.Itoa(len(tpdu)))
		s.emitLocked(s.frameLocked(withSMSC(s.smsc, tpdu)))
		s.notifyLocked()
		return
	}
	if len(s.store) >= s.cfg.StoreCapacity {
		s.held = append(s.held, held{tpdu: tpdu, report: report})
		s.stats.Held++
		s.notifyLocked()
		return
	}
	idx := s.freeIndexLocked()
	s.store = append(s.store, Stored{Index: idx, Length: len(tpdu), PDU: withSMSC(s.smsc, tpdu), Report: report})
	mem := s.m.cpms[2]
	if report {
		s.urcLocked(fmt.Sprintf("+CDSI: %q,%d", mem, idx))
	} else if cnmi[1] != 0 {
		s.urcLocked(fmt.Sprintf("+CMTI: %q,%d", mem, idx))
	}
	s.notifyLocked()
}

func (s *Sim) freeIndexLocked() int {
	used := map[int]bool{}
	for _, m := range s.store {
		used[m.Index] = true
	}
	for i := 1; ; i++ {
		if !used[i] {
			return i
		}
	}
}

// releaseHeldLocked stores held messages once space frees.
func (s *Sim) releaseHeldLocked() {
	for len(s.held) > 0 && len(s.store) < s.cfg.StoreCapacity {
		h := s.held[0]
		s.held = s.held[1:]
		s.mtLocked(h.tpdu, h.report, false)
	}
}

// Store returns the SIM store's entries.
func (s *Sim) Store() []Stored {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Stored(nil), s.store...)
}

// WaitStore returns when cond holds for the store's length and the number
// of messages the network holds.
func (s *Sim) WaitStore(ctx context.Context, what string, cond func(stored, held int) bool) error {
	return s.wait(ctx, what, func() bool { return cond(len(s.store), len(s.held)) })
}

// SetLoopback turns loopback of SMS sent to Config.Number on or off.
func (s *Sim) SetLoopback(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noLoopback = !on
}

// SetFailRecipient makes status reports for parts sent to number report a
// permanent failure (TP-ST 0x41, incompatible destination); "" clears it.
func (s *Sim) SetFailRecipient(number string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.FailRecipient = number
}

// sameNumber compares numbers by their trailing nine digits, so national
// and international forms of the same number match.
func sameNumber(a, b string) bool {
	da, db := digitsOnly(a), digitsOnly(b)
	if da == "" || db == "" {
		return false
	}
	n := min(9, len(da), len(db))
	return da[len(da)-n:] == db[len(db)-n:]
}

func digitsOnly(v string) string {
	var b strings.Builder
	for _, r := range v {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// afterAcceptLocked runs once the network took a part: it schedules the
// status report the part asked for.
func (s *Sim) afterAcceptLocked(t *TPDU, mr int) {
	if !t.StatusReport {
		return
	}
	st := byte(0x00)
	if s.cfg.FailRecipient != "" && sameNumber(t.To, s.cfg.FailRecipient) {
		st = 0x41 // incompatible destination: permanent
	}
	submitted := time.Now()
	tpdu := statusReportPDU(mr, t.To, submitted, submitted.Add(s.cfg.ReportDelay), st)
	epoch := s.epoch
	time.AfterFunc(s.cfg.ReportDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || s.epoch != epoch && s.m.cnmi[3] == 1 {
			return // a direct report to a modem that rebooted is lost
		}
		s.stats.Reports++
		s.mtLocked(tpdu, true, false)
	})
}

// afterCompleteLocked loops a message sent to the modem's own number back.
func (s *Sim) afterCompleteLocked(msg Message) {
	if s.cfg.Number == "" || s.noLoopback || !sameNumber(msg.To, s.cfg.Number) {
		return
	}
	in := Incoming{From: s.cfg.Number, Text: msg.Text, UCS2: msg.Encoding == UCS2}
	s.stats.Loopbacks++
	time.AfterFunc(s.cfg.ReportDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed {
			_, _ = s.deliverIncomingLocked(in)
		}
	})
}

// memStat answers used and total for a memory name; all names share the store.
func (s *Sim) memStat() (int, int) { return len(s.store), s.cfg.StoreCapacity }

func (s *Sim) listLine(prefix string, m Stored, withIndex bool) {
	if withIndex {
		s.infoLocked(fmt.Sprintf("%s: %d,%d,,%d", prefix, m.Index, m.Stat, m.Length))
	} else {
		s.infoLocked(fmt.Sprintf("%s: %d,,%d", prefix, m.Stat, m.Length))
	}
	s.emitLocked(s.frameLocked(m.PDU))
}

// cmgl lists the store: 0 unread, 1 read, 4 all (PDU mode).
func cmgl(s *Sim, c command, _ *[]func()) final {
	switch c.op {
	case 't':
		s.infoLocked("+CMGL: (0-4)")
		return okF
	case '=', 0:
	default:
		return errF
	}
	stat := 0
	if len(c.args) > 0 {
		v, ok := ints(c.args, 4)
		if !ok || len(v) != 1 {
			return fail(302)
		}
		stat = v[0]
	}
	if s.m.cmgf != 0 {
		return fail(302)
	}
	for i := range s.store {
		m := &s.store[i]
		if stat != 4 && m.Stat != stat {
			continue
		}
		s.listLine("+CMGL", *m, true)
		m.Stat = 1
	}
	return okF
}

func cmgr(s *Sim, c command, _ *[]func()) final {
	if c.op == 't' {
		return okF
	}
	v, ok := ints(c.args, 65535)
	if c.op != '=' || !ok || len(v) != 1 {
		return errF
	}
	for i := range s.store {
		if m := &s.store[i]; m.Index == v[0] {
			s.listLine("+CMGR", *m, false)
			m.Stat = 1
			return okF
		}
	}
	return fail(321) // invalid memory index
}

func cmgd(s *Sim, c command, post *[]func()) final {
	if c.op == 't' {
		s.infoLocked("+CMGD: (1-255),(0-4)")
		return okF
	}
	v, ok := ints(c.args, 65535)
	if c.op != '=' || !ok || len(v) < 1 || len(v) > 2 {
		return errF
	}
	flag := 0
	if len(v) == 2 {
		flag = v[1]
	}
	kept := s.store[:0]
	for _, m := range s.store {
		del := m.Index == v[0]
		if flag == 4 || flag >= 1 && m.Stat == 1 {
			del = true
		}
		if del {
			s.stats.Deleted++
		} else {
			kept = append(kept, m)
		}
	}
	s.store = kept
	*post = append(*post, s.releaseHeldLocked, s.notifyLocked)
	return okF
}
