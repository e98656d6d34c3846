package modemsim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// handler executes one command. It writes its information lines itself,
// may queue work to run after the final result (URCs that follow OK), and
// returns the final result.
type handler struct {
	fn      func(s *Sim, c command, post *[]func()) final
	sms     bool // 27.005 command: errors are +CMS ERROR, else +CME ERROR
	needSIM bool // refused until the SIM is unlocked
}

var handlers = map[string]handler{
	"E":  {fn: basicFlag(func(m *modem) *bool { return &m.echo })},
	"V":  {fn: basicFlag(func(m *modem) *bool { return &m.verbose })},
	"Z":  {fn: atz},
	"&F": {fn: atz},
	"I":  {fn: ati},
	"Q":  {fn: basicNoop(0)},
	"X":  {fn: basicNoop(4)},
	"&C": {fn: basicNoop(2)},
	"&D": {fn: basicNoop(2)},
	"H":  {fn: basicNoop(0)},

	"+CGMI":  {fn: ident(func(c Config) string { return c.Manufacturer })},
	"+GMI":   {fn: ident(func(c Config) string { return c.Manufacturer })},
	"+CGMM":  {fn: ident(func(c Config) string { return c.Model })},
	"+GMM":   {fn: ident(func(c Config) string { return c.Model })},
	"+CGMR":  {fn: ident(func(c Config) string { return c.Revision })},
	"+GMR":   {fn: ident(func(c Config) string { return c.Revision })},
	"+CGSN":  {fn: ident(func(c Config) string { return c.IMEI })},
	"+GSN":   {fn: ident(func(c Config) string { return c.IMEI })},
	"+CIMI":  {fn: ident(func(c Config) string { return c.IMSI }), needSIM: true},
	"+GCAP":  {fn: ident(func(Config) string { return "+GCAP: +CGSM,+DS,+ES" })},
	"+CCID":  {fn: iccid},
	"+QCCID": {fn: iccid},

	"+CMEE":  {fn: intSetting(2, func(m *modem) *int { return &m.cmee })},
	"+CFUN":  {fn: cfun},
	"+CPIN":  {fn: cpin},
	"+CSCS":  {fn: cscs},
	"+CREG":  {fn: creg},
	"+CGREG": {fn: creg},
	"+CEREG": {fn: creg},
	"+COPS":  {fn: cops},
	"+CSQ":   {fn: csq},

	"+CMGF": {fn: intSetting(1, func(m *modem) *int { return &m.cmgf }), sms: true},
	"+CMMS": {fn: intSetting(2, func(m *modem) *int { return &m.cmms }), sms: true, needSIM: true},
	"+CSMS": {fn: csms, sms: true, needSIM: true},
	"+CPMS": {fn: cpms, sms: true, needSIM: true},
	"+CSCA": {fn: csca, sms: true, needSIM: true},
	"+CNMI": {fn: cnmi, sms: true},
	"+CMGS": {fn: cmgs, sms: true, needSIM: true},
	"+CMGL": {fn: cmgl, sms: true, needSIM: true},
	"+CMGR": {fn: cmgr, sms: true, needSIM: true},
	"+CMGD": {fn: cmgd, sms: true, needSIM: true},
}

func basicFlag(field func(*modem) *bool) func(*Sim, command, *[]func()) final {
	return func(s *Sim, c command, _ *[]func()) final {
		if c.num > 1 {
			return errF
		}
		*field(&s.m) = c.num == 1
		return okF
	}
}

// basicNoop accepts a V.250 setting the simulator has no use for.
func basicNoop(max int) func(*Sim, command, *[]func()) final {
	return func(_ *Sim, c command, _ *[]func()) final {
		if c.num > max {
			return errF
		}
		return okF
	}
}

func atz(s *Sim, c command, _ *[]func()) final {
	if c.num != 0 {
		return errF
	}
	s.m.settings = factory()
	return okF
}

func ati(s *Sim, c command, _ *[]func()) final {
	if c.num != 0 {
		return errF
	}
	s.infoLocked(s.cfg.Manufacturer)
	s.infoLocked(s.cfg.Model)
	s.infoLocked("Revision: " + s.cfg.Revision)
	return okF
}

// ident answers a prefix-less identity line.
func ident(v func(Config) string) func(*Sim, command, *[]func()) final {
	return func(s *Sim, c command, _ *[]func()) final {
		switch c.op {
		case 0:
			s.infoLocked(v(s.cfg))
		case 't':
		default:
			return errF
		}
		return okF
	}
}

func iccid(s *Sim, c command, _ *[]func()) final {
	switch c.op {
	case 0, '?':
		s.infoLocked(c.name + ": " + s.cfg.ICCID)
	case 't':
	default:
		return errF
	}
	return okF
}

func intSetting(max int, field func(*modem) *int) func(*Sim, command, *[]func()) final {
	return func(s *Sim, c command, _ *[]func()) final {
		p := field(&s.m)
		switch c.op {
		case '?':
			s.infoLocked(fmt.Sprintf("%s: %d", c.name, *p))
		case 't':
			s.infoLocked(fmt.Sprintf("%s: (0-%d)", c.name, max))
		case '=':
			v, ok := ints(c.args, max)
			if !ok || len(v) != 1 {
				return errF
			}
			*p = v[0]
		default:
			return errF
		}
		return okF
	}
}

func cfun(s *Sim, c command, post *[]func()) final {
	switch c.op {
	case '?':
		s.infoLocked(fmt.Sprintf("+CFUN: %d", s.m.cfun))
	case 't':
		s.infoLocked("+CFUN: (0,1,4),(0-1)")
	case '=':
		v, ok := ints(c.args, 4)
		if !ok || len(v) > 2 || v[0] == 2 || v[0] == 3 {
			return errF
		}
		if len(v) == 2 && v[1] == 1 {
			if v[0] != 1 {
				return errF
			}
			*post = append(*post, s.rebootLocked)
			return okF
		}
		was := s.m.cfun
		s.m.cfun = v[0]
		if v[0] == 1 && was != 1 && s.m.sim == simReady {
			*post = append(*post, s.searchLocked)
		} else {
			*post = append(*post, s.regUpdateLocked)
		}
	default:
		return errF
	}
	return okF
}

func cpin(s *Sim, c command, post *[]func()) final {
	switch c.op {
	case '?':
		s.infoLocked(map[simState]string{
			simReady: "+CPIN: READY", simPIN: "+CPIN: SIM PIN", simPUK: "+CPIN: SIM PUK",
		}[s.m.sim])
	case 't':
	case '=':
		if len(c.args) == 0 || c.args[0] == "" {
			return errF
		}
		switch s.m.sim {
		case simReady:
			return fail(3)
		case simPUK:
			return fail(12) // unblocking with a PUK is not simulated
		}
		if c.args[0] != s.cfg.PIN {
			s.pinTries--
			if s.pinTries == 0 {
				s.m.sim = simPUK
			}
			return fail(16)
		}
		s.pinTries = 3
		*post = append(*post, s.simReadyLocked)
	default:
		return errF
	}
	return okF
}

func cscs(s *Sim, c command, _ *[]func()) final {
	switch c.op {
	case '?':
		s.infoLocked(fmt.Sprintf("+CSCS: %q", s.m.cscs))
	case 't':
		s.infoLocked(`+CSCS: ("GSM","IRA","UCS2")`)
	case '=':
		if len(c.args) != 1 {
			return errF
		}
		cs := strings.ToUpper(c.args[0])
		if cs != "GSM" && cs != "IRA" && cs != "UCS2" {
			return fail(4)
		}
		s.m.cscs = cs
	default:
		return errF
	}
	return okF
}

func creg(s *Sim, c command, _ *[]func()) final {
	switch c.op {
	case '?':
		n, stat := s.m.regN[c.name], s.regStatLocked()
		cell := ""
		if n == 2 {
			cell = s.cellLocked(stat)
		}
		s.infoLocked(fmt.Sprintf("%s: %d,%d%s", c.name, n, stat, cell))
	case 't':
		s.infoLocked(c.name + ": (0-2)")
	case '=':
		v, ok := ints(c.args, 2)
		if !ok || len(v) != 1 {
			return errF
		}
		s.m.regN[c.name] = v[0]
	default:
		return errF
	}
	return okF
}

func cops(s *Sim, c command, _ *[]func()) final {
	switch c.op {
	case '?':
		if s.regStatLocked() == 1 {
			s.infoLocked(fmt.Sprintf("+COPS: 0,0,%q,7", s.cfg.Operator))
		} else {
			s.infoLocked("+COPS: 0")
		}
	case 't':
		plmn := s.cfg.IMSI // MCC and MNC lead the IMSI
		if len(plmn) > 5 {
			plmn = plmn[:5]
		}
		s.infoLocked(fmt.Sprintf("+COPS: (2,%q,%q,%q,7),,(0-4),(0-2)", s.cfg.Operator, "SIM", plmn))
	case '=':
		if _, ok := ints(c.args[:1], 4); !ok {
			return errF
		}
	default:
		return errF
	}
	return okF
}

func csq(s *Sim, c command, _ *[]func()) final {
	switch c.op {
	case 0:
		if st := s.regStatLocked(); st == 1 {
			s.infoLocked("+CSQ: 23,99")
		} else {
			s.infoLocked("+CSQ: 99,99")
		}
	case 't':
		s.infoLocked("+CSQ: (0-31,99),(0-7,99)")
	default:
		return errF
	}
	return okF
}

func csms(s *Sim, c command, _ *[]func()) final {
	switch c.op {
	case '?':
		s.infoLocked(fmt.Sprintf("+CSMS: %d,1,1,1", s.m.csms))
	case 't':
		s.infoLocked("+CSMS: (0-1)")
	case '=':
		v, ok := ints(c.args, 1)
		if !ok || len(v) != 1 {
			return errF
		}
		s.m.csms = v[0]
		s.infoLocked("+CSMS: 1,1,1")
	default:
		return errF
	}
	return okF
}

// memories are the message stores the simulator accepts; all share one
// store of Config.StoreCapacity.
var memories = map[string]bool{"SM": true, "ME": true, "MT": true}

func cpms(s *Sim, c command, _ *[]func()) final {
	switch c.op {
	case '?':
		m := s.m.cpms
		u, t := s.memStat()
		s.infoLocked(fmt.Sprintf("+CPMS: %q,%d,%d,%q,%d,%d,%q,%d,%d", m[0], u, t, m[1], u, t, m[2], u, t))
	case 't':
		s.infoLocked(`+CPMS: ("SM","ME","MT"),("SM","ME","MT"),("SM","ME","MT")`)
	case '=':
		if len(c.args) > 3 {
			return errF
		}
		m := s.m.cpms
		for i, a := range c.args {
			a = strings.ToUpper(a)
			if _, ok := memories[a]; !ok {
				return fail(302)
			}
			m[i] = a
		}
		s.m.cpms = m
		u, t := s.memStat()
		s.infoLocked(fmt.Sprintf("+CPMS: %d,%d,%d,%d,%d,%d", u, t, u, t, u, t))
	default:
		return errF
	}
	return okF
}

func csca(s *Sim, c command, _ *[]func()) final {
	switch c.op {
	case '?':
		toa := 129
		if strings.HasPrefix(s.smsc, "+") {
			toa = 145
		}
		s.infoLocked(fmt.Sprintf("+CSCA: %q,%d", s.smsc, toa))
	case 't':
	case '=':
		if len(c.args) == 0 || len(c.args) > 2 {
			return errF
		}
		s.smsc = c.args[0]
	default:
		return errF
	}
	return okF
}

// cnmiRanges are the values AT+CNMI=? advertises.
var cnmiRanges = [5][]int{{0, 1, 2}, {0, 1, 2, 3}, {0, 2}, {0, 1, 2}, {0, 1}}

func cnmi(s *Sim, c command, _ *[]func()) final {
	switch c.op {
	case '?':
		v := s.m.cnmi
		s.infoLocked(fmt.Sprintf("+CNMI: %d,%d,%d,%d,%d", v[0], v[1], v[2], v[3], v[4]))
	case 't':
		s.infoLocked("+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)")
	case '=':
		v, ok := ints(c.args, 9)
		if !ok || len(v) > 5 {
			return errF
		}
		var set [5]int
		for i, n := range v {
			if !slices.Contains(cnmiRanges[i], n) || i == 3 && n == 1 && s.cfg.StoredReportsOnly {
				return fail(303)
			}
			set[i] = n
		}
		s.m.cnmi = set
	default:
		return errF
	}
	return okF
}

// cmgs opens the PDU prompt. The PDU itself is handled byte by byte in
// consumeLocked and completed by ctrlZLocked.
func cmgs(s *Sim, c command, _ *[]func()) final {
	if c.op == 't' {
		return okF
	}
	if c.op != '=' || len(c.args) != 1 {
		return errF
	}
	s.starts = append(s.starts, time.Now())
	if s.m.cmgf != 0 {
		return fail(302) // text mode is not simulated
	}
	n, err := strconv.Atoi(c.args[0])
	if err != nil {
		return errF
	}
	if n < 1 || n > 164 {
		return fail(304)
	}
	if s.hangCMGS == HangBeforePrompt {
		s.hangCMGS = HangNone
		s.hung = true
		return noneF
	}
	s.emitLocked("\r\n> ")
	s.stats.Prompts++
	s.m.inPDU, s.m.pdu, s.m.pduLen, s.m.overflow = true, s.m.pdu[:0], n, false
	if s.noise {
		s.noiseURCLocked() // the classic trap: a URC right after the prompt
	}
	return noneF
}

// noiseLocked may write line noise and a noise URC before a response line.
func (s *Sim) noiseLocked() {
	if s.lineNoise && s.rng.IntN(2) == 0 {
		s.emitLocked([]string{"\x00", "\r"}[s.rng.IntN(2)])
	}
	if s.noise && s.rng.IntN(2) == 0 {
		s.noiseURCLocked()
	}
}

// noiseURCLocked writes a random vendor or standard URC, avoiding the
// prefix of the command being answered: a solicited-looking line there
// would be a different fault than noise.
func (s *Sim) noiseURCLocked() {
	cands := []struct{ clash, text string }{
		{"", fmt.Sprintf("^RSSI:%d", 10+s.rng.IntN(22))},
		{"", fmt.Sprintf("^HCSQ:\"LTE\",%d,%d,%d,%d", 30+s.rng.IntN(40), 20+s.rng.IntN(50), 100+s.rng.IntN(90), 10+s.rng.IntN(20))},
		{"+CREG", fmt.Sprintf("+CREG: %d", s.regStatLocked())},
		{"+CSQ", fmt.Sprintf("+CSQ: %d,99", 10+s.rng.IntN(22))},
		{"", "RING"},
	}
	cands = slices.DeleteFunc(cands, func(c struct{ clash, text string }) bool {
		return c.clash != "" && c.clash == s.cur
	})
	s.stats.NoiseURCs++
	s.urcLocked(cands[s.rng.IntN(len(cands))].text)
}
