package at

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// pdu is the worked example of modem-protocol.md §2.2 (19 TPDU octets).
const pdu = "0011000B910427369668F70000AA05E8329BFD06"

// deliverPDU is an SMS-DELIVER in hex, as carried by +CMT and +CMGR.
const deliverPDU = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"

var ring = URC{Line: "RING"}

func TestCommandTranscripts(t *testing.T) {
	tests := []struct {
		name  string
		cmd   string
		reply []string
		want  []string
		urcs  []URC
	}{
		{
			name:  "echo off",
			cmd:   "AT+CSQ",
			reply: []string{"\r\n+CSQ: 23,99\r\n\r\nOK\r\n"},
			want:  []string{"+CSQ: 23,99"},
		},
		{
			name:  "echo on",
			cmd:   "AT+CSQ",
			reply: []string{"AT+CSQ\r\r\n+CSQ: 23,99\r\n\r\nOK\r\n"},
			want:  []string{"+CSQ: 23,99"},
		},
		{
			name:  "writes split inside CR LF, the response and OK",
			cmd:   "AT+CSQ",
			reply: []string{"AT+CSQ\r", "\r", "\n+CS", "Q: 2", "3,99\r", "\n\r\nO", "K\r", "\n"},
			want:  []string{"+CSQ: 23,99"},
		},
		{
			name:  "URC between echo and response",
			cmd:   "AT+CSQ",
			reply: []string{"AT+CSQ\r\r\n+CMTI: \"SM\",1\r\n\r\n+CSQ: 23,99\r\n\r\nOK\r\n"},
			want:  []string{"+CSQ: 23,99"},
			urcs:  []URC{{Line: `+CMTI: "SM",1`}},
		},
		{
			name: "URC between lines of a listing",
			cmd:  "AT+CMGL=4",
			reply: []string{
				"\r\n+CMGL: 1,0,,23\r\n" + deliverPDU + "\r\n",
				"+CMTI: \"ME\",7\r\n",
				"+CMGL: 2,0,,23\r\n" + deliverPDU + "\r\n\r\nOK\r\n",
			},
			want: []string{"+CMGL: 1,0,,23", deliverPDU, "+CMGL: 2,0,,23", deliverPDU},
			urcs: []URC{{Line: `+CMTI: "ME",7`}},
		},
		{
			name:  "URC right before OK",
			cmd:   "AT+CSQ",
			reply: []string{"\r\n+CSQ: 23,99\r\n", "\r\n^RSSI:17\r\n", "\r\nOK\r\n"},
			want:  []string{"+CSQ: 23,99"},
			urcs:  []URC{{Line: "^RSSI:17"}},
		},
		{
			name:  "CR-only line ends",
			cmd:   "AT+CSQ",
			reply: []string{"\r+CSQ: 23,99\r\rOK\r"},
			want:  []string{"+CSQ: 23,99"},
		},
		{
			name:  "LF-only and CR CR LF line ends",
			cmd:   "AT+CSQ",
			reply: []string{"\n+CSQ: 23,99\r\r\n\nOK\n"},
			want:  []string{"+CSQ: 23,99"},
		},
		{
			name:  "NUL bytes and blank lines",
			cmd:   "AT+CSQ",
			reply: []string{"\x00\r\n\x00+CSQ: 23,99\x00\r\n  \r\n\x00OK\x00\r\n"},
			want:  []string{"+CSQ: 23,99"},
		},
		{
			name:  "prefix-less ATI keeps info lines and sheds a URC",
			cmd:   "ATI",
			reply: []string{"ATI\r\r\nQuectel\r\nEC25\r\n+CMTI: \"SM\",2\r\nRevision: EC25ECGAR06A04M1G\r\n\r\nOK\r\n"},
			want:  []string{"Quectel", "EC25", "Revision: EC25ECGAR06A04M1G"},
			urcs:  []URC{{Line: `+CMTI: "SM",2`}},
		},
		{
			name:  "prefix-less AT+CGMI is trimmed",
			cmd:   "AT+CGMI",
			reply: []string{"\r\n WAVECOM MODEM\r\n\r\nOK\r\n"},
			want:  []string{"WAVECOM MODEM"},
		},
		{
			name:  "query owns its ambiguous prefix",
			cmd:   "AT+CREG?",
			reply: []string{"\r\n+CREG: 0,1\r\n\r\nOK\r\n"},
			want:  []string{"+CREG: 0,1"},
		},
		{
			name:  "ambiguous prefix is a URC during another command",
			cmd:   "AT+CSQ",
			reply: []string{"\r\n+CREG: 1\r\n\r\n+CSQ: 23,99\r\n\r\nOK\r\n"},
			want:  []string{"+CSQ: 23,99"},
			urcs:  []URC{{Line: "+CREG: 1"}},
		},
		{
			name:  "PIN entry does not own the +CPIN URC it triggers",
			cmd:   `AT+CPIN="1234"`,
			reply: []string{"\r\n+CPIN: READY\r\n\r\nOK\r\n"},
			urcs:  []URC{{Line: "+CPIN: READY"}},
		},
		{
			name:  "+CMT two-line URC inside a command",
			cmd:   "AT+CSQ",
			reply: []string{"\r\n+CMT: ,23\r\n", deliverPDU + "\r\n\r\n+CSQ: 23,99\r\n\r\nOK\r\n"},
			want:  []string{"+CSQ: 23,99"},
			urcs:  []URC{{Line: "+CMT: ,23", PDU: deliverPDU}},
		},
		{
			name:  "+CDS two-line URC before the echo",
			cmd:   "AT+CSQ",
			reply: []string{"\r\n+CDS: 25\r\n0006D60B911326880736F4111011719551401110117195714000\r\nAT+CSQ\r\r\n+CSQ: 23,99\r\n\r\nOK\r\n"},
			want:  []string{"+CSQ: 23,99"},
			urcs:  []URC{{Line: "+CDS: 25", PDU: "0006D60B911326880736F4111011719551401110117195714000"}},
		},
		{
			name:  "+CMGR response carries its PDU line",
			cmd:   "AT+CMGR=3",
			reply: []string{"\r\n+CMGR: 0,,23\r\n" + deliverPDU + "\r\n\r\nOK\r\n"},
			want:  []string{"+CMGR: 0,,23", deliverPDU},
		},
		{
			name:  "prefix without a space after the colon",
			cmd:   "AT+CNMI=?",
			reply: []string{"\r\n+CNMI:(0-3),(0-3),(0-3),(0,1),(0,1)\r\nOK\r\n"},
			want:  []string{"+CNMI:(0-3),(0-3),(0-3),(0,1),(0,1)"},
		},
		{
			name:  "unrecognised line during a prefixed command goes to the URC handler",
			cmd:   "AT+CSQ",
			reply: []string{"\r\n+NEWTHING: 1\r\n+CSQ: 23,99\r\nOK\r\n"},
			want:  []string{"+CSQ: 23,99"},
			urcs:  []URC{{Line: "+NEWTHING: 1"}},
		},
		{
			name:  "NO CARRIER is a URC, not a final result",
			cmd:   "AT+CSQ",
			reply: []string{"\r\nNO CARRIER\r\n\r\n+CSQ: 23,99\r\n\r\nOK\r\n"},
			want:  []string{"+CSQ: 23,99"},
			urcs:  []URC{{Line: "NO CARRIER"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := newSink()
			e, p := newPair(t, WithTimeout(wait), WithURCHandler(sink.handler))
			p.script(
				step{want: tc.cmd + "\r", reply: tc.reply},
				step{reply: []string{"\r\nRING\r\n"}},
			)
			got, err := e.Command(context.Background(), tc.cmd)
			if err != nil {
				t.Fatalf("Command(%q): %v", tc.cmd, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Command(%q) = %q, want %q", tc.cmd, got, tc.want)
			}
			sink.expectURCs(t, append(tc.urcs, ring)...)
		})
	}
}

func TestIdleURCs(t *testing.T) {
	sink := newSink()
	_, p := newPair(t, WithURCHandler(sink.handler))
	p.script(step{reply: []string{
		"\r\n+CMTI: \"SM\",4\r\n",
		"\r\n+CMT: ,2", "3\r\n" + deliverPDU[:10], deliverPDU[10:] + "\r\n",
		"\r\n+CDS: 6,62,\"+40700000000\",145,\"24/01/01,00:00:00+08\",\"24/01/01,00:00:05+08\",0\r\n",
		"\r\n+CREG: 1\r\n+CPIN: READY\r\n+CFUN: 1\r\nRDY\r\nSMS Ready\r\n+QIND: SMS DONE\r\n",
		"\r\n^BOOT:20,0,0,0,1\r\nUNDER-VOLTAGE WARNNING\r\nmystery\r\nRING\r\n",
	}})
	sink.expectURCs(t,
		URC{Line: `+CMTI: "SM",4`},
		URC{Line: "+CMT: ,23", PDU: deliverPDU},
		// Text-mode +CDS is one line; it must not swallow the next one.
		URC{Line: `+CDS: 6,62,"+40700000000",145,"24/01/01,00:00:00+08","24/01/01,00:00:05+08",0`},
		URC{Line: "+CREG: 1"}, URC{Line: "+CPIN: READY"}, URC{Line: "+CFUN: 1"},
		URC{Line: "RDY"}, URC{Line: "SMS Ready"}, URC{Line: "+QIND: SMS DONE"},
		URC{Line: "^BOOT:20,0,0,0,1"}, URC{Line: "UNDER-VOLTAGE WARNNING"},
		URC{Line: "mystery"}, ring,
	)
}

func TestCommandErrors(t *testing.T) {
	tests := []struct {
		final string
		check func(error) bool
	}{
		{"ERROR", func(err error) bool { return errors.Is(err, ErrError) }},
		{"COMMAND NOT SUPPORT", func(err error) bool { return errors.Is(err, ErrError) }},
		{"+CME ERROR: 10", isCME(10, "")},
		{"+CME ERROR: SIM not inserted", isCME(10, "SIM not inserted")},
		{"+CME ERROR: incorrect  Password", isCME(16, "incorrect  Password")},
		{"+CME ERROR: something new", isCME(-1, "something new")},
		{"+CMS ERROR: 304", isCMS(304, "")},
		{"+CMS ERROR:500", isCMS(500, "")},
		{"+CMS ERROR: unknown error", isCMS(500, "unknown error")},
		{"+CMS ERROR: SMSC address unknown", isCMS(330, "SMSC address unknown")},
	}
	for _, tc := range tests {
		t.Run(tc.final, func(t *testing.T) {
			e, p := newPair(t, WithTimeout(wait))
			p.script(step{want: "AT+CMGF=0\r", reply: []string{"\r\n" + tc.final + "\r\n"}})
			_, err := e.Command(context.Background(), "AT+CMGF=0")
			if !tc.check(err) {
				t.Fatalf("Command error = %v (%T)", err, errors.Unwrap(err))
			}
		})
	}
}

func isCME(code int, text string) func(error) bool {
	return func(err error) bool {
		var ce *CMEError
		return errors.As(err, &ce) && ce.Code == code && ce.Text == text
	}
}

func isCMS(code int, text string) func(error) bool {
	return func(err error) bool {
		var ce *CMSError
		return errors.As(err, &ce) && ce.Code == code && ce.Text == text
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&CMEError{Code: 10}, "+CME ERROR: 10 (SIM not inserted)"},
		{&CMEError{Code: 10, Text: "SIM not inserted"}, "+CME ERROR: SIM not inserted"},
		{&CMSError{Code: 777}, "+CMS ERROR: 777"},
		{&CMSError{Code: 304}, "+CMS ERROR: 304 (invalid PDU mode parameter)"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestSendPDU(t *testing.T) {
	tests := []struct {
		name   string
		prompt []string
		result []string
		wantMR int
		urcs   []URC
	}{
		{
			name:   "echo off",
			prompt: []string{"\r\n> "},
			result: []string{"\r\n+CMGS: 62\r\n\r\nOK\r\n"},
			wantMR: 62,
		},
		{
			name:   "echo on, PDU echoed with Ctrl-Z",
			prompt: []string{"AT+CMGS=19\r\r\n> "},
			result: []string{pdu + "\x1a\r\n+CMGS: 62\r\n\r\nOK\r\n"},
			wantMR: 62,
		},
		{
			name:   "echo on, PDU echoed without Ctrl-Z",
			prompt: []string{"AT+CMGS=19\r\r\n> "},
			result: []string{pdu + "\r\n+CMGS: 62\r\n\r\nOK\r\n"},
			wantMR: 62,
		},
		{
			name:   "prompt without space, writes split everywhere",
			prompt: []string{"\r", "\n", ">"},
			result: []string{"\r", "\n+CMGS: ", "6", "2\r", "\n\r\nO", "K\r\n"},
			wantMR: 62,
		},
		{
			name:   "URC right after the prompt",
			prompt: []string{"\r\n> ", "\r\n+CMTI: \"SM\",3\r\n"},
			result: []string{"\r\n+CMGS: 7\r\n\r\nOK\r\n"},
			wantMR: 7,
			urcs:   []URC{{Line: `+CMTI: "SM",3`}},
		},
		{
			name:   "URC before the prompt and before the result",
			prompt: []string{"\r\nRING\r\n\r\n> "},
			result: []string{"\r\n+CREG: 5\r\n\r\n+CMGS: 255\r\n\r\nOK\r\n"},
			wantMR: 255,
			urcs:   []URC{ring, {Line: "+CREG: 5"}},
		},
		{
			name:   "missing +CMGS line",
			prompt: []string{"\r\n> "},
			result: []string{"\r\nOK\r\n"},
			wantMR: -1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := newSink()
			e, p := newPair(t, WithTimeout(wait), WithPromptTimeout(wait), WithURCHandler(sink.handler))
			p.script(
				step{want: "AT+CMGS=19\r", reply: tc.prompt},
				step{want: pdu + "\x1a", reply: tc.result},
				step{reply: []string{"\r\nRING\r\n"}},
			)
			mr, err := e.SendPDU(context.Background(), 19, pdu, wait)
			if err != nil {
				t.Fatalf("SendPDU: %v", err)
			}
			if mr != tc.wantMR {
				t.Errorf("mr = %d, want %d", mr, tc.wantMR)
			}
			sink.expectURCs(t, append(tc.urcs, ring)...)
		})
	}
}

func TestSendPDUErrors(t *testing.T) {
	t.Run("+CMS ERROR after Ctrl-Z", func(t *testing.T) {
		e, p := newPair(t, WithTimeout(wait), WithPromptTimeout(wait))
		p.script(
			step{want: "AT+CMGS=19\r", reply: []string{"\r\n> "}},
			step{want: pdu + "\x1a", reply: []string{"\r\n+CMS ERROR: 38\r\n"}},
		)
		_, err := e.SendPDU(context.Background(), 19, pdu, wait)
		if !isCMS(38, "")(err) || errors.Is(err, ErrSubmitUnknown) {
			t.Fatalf("SendPDU error = %v, want +CMS ERROR 38", err)
		}
	})
	t.Run("+CMS ERROR instead of the prompt", func(t *testing.T) {
		e, p := newPair(t, WithTimeout(wait), WithPromptTimeout(wait))
		p.script(step{want: "AT+CMGS=19\r", reply: []string{"\r\n+CMS ERROR: 302\r\n"}})
		_, err := e.SendPDU(context.Background(), 19, pdu, wait)
		if !isCMS(302, "")(err) {
			t.Fatalf("SendPDU error = %v, want +CMS ERROR 302", err)
		}
	})
	t.Run("prompt timeout sends ESC, not submitted", func(t *testing.T) {
		e, p := newPair(t, WithTimeout(wait), WithPromptTimeout(50*time.Millisecond))
		p.script(step{want: "AT+CMGS=19\r"}, step{want: "\x1b"})
		_, err := e.SendPDU(context.Background(), 19, pdu, wait)
		if !errors.Is(err, ErrPromptTimeout) || !errors.Is(err, ErrTimeout) || errors.Is(err, ErrSubmitUnknown) {
			t.Fatalf("SendPDU error = %v, want ErrPromptTimeout only", err)
		}
	})
	t.Run("result timeout sends ESC, outcome unknown", func(t *testing.T) {
		e, p := newPair(t, WithTimeout(wait), WithPromptTimeout(wait))
		p.script(
			step{want: "AT+CMGS=19\r", reply: []string{"\r\n> "}},
			step{want: pdu + "\x1a"},
			step{want: "\x1b"},
		)
		_, err := e.SendPDU(context.Background(), 19, pdu, 50*time.Millisecond)
		if !errors.Is(err, ErrResultTimeout) || !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrSubmitUnknown) {
			t.Fatalf("SendPDU error = %v, want ErrResultTimeout", err)
		}
	})
	t.Run("cancelled after Ctrl-Z, outcome unknown", func(t *testing.T) {
		e, p := newPair(t, WithTimeout(wait), WithPromptTimeout(wait))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p.script(
			step{want: "AT+CMGS=19\r", reply: []string{"\r\n> "}},
			step{want: pdu + "\x1a", then: cancel},
			step{want: "\x1b"},
		)
		_, err := e.SendPDU(ctx, 19, pdu, wait)
		if !errors.Is(err, ErrSubmitUnknown) || !errors.Is(err, context.Canceled) {
			t.Fatalf("SendPDU error = %v, want ErrSubmitUnknown and context.Canceled", err)
		}
	})
	t.Run("port closed after Ctrl-Z, outcome unknown", func(t *testing.T) {
		e, p := newPair(t, WithTimeout(wait), WithPromptTimeout(wait))
		p.script(
			step{want: "AT+CMGS=19\r", reply: []string{"\r\n> "}},
			step{want: pdu + "\x1a", then: func() { p.conn.Close() }},
		)
		_, err := e.SendPDU(context.Background(), 19, pdu, wait)
		if !errors.Is(err, ErrSubmitUnknown) || !errors.Is(err, ErrClosed) {
			t.Fatalf("SendPDU error = %v, want ErrSubmitUnknown and ErrClosed", err)
		}
	})
}

// TestResyncLateOKAfterProbe is the classic desync: the answer of a timed-out
// command arrives after the next line was sent. The next command must still
// get its own answer.
func TestResyncLateOKAfterProbe(t *testing.T) {
	e, p := newPair(t, WithTimeout(wait), WithQuietPeriod(300*time.Millisecond))
	p.script(
		step{want: "AT+CGMI\r"}, // answered too late
		// The late OK of AT+CGMI, then, a little later, the probe's own OK.
		// The pause is modem latency, not a wait: an engine that trusts the
		// first OK sends AT+CSQ during it and takes the probe's OK for its
		// answer.
		step{want: "AT\r", reply: []string{"\r\nOK\r\n"}, then: func() { time.Sleep(20 * time.Millisecond) }},
		step{reply: []string{"\r\nOK\r\n"}},
		step{want: "AT+CSQ\r", reply: []string{"\r\n+CSQ: 23,99\r\n\r\nOK\r\n"}},
	)
	ctx := context.Background()
	if _, err := e.Command(ctx, "AT+CGMI", WithCmdTimeout(50*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("first Command error = %v, want ErrTimeout", err)
	}
	got, err := e.Command(ctx, "AT+CSQ")
	if err != nil || !slices.Equal(got, []string{"+CSQ: 23,99"}) {
		t.Fatalf("Command(AT+CSQ) = %q, %v; want its own +CSQ line", got, err)
	}
}

func TestResyncLateAnswerWhileIdle(t *testing.T) {
	sink := newSink()
	e, p := newPair(t, WithTimeout(wait), WithQuietPeriod(50*time.Millisecond), WithURCHandler(sink.handler))
	p.script(
		step{want: "AT+CGMI\r"},
		step{want: "AT\r", reply: []string{"\r\nOK\r\n"}},
		step{want: "AT+CGMM\r", reply: []string{"\r\nEC25\r\n\r\nOK\r\n", "\r\nRING\r\n"}},
	)
	ctx := context.Background()
	if _, err := e.Command(ctx, "AT+CGMI", WithCmdTimeout(50*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("first Command error = %v, want ErrTimeout", err)
	}
	// The late answer arrives while nothing is in flight: it must be
	// neither a URC nor the next command's answer.
	p.send("\r\nQuectel\r\n\r\nOK\r\n")
	got, err := e.Command(ctx, "AT+CGMM")
	if err != nil || !slices.Equal(got, []string{"EC25"}) {
		t.Fatalf("Command(AT+CGMM) = %q, %v; want [EC25]", got, err)
	}
	sink.expectURCs(t, ring)
}

func TestTimeoutKeepsPartialLines(t *testing.T) {
	// Wavecom answers AT+CPIN? without a final OK.
	e, p := newPair(t)
	p.script(step{want: "AT+CPIN?\r", reply: []string{"\r\n+CPIN: READY\r\n"}})
	got, err := e.Command(context.Background(), "AT+CPIN?", WithCmdTimeout(50*time.Millisecond))
	if !errors.Is(err, ErrTimeout) || !slices.Equal(got, []string{"+CPIN: READY"}) {
		t.Fatalf("Command = %q, %v; want [+CPIN: READY] and ErrTimeout", got, err)
	}
}

func TestContextDeadlineIsTimeout(t *testing.T) {
	e, p := newPair(t, WithTimeout(wait))
	p.script(step{want: "AT+CSQ\r"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := e.Command(ctx, "AT+CSQ")
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Command error = %v, want ErrTimeout and DeadlineExceeded", err)
	}
}

func TestEscapeThenResync(t *testing.T) {
	e, p := newPair(t, WithTimeout(wait), WithQuietPeriod(20*time.Millisecond))
	p.script(
		step{want: "\x1b"},
		step{want: "AT\r", reply: []string{"\r\nOK\r\n"}},
		step{want: "AT+CSQ\r", reply: []string{"\r\n+CSQ: 1,2\r\n\r\nOK\r\n"}},
	)
	if err := e.Escape(); err != nil {
		t.Fatalf("Escape: %v", err)
	}
	if got, err := e.Command(context.Background(), "AT+CSQ"); err != nil || !slices.Equal(got, []string{"+CSQ: 1,2"}) {
		t.Fatalf("Command = %q, %v", got, err)
	}
}

func TestConcurrentCommandsAreSerialised(t *testing.T) {
	const callers, each = 8, 5
	e, p := newPair(t, WithTimeout(wait))
	peerDone := make(chan struct{})
	go func() {
		defer close(peerDone)
		for range callers * each {
			var cmd string
			select {
			case cmd = <-p.rx:
			case <-time.After(wait):
				t.Error("peer: no command")
				return
			}
			id, ok := strings.CutPrefix(strings.TrimSuffix(cmd, "\r"), "AT+XT=")
			if !ok {
				t.Errorf("peer: unexpected %q", cmd)
				return
			}
			if !p.send("\r\n+XT: "+id+"\r\n", "\r\n") {
				return
			}
			// A second command written before this one's final result
			// means the engine let two commands overlap.
			select {
			case other := <-p.rx:
				t.Errorf("peer: %q written while AT+XT=%s was in flight", other, id)
				return
			default:
			}
			if !p.send("OK\r\n") {
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprint(c*each + i)
				got, err := e.Command(context.Background(), "AT+XT="+id)
				if err != nil || !slices.Equal(got, []string{"+XT: " + id}) {
					t.Errorf("caller %d: Command(AT+XT=%s) = %q, %v", c, id, got, err)
				}
			}
		})
	}
	wg.Wait()
	<-peerDone
}

func TestCancelWhileQueued(t *testing.T) {
	e, p := newPair(t, WithTimeout(wait))
	release := make(chan struct{})
	p.script(
		step{want: "AT+CGMI\r", then: func() { <-release }},
		step{reply: []string{"\r\nQuectel\r\nOK\r\n"}},
		step{want: "AT+CGMM\r", reply: []string{"\r\nEC25\r\nOK\r\n"}},
	)
	first := make(chan error, 1)
	go func() {
		_, err := e.Command(context.Background(), "AT+CGMI")
		first <- err
	}()
	// Wait until AT+CGMI holds the port, then queue a command behind it.
	waitFor(t, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.rt.cur != nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.Command(ctx, "AT+CSQ"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued Command error = %v, want context.DeadlineExceeded", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first Command: %v", err)
	}
	// The peer's script proves AT+CSQ never reached the port.
	if _, err := e.Command(context.Background(), "AT+CGMM"); err != nil {
		t.Fatalf("Command(AT+CGMM): %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after wait.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Error("condition not reached")
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func TestEOFClosesEngine(t *testing.T) {
	e, p := newPair(t, WithTimeout(wait))
	p.script(step{want: "AT+CSQ\r", reply: []string{"\r\n+CSQ: 2"}, then: func() { p.conn.Close() }})
	_, err := e.Command(context.Background(), "AT+CSQ")
	if !errors.Is(err, ErrClosed) || !errors.Is(err, io.EOF) {
		t.Fatalf("Command error = %v, want ErrClosed wrapping EOF", err)
	}
	select {
	case <-e.Closed():
	case <-time.After(wait):
		t.Fatal("Closed() not closed after EOF")
	}
	if _, err := e.Command(context.Background(), "AT"); !errors.Is(err, ErrClosed) {
		t.Errorf("Command after EOF = %v, want ErrClosed", err)
	}
	if _, err := e.SendPDU(context.Background(), 19, pdu, wait); !errors.Is(err, ErrClosed) || errors.Is(err, ErrSubmitUnknown) {
		t.Errorf("SendPDU after EOF = %v, want ErrClosed only", err)
	}
	if err := e.Escape(); !errors.Is(err, ErrClosed) {
		t.Errorf("Escape after EOF = %v, want ErrClosed", err)
	}
}

func TestCloseUnblocksCommand(t *testing.T) {
	e, p := newPair(t, WithTimeout(wait))
	p.script(step{want: "AT+CSQ\r", then: func() { e.Close() }})
	if _, err := e.Command(context.Background(), "AT+CSQ"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Command error = %v, want ErrClosed", err)
	}
	select {
	case <-e.Closed():
	default:
		t.Fatal("Closed() not closed after Close")
	}
	// Close closed the port too: the peer sees EOF.
	if _, err := p.conn.Read(make([]byte, 1)); err == nil {
		t.Error("peer read succeeded after Close")
	}
}

func TestNoiseAndOverlongLines(t *testing.T) {
	sink := newSink()
	e, p := newPair(t, WithTimeout(wait), WithURCHandler(sink.handler))
	p.script(
		step{reply: []string{
			"\x00\x00gar", "bage\x00\r\n",
			strings.Repeat("x", 3*maxLine), strings.Repeat("y", maxLine) + "\r\n",
		}},
		step{want: "AT+CSQ\r", reply: []string{"\r\n+CSQ: 23,99\r\n" + strings.Repeat("z", maxLine+1) + "\nOK\r\n", "RING\r\n"}},
	)
	got, err := e.Command(context.Background(), "AT+CSQ")
	if err != nil || !slices.Equal(got, []string{"+CSQ: 23,99"}) {
		t.Fatalf("Command = %q, %v", got, err)
	}
	// The overlong lines vanish; the short garbage is reported as a line
	// nobody claimed.
	sink.expectURCs(t, URC{Line: "garbage"}, ring)
}

func TestInvalidCommandsWriteNothing(t *testing.T) {
	e, p := newPair(t, WithTimeout(wait))
	p.script(step{want: "AT\r", reply: []string{"\r\nOK\r\n"}})
	ctx := context.Background()
	for _, cmd := range []string{"", "A", "+CSQ", "AT+CSQ\rAT", "AT+CMGF=0\n", "AT\x1a", "AT\x1b", "AT+CMGS=19", "at+cmgw=19"} {
		if _, err := e.Command(ctx, cmd); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("Command(%q) = %v, want ErrInvalidCommand", cmd, err)
		}
	}
	for _, tc := range []struct {
		n   int
		hex string
	}{{0, pdu}, {19, ""}, {19, "00zz"}, {19, pdu + "\x1a"}, {19, pdu[1:]}} {
		if _, err := e.SendPDU(ctx, tc.n, tc.hex, wait); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("SendPDU(%d, %q) = %v, want ErrInvalidCommand", tc.n, tc.hex, err)
		}
	}
	// The script proves the first thing written is this AT.
	if _, err := e.Command(ctx, "AT"); err != nil {
		t.Fatalf("Command(AT): %v", err)
	}
}

func TestObserverAndRedactedTrace(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	type call struct {
		cmd string
		err error
	}
	var mu sync.Mutex
	var calls []call
	obs := func(cmd string, _ time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{cmd, err})
	}
	sink := newSink()
	e, p := newPair(t, WithTimeout(wait), WithPromptTimeout(wait), WithLogger(zap.New(core)),
		WithObserver(obs), WithURCHandler(sink.handler))
	p.script(
		step{want: `AT+CPIN="1234"` + "\r", reply: []string{"AT+CPIN=\"1234\"\r\r\nOK\r\n"}},
		step{want: `AT+CSCA="+40722270333",145` + "\r", reply: []string{"\r\nOK\r\n"}},
		step{want: "AT+CMGS=19\r", reply: []string{"\r\n> "}},
		step{want: pdu + "\x1a", reply: []string{pdu + "\x1a\r\n+CMGS: 5\r\n\r\nOK\r\n", "+CLIP: \"+40722270333\",145\r\n"}},
	)
	ctx := context.Background()
	if _, err := e.Command(ctx, `AT+CPIN="1234"`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Command(ctx, `AT+CSCA="+40722270333",145`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SendPDU(ctx, 19, pdu, wait); err != nil {
		t.Fatal(err)
	}
	sink.next(t) // the +CLIP line has been traced once it is delivered
	mu.Lock()
	want := []call{{"+CPIN", nil}, {"+CSCA", nil}, {"+CMGS", nil}}
	if !slices.Equal(calls, want) {
		t.Errorf("observer calls = %v, want %v", calls, want)
	}
	mu.Unlock()

	var trace strings.Builder
	for _, entry := range logs.All() {
		fmt.Fprintln(&trace, entry.Message, entry.ContextMap())
	}
	for _, secret := range []string{"1234", "40722270333", pdu[4:]} {
		if strings.Contains(trace.String(), secret) {
			t.Errorf("trace leaks %q:\n%s", secret, trace.String())
		}
	}
	for _, shown := range []string{"AT+CPIN<redacted>", "+CMGS: 5", `"+407*****333"`} {
		if !strings.Contains(trace.String(), shown) {
			t.Errorf("trace lacks %q:\n%s", shown, trace.String())
		}
	}
}
