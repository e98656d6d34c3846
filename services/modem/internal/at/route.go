package at

import "strings"

// URC is an unsolicited result code. PDU is set for the two-line kinds
// (+CMT, +CDS, +CBM in PDU mode), whose second line is the PDU in hex.
// Lines the engine cannot attribute to a command are delivered as URCs too,
// so vendor indications missing from the tables below are not lost.
type URC struct {
	Line string
	PDU  string
}

// spec is what the engine derives from a command line: the name reported
// to metrics (never the arguments) and how to recognise its answer.
type spec struct {
	name   string // "+CSQ", "I", "AT" for the bare AT
	prefix string // response prefix such as "+CSQ:"; "" for prefix-less commands
	claim  bool   // prefix lines are responses even when a URC shares the prefix
	set    bool   // "AT+X=..." (not "=?")
}

// prefixLess lists extended commands that answer with bare lines on common
// firmwares (or with a prefix only on some), so every non-final line is info.
var prefixLess = map[string]bool{
	"+CGMI": true, "+CGMM": true, "+CGMR": true, "+CGSN": true, "+CIMI": true,
	"+GMI": true, "+GMM": true, "+GMR": true, "+GSN": true, "+GCAP": true,
}

// parseCommand derives the spec of cmd, which must start with "AT".
func parseCommand(cmd string) spec {
	body := cmd[2:]
	if body == "" {
		return spec{name: "AT"}
	}
	if !strings.ContainsRune("+^#$%*", rune(body[0])) {
		// Basic command (ATI, ATZ, ATE0, AT&F, ATD...): its letter names it,
		// and its output carries no prefix.
		n := 1
		if body[0] == '&' && len(body) > 1 {
			n = 2
		}
		return spec{name: strings.ToUpper(body[:n])}
	}
	end := strings.IndexAny(body, "=?;")
	if end < 0 {
		end = len(body)
	}
	s := spec{name: strings.ToUpper(body[:end])}
	rest := body[end:]
	s.set = strings.HasPrefix(rest, "=") && !strings.HasPrefix(rest, "=?")
	if prefixLess[s.name] {
		return s
	}
	s.prefix = s.name + ":"
	// A query or test owns its prefix, but a set command such as
	// AT+CPIN="..." or AT+CFUN=1 prints nothing of its own: a +CPIN: or
	// +CFUN: line during it is the URC that the change triggered.
	_, isURC := urcKind(s.prefix)
	s.claim = !(s.set && isURC)
	return s
}

// opensPrompt reports whether the command answers with a "> " prompt; only
// SendPDU may run those, since it knows how to finish or abort them.
func (s spec) opensPrompt() bool {
	return s.set && (s.name == "+CMGS" || s.name == "+CMGW" || s.name == "+CMGC")
}

// urcTwoLine lists headers whose next line is a PDU (27.005 §3.4.1, PDU mode).
var urcTwoLine = []string{"+CMT:", "+CDS:", "+CBM:"}

// urcPrefixes lists line starts that are unsolicited (modem-protocol.md §4.1).
var urcPrefixes = []string{
	"+CMTI:", "+CDSI:", "+CRING:", "+CLIP:", "+CREG:", "+CGREG:", "+CEREG:", "+CUSD:",
	"+CPIN:", "+CFUN:", "+CMTE:", "+QIND:", "+QUSIM:", "+CNSMOD:", "+NITZ:",
	"+ZUSIMR:", "+PSBEARER:", "+SPNWNAME:", "#STN:",
	"^RSSI:", "^HCSQ:", "^BOOT:", "^MODE:", "^SRVST:", "^SIMST:", "^DSFLOWRPT:",
	"^CSNR:", "^STIN:", "^NWTIME:", "^RFSWITCH:", "^NDISSTAT:", "^ECCLIST:",
	"^LTERSRP:", "^ORIG:", "^CONF:", "^CONN:", "^CEND:", "^SYSSTART",
	"UNDER-VOLTAGE", "OVER-VOLTAGE",
}

// urcLines lists whole-line URCs. NO CARRIER is one: the gateway never dials.
var urcLines = map[string]bool{
	"RING": true, "NO CARRIER": true, "RDY": true, "SMS Ready": true, "Call Ready": true,
	"SMS DONE": true, "PB DONE": true, "POWERED DOWN": true, "NORMAL POWER DOWN": true,
}

// urcKind reports whether line is a known URC and whether a PDU line follows.
func urcKind(line string) (twoLine, ok bool) {
	for _, p := range urcTwoLine {
		if strings.HasPrefix(line, p) {
			// A text-mode +CDS is one line of comma-separated fields; the
			// PDU-mode header is just "<length>".
			return !(p == "+CDS:" && strings.Contains(line, ",")), true
		}
	}
	if urcLines[line] {
		return false, true
	}
	for _, p := range urcPrefixes {
		if strings.HasPrefix(line, p) {
			return false, true
		}
	}
	return false, false
}

// request is one command in flight. The reader goroutine fills it under
// Engine.mu until it sends the outcome on done.
type request struct {
	spec
	pdu    string        // hex written after the prompt; its echo is dropped
	prompt chan struct{} // non-nil for prompt commands; closed on "> "
	lines  []string
	more   bool       // the last response line (+CMGR:/+CMGL:) announced a PDU line
	done   chan error // buffered; receives the final outcome exactly once
}

func newRequest(s spec) *request {
	return &request{spec: s, done: make(chan error, 1)}
}

// router is the classification state of the reader (modem-protocol.md §4.2).
// It is a separate type so the classifier can be fuzzed without a port.
type router struct {
	cur        *request
	stale      bool   // a command was abandoned; its late answer may still arrive
	pendingURC string // header of a two-line URC waiting for its PDU line
}

// outcome tells the engine what routing a token requires it to do.
type outcome struct {
	urc      *URC          // deliver to the URC handler
	finished *request      // complete with err
	err      error         //
	prompt   chan struct{} // close: the "> " prompt arrived
	stray    bool          // a line nobody owns was dropped (resync watches these)
}

func (rt *router) route(tok token) outcome {
	var o outcome
	r := rt.cur
	if tok.prompt {
		if r != nil && r.prompt != nil {
			o.prompt, r.prompt = r.prompt, nil
		}
		return o
	}
	line := tok.line
	if rt.pendingURC != "" {
		o.urc = &URC{Line: rt.pendingURC, PDU: line}
		rt.pendingURC = ""
		return o
	}
	if isEcho(line, r) {
		return o
	}
	if final, err := parseFinal(line); final {
		if r == nil {
			// Most likely the late answer of an abandoned command.
			o.stray = true
			return o
		}
		rt.cur = nil
		o.finished, o.err = r, err
		return o
	}
	if r != nil && r.claim && strings.HasPrefix(line, r.prefix) {
		r.lines = append(r.lines, line)
		r.more = r.prefix == "+CMGR:" || r.prefix == "+CMGL:"
		return o
	}
	if twoLine, ok := urcKind(line); ok {
		if twoLine {
			rt.pendingURC = line
		} else {
			o.urc = &URC{Line: line}
		}
		return o
	}
	switch {
	case r != nil && (r.more || r.prefix == ""):
		r.more = false
		r.lines = append(r.lines, line)
	case r == nil && rt.stale:
		o.stray = true
	default:
		o.urc = &URC{Line: line}
	}
	return o
}

// isEcho drops the echo of a command line (ofono's rule: anything starting
// with AT) and the echo of the PDU, which ends in Ctrl-Z.
func isEcho(line string, r *request) bool {
	if len(line) >= 2 && strings.EqualFold(line[:2], "AT") {
		return true
	}
	if strings.ContainsRune(line, 0x1a) {
		return true
	}
	return r != nil && r.pdu != "" && strings.HasPrefix(line, r.pdu)
}
