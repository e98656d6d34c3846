package modemsim

import "time"

// HangPoint says where the next AT+CMGS stops answering.
type HangPoint int

const (
	HangNone HangPoint = iota
	// HangBeforePrompt: AT+CMGS=<n> never gets its "> " prompt.
	HangBeforePrompt
	// HangAfterPDU: the part reaches the network (it is counted in
	// Received) but no result follows Ctrl-Z, the "did it leave?" case.
	HangAfterPDU
)

// Hang stops all output: answers, echo and URCs. Input is still read and
// command lines are still listed by Commands, but none is executed. A
// hang, however it started (see HangCMGS), lasts until Unhang, Reboot or
// Replug: reopening the port does not cure it, which is what drives a
// gateway down its recovery ladder to the reset hook.
func (s *Sim) Hang() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hung = true
}

// Unhang resumes answering, with an empty command line and no open prompt.
func (s *Sim) Unhang() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hung = false
	s.m.line, s.m.inPDU = s.m.line[:0], false
}

// HangOn makes the modem hang, without executing it, at the next command
// line that starts with prefix (case-insensitive), e.g. "AT+CMGD" to stop a
// gateway between reading a message and deleting it.
func (s *Sim) HangOn(prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangOn = prefix
}

// HangCMGS makes the next AT+CMGS hang at p.
func (s *Sim) HangCMGS(p HangPoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangCMGS = p
}

// InjectCMSErrors answers the next n PDUs, after their latency, with
// +CMS ERROR: code instead of +CMGS. Calls queue up in order.
func (s *Sim) InjectCMSErrors(code, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.cmsErrs = append(s.cmsErrs, code)
	}
}

// InjectURC writes an unsolicited line now, e.g. `+CMTI: "ME",3`.
func (s *Sim) InjectURC(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.urcLocked(text)
}

// Reboot restarts the modem in place: boot URCs, factory settings with
// echo on, SIM locked again if it has a PIN, any send in flight dropped.
func (s *Sim) Reboot() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.plugged {
		s.rebootLocked()
	}
}

func (s *Sim) rebootLocked() {
	s.resetLocked()
	s.bootLocked()
}

// resetLocked invalidates everything tied to the current power cycle.
func (s *Sim) resetLocked() {
	s.epoch++
	close(s.resetCh)
	s.resetCh = make(chan struct{})
	if s.regT != nil {
		s.regT.Stop()
		s.regT = nil
	}
}

// SetURCNoise turns on seeded random URCs (^RSSI, ^HCSQ, +CREG, +CSQ,
// RING) before response lines and always right after a "> " prompt.
func (s *Sim) SetURCNoise(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noise = on
}

// SetLineNoise turns on stray NUL bytes and lone CRs before response lines.
func (s *Sim) SetLineNoise(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lineNoise = on
}

// SetRegistered loses (false: searching, CSQ 99,99, sends fail with
// +CMS ERROR: 331) or regains the network registration.
func (s *Sim) SetRegistered(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.regLost = !on
	s.regUpdateLocked()
}

// SetPartLatency changes the network time of the sends that follow.
func (s *Sim) SetPartLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetNextMR sets the TP-MR the next accepted part gets (mod 256), to test
// the wrap from 255 to 0.
func (s *Sim) SetNextMR(mr int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextMR = mr & 0xFF
}
