package at

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func tokens(chunks []string, armed bool) []token {
	var tz tokenizer
	var out []token
	for _, c := range chunks {
		tz.feed([]byte(c), func() bool { return armed }, func(t token) { out = append(out, t) })
	}
	return out
}

func lines(ss ...string) []token {
	out := make([]token, len(ss))
	for i, s := range ss {
		out[i] = token{line: s}
	}
	return out
}

var promptTok = token{prompt: true}

func TestTokenizer(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		armed  bool
		want   []token
	}{
		{"CR LF framing", []string{"\r\n+CSQ: 23,99\r\n\r\nOK\r\n"}, false, lines("+CSQ: 23,99", "OK")},
		{"CR CR LF, lone LF, lone CR", []string{"A\r\r\nB\nC\rD\r"}, false, lines("A", "B", "C", "D")},
		{"split inside CR LF", []string{"OK\r", "\n", "ERROR\r", "\r", "\n"}, false, lines("OK", "ERROR")},
		{"NULs and padding", []string{"\x00 +CMTI: \"SM\",1 \x00\r\n\t\r\n"}, false, lines(`+CMTI: "SM",1`)},
		{"prompt with space", []string{"\r\n> "}, true, []token{promptTok}},
		{"prompt without space, then URC", []string{"\r\n>", "\r\nRING\r\n"}, true, []token{promptTok, {line: "RING"}}},
		{"prompt after blanks", []string{"\r\n  > "}, true, []token{promptTok}},
		{"'>' is text when no prompt is expected", []string{"\r\n> x\r\n"}, false, lines("> x")},
		{"'>' inside a line is text", []string{"a>b\r\n"}, true, lines("a>b")},
		{"echoed PDU after the prompt", []string{"> 0011\x1a\r\n"}, true, []token{promptTok, {line: "0011\x1a"}}},
		{"unterminated line is held back", []string{"+CMGS: 1"}, false, nil},
		{
			"overlong line dropped, next line kept",
			[]string{strings.Repeat("x", maxLine+1), "tail\r\nOK\r\n"}, false, lines("OK"),
		},
		{"line at the limit kept", []string{strings.Repeat("x", maxLine) + "\r\n"}, false, lines(strings.Repeat("x", maxLine))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tokens(tc.chunks, tc.armed); !slices.Equal(got, tc.want) {
				t.Errorf("tokens = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		cmd  string
		want spec
	}{
		{"AT", spec{name: "AT"}},
		{"ATI", spec{name: "I"}},
		{"ATE0", spec{name: "E"}},
		{"AT&F", spec{name: "&F"}},
		{"ATD+40700000000;", spec{name: "D"}},
		{"AT+CSQ", spec{name: "+CSQ", prefix: "+CSQ:", claim: true}},
		{"at+csq", spec{name: "+CSQ", prefix: "+CSQ:", claim: true}},
		{"AT+CPIN?", spec{name: "+CPIN", prefix: "+CPIN:", claim: true}},
		{`AT+CPIN="1234"`, spec{name: "+CPIN", prefix: "+CPIN:", set: true}},
		{"AT+CREG=?", spec{name: "+CREG", prefix: "+CREG:", claim: true}},
		{"AT+CFUN=1", spec{name: "+CFUN", prefix: "+CFUN:", set: true}},
		{"AT+CMGS=19", spec{name: "+CMGS", prefix: "+CMGS:", claim: true, set: true}},
		{"AT+CGSN", spec{name: "+CGSN"}},
		{"AT^CURC=0", spec{name: "^CURC", prefix: "^CURC:", claim: true, set: true}},
	}
	for _, tc := range tests {
		if got := parseCommand(tc.cmd); got != tc.want {
			t.Errorf("parseCommand(%q) = %+v, want %+v", tc.cmd, got, tc.want)
		}
	}
}

func TestRedaction(t *testing.T) {
	tests := []struct{ in, want string }{
		{`AT+CPIN="1234"` + "\r", "AT+CPIN<redacted>"},
		{`AT+CPIN="12345678","1234"` + "\r", "AT+CPIN<redacted>"},
		{"AT+CPIN?\r", "AT+CPIN?"},
		{`AT+CLCK="SC",0,"1234"` + "\r", "AT+CLCK<redacted>"},
		{"ATD+40722270333;\r", "ATD<redacted>"},
		{`AT+CSCA="+40722270333",145` + "\r", `AT+CSCA="+407*****333",145`},
		{pdu + "\x1a", "<pdu 40 hex digits><Ctrl-Z>"},
		{"\x1b", "<ESC>"},
	}
	for _, tc := range tests {
		if got := redactTX(tc.in); got != tc.want {
			t.Errorf("redactTX(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	rx := []struct{ in, want string }{
		{`AT+CPIN="1234"`, "AT+CPIN<redacted>"},
		{`+CLIP: "+40722270333",145,,,,0`, `+CLIP: "+407*****333",145,,,,0`},
		{deliverPDU, "<hex 76 digits>"},
		{pdu + "\x1a", "<hex 41 digits>"},
		{"+CSQ: 23,99", "+CSQ: 23,99"},
	}
	for _, tc := range rx {
		if got := redactRX(tc.in); got != tc.want {
			t.Errorf("redactRX(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// fuzzSeeds are modem outputs of every shape the engine must survive.
var fuzzSeeds = []string{
	"\r\n+CSQ: 23,99\r\n\r\nOK\r\n",
	"AT+CSQ\r\r\n+CMTI: \"SM\",1\r\n\r\n+CSQ: 23,99\r\n\r\nOK\r\n",
	"\r+CSQ: 23,99\r\rOK\r",
	"\n+CSQ: 23,99\r\r\n\nOK\n",
	"\r\n> ",
	"\r\n>\r\n+CMTI: \"SM\",3\r\n",
	"AT+CMGS=19\r\r\n> " + pdu + "\x1a\r\n+CMGS: 62\r\n\r\nOK\r\n",
	"\r\n+CMT: ,23\r\n" + deliverPDU + "\r\n",
	"\r\n+CDS: 25\r\n0006D60B911326880736F4111011719551401110117195714000\r\n",
	"\r\n+CMGR: 0,,23\r\n" + deliverPDU + "\r\n\r\nOK\r\n",
	"\r\n+CME ERROR: 10\r\n", "\r\n+CME ERROR: SIM not inserted\r\n",
	"\r\n+CMS ERROR: 500\r\n", "\r\n+CMS ERROR: unknown error\r\n",
	"\r\nCOMMAND NOT SUPPORT\r\n", "\r\nERROR\r\n",
	"ATI\r\r\nQuectel\r\nEC25\r\nRevision: EC25ECGAR06A04M1G\r\n\r\nOK\r\n",
	"\x00\x00garbage\x00\r\n\x00OK\x00\r\n",
	strings.Repeat("x", maxLine+10) + "\r\nOK\r\n",
	"\r\n+CMT: ,23", "\r\n+CPIN: READY\r\n+CFUN: 1\r\nRDY\r\nNO CARRIER\r\n",
	"\xff\xfe\x1b\x1a>\r>\n> >\r\n",
}

// FuzzTokenizer checks that the splitter and the classifier never panic,
// that tokens are clean, and that chunking does not change the tokens.
func FuzzTokenizer(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), true, uint16(3))
		f.Add([]byte(s), false, uint16(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, armed bool, chunk uint16) {
		whole := tokens([]string{string(data)}, armed)
		size := int(chunk)%64 + 1
		var chunks []string
		for b := range slices.Chunk(data, size) {
			chunks = append(chunks, string(b))
		}
		if split := tokens(chunks, armed); !slices.Equal(whole, split) {
			t.Fatalf("chunks of %d give %+v, whole input gives %+v", size, split, whole)
		}
		specs := []string{"AT+CSQ", "ATI", "AT+CMGR=1", "AT+CREG?", `AT+CPIN="1"`, "AT+CMGS=19"}
		var rt router
		for i, tok := range whole {
			if !tok.prompt {
				l := tok.line
				if l == "" || len(l) > maxLine || strings.ContainsAny(l, "\r\n\x00") || l != strings.TrimSpace(l) {
					t.Fatalf("bad line %q", l)
				}
				redactRX(l)
				parseCommand("AT" + l)
			}
			if rt.cur == nil {
				r := newRequest(parseCommand(specs[i%len(specs)]))
				if r.name == "+CMGS" {
					r.prompt, r.pdu = make(chan struct{}), pdu
				}
				rt.cur = r
			}
			o := rt.route(tok)
			if o.urc != nil && (o.urc.Line == "" || strings.ContainsAny(o.urc.Line+o.urc.PDU, "\r\n")) {
				t.Fatalf("bad URC %+v", *o.urc)
			}
		}
	})
}

// FuzzEngine plays arbitrary bytes as the modem's answer to a command or to
// AT+CMGS, then hangs up. The call must return a known error kind (never
// hang or panic) and the engine must close.
func FuzzEngine(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, out []byte, sendPDU bool) {
		a, b := net.Pipe()
		e := New(a, WithTimeout(wait), WithPromptTimeout(wait))
		defer e.Close()
		gotCmd := make(chan struct{})
		go func() {
			// Drain everything the engine writes; answer after the command.
			buf := make([]byte, 256)
			signalled := false
			for {
				n, err := b.Read(buf)
				if !signalled && bytes.IndexByte(buf[:n], '\r') >= 0 {
					signalled = true
					close(gotCmd)
				}
				if err != nil {
					return
				}
			}
		}()
		go func() {
			select {
			case <-gotCmd:
			case <-time.After(wait):
			}
			b.Write(out)
			b.Close()
		}()
		var err error
		var got []string
		if sendPDU {
			_, err = e.SendPDU(context.Background(), 19, pdu, wait)
		} else {
			got, err = e.Command(context.Background(), "AT+CMGR=1")
		}
		var cme *CMEError
		var cms *CMSError
		switch {
		case err == nil, errors.Is(err, ErrClosed), errors.Is(err, ErrError),
			errors.Is(err, ErrPromptTimeout), errors.As(err, &cme), errors.As(err, &cms):
		default:
			t.Fatalf("unexpected error %v", err)
		}
		for _, l := range got {
			if l == "" || strings.ContainsAny(l, "\r\n") {
				t.Fatalf("bad line %q", l)
			}
		}
		select {
		case <-e.Closed():
		case <-time.After(wait):
			t.Fatal("engine did not close after the peer hung up")
		}
	})
}
