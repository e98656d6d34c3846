package at

import "strings"

// maxLine bounds one line of modem output. Real lines are far shorter (a
// PDU line is at most ~360 hex digits); anything longer is garbage from a
// wrong baud rate or a babbling port and is discarded rather than buffered.
const maxLine = 4096

// token is one unit of modem output: a complete line, or the "> " prompt
// that invites the PDU and is never followed by a line end.
type token struct {
	line   string
	prompt bool
}

// tokenizer splits modem output into tokens. It keeps the partial line
// between reads, so a "\r\n" or a "+CMGS: 1" split across two reads yields
// the same tokens as one read. Only the reader goroutine uses it.
type tokenizer struct {
	buf     []byte
	discard bool // the current line overflowed maxLine; skip to its end
}

// feed consumes p and emits every completed token. promptArmed reports
// whether a command waits for the "> " prompt: only then is a '>' at line
// start a prompt, so a '>' in ordinary text is never taken for one.
// CR and LF both end a line and empty lines are dropped, which absorbs
// "\r\n", "\r\r\n", lone "\n" and lone "\r" alike.
func (t *tokenizer) feed(p []byte, promptArmed func() bool, emit func(token)) {
	for _, c := range p {
		switch {
		case c == '\r' || c == '\n':
			if !t.discard {
				if line := strings.TrimSpace(string(t.buf)); line != "" {
					emit(token{line: line})
				}
			}
			t.buf = t.buf[:0]
			t.discard = false
		case c == 0:
			// NULs come from line noise and some USB stacks at open.
		case t.discard:
		case len(t.buf) == 0 && (c == ' ' || c == '\t'):
			// Leading blanks carry nothing, and dropping them lets "\r\n > "
			// still count as a prompt at line start.
		case len(t.buf) == 0 && c == '>' && promptArmed():
			emit(token{prompt: true})
		case len(t.buf) >= maxLine:
			t.discard = true
			t.buf = t.buf[:0]
		default:
			t.buf = append(t.buf, c)
		}
	}
}
