package modemsim

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

type simState int

const (
	simReady simState = iota
	simPIN
	simPUK
)

// modem is the state a power cycle resets.
type modem struct {
	settings
	cfun    int
	sim     simState
	regAt   time.Time // registered from then on (if not lost)
	lastReg int       // last registration stat, to emit +CREG on change

	// Line parser.
	line     []byte
	inPDU    bool // a "> " prompt is open
	pdu      []byte
	pduLen   int
	overflow bool
}

// settings are what ATZ restores: the factory profile.
type settings struct {
	echo, verbose bool
	cmee          int
	cmgf          int
	cscs          string
	csms          int
	cmms          int
	cnmi          [5]int
	regN          map[string]int // +CREG, +CGREG, +CEREG URC modes
	cpms          [3]string
}

func factory() settings {
	return settings{
		echo: true, verbose: true, cscs: "IRA",
		regN: map[string]int{},
		cpms: [3]string{"ME", "ME", "ME"},
	}
}

const (
	maxLine   = 560      // longest command line kept: the largest vendor limit
	maxPDUHex = 2 * 176  // SMSC (12) + longest TPDU (164), in hex digits
	maxOut    = 64 << 10 // output kept while no client drains it
	lac, ci   = "00C3", "01A2B3C4"
)

// finalKind is the final result code class of a command.
type finalKind int

const (
	fOK    finalKind = iota
	fError           // plain ERROR: unknown command or bad syntax
	fFail            // +CME/+CMS ERROR with a code, per CMEE
	fNone            // nothing now: a prompt is open, or the modem hangs
)

type final struct {
	kind finalKind
	code int
}

var (
	okF   = final{kind: fOK}
	errF  = final{kind: fError}
	noneF = final{kind: fNone}
)

func fail(code int) final { return final{kind: fFail, code: code} }

// command is one command of a command line, e.g. "+CMGS=19" or "E0".
type command struct {
	name string   // "+CMGS", "E", "&C"
	op   byte     // 0 action, '?' read, 't' test (=?), '=' set
	args []string // set arguments, quotes removed
	num  int      // basic commands: the numeric argument
}

// bootLocked powers the modem on: factory settings, echo on, boot URCs.
func (s *Sim) bootLocked() {
	s.m = modem{settings: factory(), cfun: 1}
	s.hung = false
	s.stats.Boots++
	s.urcLocked("RDY")
	s.urcLocked("+CFUN: 1")
	switch {
	case s.pinTries == 0:
		s.m.sim = simPUK
		s.urcLocked("+CPIN: SIM PUK")
	case s.cfg.PIN != "":
		s.m.sim = simPIN
		s.urcLocked("+CPIN: SIM PIN")
	default:
		s.simReadyLocked()
	}
	s.notifyLocked()
}

// simReadyLocked unlocks the SIM and starts the network search.
func (s *Sim) simReadyLocked() {
	s.m.sim = simReady
	s.urcLocked("+CPIN: READY")
	s.urcLocked("SMS Ready")
	s.searchLocked()
}

// searchLocked starts a registration attempt of RegistrationDelay.
func (s *Sim) searchLocked() {
	d := s.cfg.RegistrationDelay
	s.m.regAt = time.Now().Add(d)
	s.regUpdateLocked()
	if s.regT != nil {
		s.regT.Stop()
	}
	if d > 0 {
		epoch := s.epoch
		s.regT = time.AfterFunc(d, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.epoch == epoch && !s.closed {
				s.regUpdateLocked()
			}
		})
	}
}

func (s *Sim) regStatLocked() int {
	switch {
	case s.m.sim != simReady || s.m.cfun != 1:
		return 0
	case s.regLost || time.Now().Before(s.m.regAt):
		return 2
	}
	return 1
}

// regUpdateLocked emits +CREG/+CGREG/+CEREG URCs, as enabled, when the
// registration state changed.
func (s *Sim) regUpdateLocked() {
	stat := s.regStatLocked()
	if stat == s.m.lastReg {
		return
	}
	s.m.lastReg = stat
	for _, name := range []string{"+CREG", "+CGREG", "+CEREG"} {
		switch s.m.regN[name] {
		case 1:
			s.urcLocked(fmt.Sprintf("%s: %d", name, stat))
		case 2:
			s.urcLocked(fmt.Sprintf("%s: %d%s", name, stat, s.cellLocked(stat)))
		}
	}
}

func (s *Sim) cellLocked(stat int) string {
	if stat != 1 {
		return ""
	}
	return fmt.Sprintf(",%q,%q,7", lac, ci)
}

// consumeLocked feeds input bytes to the line parser. It stops after a
// Ctrl-Z that needs the network and returns the bytes used and the job.
func (s *Sim) consumeLocked(data []byte) (int, *job) {
	for i, b := range data {
		if s.m.echo {
			s.emitLocked(string(b))
		}
		if s.m.inPDU && !s.hung {
			switch b {
			case 0x1A:
				if j := s.ctrlZLocked(); j != nil {
					return i + 1, j
				}
			case 0x1B:
				s.m.inPDU = false
				s.stats.Aborted++
				s.finalLocked(okF, true)
			default:
				if len(s.m.pdu) < maxPDUHex {
					s.m.pdu = append(s.m.pdu, b)
				} else {
					s.m.overflow = true
				}
			}
			continue
		}
		switch b {
		case '\r':
			line := string(s.m.line)
			s.m.line = s.m.line[:0]
			s.lineLocked(line)
		case 0x1A, 0x1B: // a stray Ctrl-Z or ESC cancels a half-typed line
			s.m.line = s.m.line[:0]
		case '\n', 0:
		default:
			if len(s.m.line) < maxLine {
				s.m.line = append(s.m.line, b)
			}
		}
	}
	return len(data), nil
}

// lineLocked handles one command line. Like V.250 modems it ignores
// anything before "AT" and lines without it.
func (s *Sim) lineLocked(line string) {
	i := indexAT(line)
	if i < 0 {
		return
	}
	line = line[i:]
	s.commands = append(s.commands, line)
	s.stats.Commands++
	s.notifyLocked()
	s.log.Debug("command", zap.String("line", redact(line)), zap.Bool("hung", s.hung))
	if s.hangOn != "" && len(line) >= len(s.hangOn) && strings.EqualFold(line[:len(s.hangOn)], s.hangOn) {
		s.hangOn = ""
		s.hung = true
	}
	if s.hung {
		return
	}
	cmds, ok := parseLine(line[2:])
	if !ok {
		s.finalLocked(errF, false)
		return
	}
	defer func() { s.cur = "" }()
	var post []func()
	for _, c := range cmds {
		h, known := handlers[c.name]
		if !known {
			s.finalLocked(errF, false)
			return
		}
		s.cur = c.name
		f := s.checkReadyLocked(h, c)
		if f.kind == fOK {
			f = h.fn(s, c, &post)
		}
		switch f.kind {
		case fNone:
			return
		case fOK:
			continue
		}
		s.finalLocked(f, h.sms) // the first error ends the line
		return
	}
	s.finalLocked(okF, false)
	s.cur = ""
	for _, p := range post {
		p()
	}
}

// indexAT finds "AT" in any case, byte-wise: the line may not be UTF-8.
func indexAT(s string) int {
	for i := 0; i+1 < len(s); i++ {
		if s[i]|0x20 == 'a' && s[i+1]|0x20 == 't' {
			return i
		}
	}
	return -1
}

// redact keeps the PIN, and the number of a text-mode send, out of logs.
func redact(line string) string {
	up := strings.ToUpper(line)
	for _, p := range []string{"AT+CPIN=", `AT+CMGS="`} {
		if strings.HasPrefix(up, p) {
			return line[:len(p)] + "<redacted>"
		}
	}
	return line
}

// checkReadyLocked refuses SIM-dependent commands while the SIM is locked.
// Test forms (=?) work without a SIM on real modems.
func (s *Sim) checkReadyLocked(h handler, c command) final {
	if !h.needSIM || c.op == 't' || s.m.sim == simReady {
		return okF
	}
	if h.sms {
		return fail(314)
	}
	if s.m.sim == simPUK {
		return fail(12)
	}
	return fail(11)
}

// parseLine splits the text after "AT" into commands. Basic commands may
// follow each other directly (E0V1); extended ones end at ';'.
func parseLine(body string) ([]command, bool) {
	var cmds []command
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c == ';' || c == ' ':
			i++
		case c == '+' || c == '^':
			j, quoted := i+1, false
			for j < len(body) && (quoted || body[j] != ';') {
				if body[j] == '"' {
					quoted = !quoted
				}
				j++
			}
			cmd, ok := parseExtended(body[i:j])
			if !ok {
				return nil, false
			}
			cmds = append(cmds, cmd)
			i = j
		case isAlpha(c) || c == '&':
			j := i + 1
			if c == '&' {
				if j == len(body) || !isAlpha(body[j]) {
					return nil, false
				}
				j++
			}
			name := strings.ToUpper(body[i:j])
			k := j
			for k < len(body) && body[k] >= '0' && body[k] <= '9' {
				k++
			}
			n, _ := strconv.Atoi(body[j:k]) // no digits means 0
			cmds = append(cmds, command{name: name, num: n})
			i = k
		default:
			return nil, false
		}
	}
	return cmds, true
}

func parseExtended(s string) (command, bool) {
	j := 1
	for j < len(s) && (isAlpha(s[j]) || s[j] >= '0' && s[j] <= '9') {
		j++
	}
	c := command{name: strings.ToUpper(s[:j])}
	rest := strings.TrimSpace(s[j:])
	switch {
	case rest == "":
	case rest == "?":
		c.op = '?'
	case rest == "=?":
		c.op = 't'
	case rest[0] == '=':
		c.op = '='
		c.args = splitArgs(rest[1:])
	default:
		return c, false
	}
	return c, j > 1
}

// splitArgs splits on commas outside quotes and removes the quotes.
func splitArgs(s string) []string {
	var args []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			args = append(args, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(args, strings.TrimSpace(cur.String()))
}

func isAlpha(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }

// ints parses every argument as an integer within [0, max].
func ints(args []string, max int) ([]int, bool) {
	out := make([]int, len(args))
	for i, a := range args {
		if a == "" {
			continue // omitted parameters keep the default 0
		}
		n, err := strconv.Atoi(a)
		if err != nil || n < 0 || n > max {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// Output. Verbose framing is "\r\n<text>\r\n"; ATV0 writes "<text>\r\n"
// and numeric final codes ending in a bare CR.

func (s *Sim) emitLocked(b string) {
	if s.hung || !s.plugged {
		return
	}
	s.out = append(s.out, b...)
	if len(s.out) > maxOut {
		s.out = s.out[len(s.out)-maxOut:]
	}
	select {
	case s.outSig <- struct{}{}:
	default:
	}
}

func (s *Sim) frameLocked(text string) string {
	if s.m.verbose {
		return "\r\n" + text + "\r\n"
	}
	return text + "\r\n"
}

// urcLocked writes an unsolicited line.
func (s *Sim) urcLocked(text string) { s.emitLocked(s.frameLocked(text)) }

// infoLocked writes a response line, with noise before it when enabled.
func (s *Sim) infoLocked(text string) {
	s.noiseLocked()
	s.emitLocked(s.frameLocked(text))
}

// finalLocked writes a final result code and returns its text.
func (s *Sim) finalLocked(f final, sms bool) string {
	var text string
	switch f.kind {
	case fOK:
		text = "OK"
	case fError:
		text = "ERROR"
	case fFail:
		text = errorText(s.m.cmee, sms, f.code)
	default:
		return ""
	}
	s.noiseLocked()
	switch {
	case s.m.verbose:
		s.emitLocked("\r\n" + text + "\r\n")
	case text == "OK":
		s.emitLocked("0\r")
	case text == "ERROR":
		s.emitLocked("4\r")
	default:
		s.emitLocked(text + "\r\n")
	}
	return text
}

var cmeText = map[int]string{
	3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
	11: "SIM PIN required", 12: "SIM PUK required", 16: "incorrect password",
	30: "no network service", 100: "unknown",
}

var cmsText = map[int]string{
	38: "network out of order", 41: "temporary failure", 42: "congestion",
	302: "operation not allowed", 303: "operation not supported",
	304: "invalid PDU mode parameter", 314: "SIM busy", 330: "SMSC address unknown",
	331: "no network service", 332: "network timeout", 500: "unknown error",
}

// errorText formats an error per AT+CMEE: 0 plain, 1 numeric, 2 verbose.
func errorText(cmee int, sms bool, code int) string {
	prefix, texts := "+CME ERROR: ", cmeText
	if sms {
		prefix, texts = "+CMS ERROR: ", cmsText
	}
	switch cmee {
	case 0:
		return "ERROR"
	case 2:
		if t, ok := texts[code]; ok {
			return prefix + t
		}
	}
	return prefix + strconv.Itoa(code)
}
