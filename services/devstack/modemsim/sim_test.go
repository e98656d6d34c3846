package modemsim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const bootURCs = "\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nSMS Ready\r\n"

// port is what a client needs from a tty or a TCP connection.
type port interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
}

// client talks to the simulator the way a gateway does, over a real port.
type client struct {
	t   *testing.T
	p   port
	buf []byte
}

// openPTY opens the symlink like a serial device node.
func openPTY(t *testing.T, link string) *client {
	t.Helper()
	f, err := os.OpenFile(link, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", link, err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &client{t: t, p: f}
}

func dialTCP(t *testing.T, addr net.Addr) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{t: t, p: c}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.p.Write([]byte(s)); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// fill reads until done says the buffer is complete.
func (c *client) fill(what string, done func([]byte) bool) {
	c.t.Helper()
	for !done(c.buf) {
		c.readMore(what)
	}
}

func (c *client) readMore(what string) {
	c.t.Helper()
	_ = c.p.SetReadDeadline(time.Now().Add(10 * time.Second))
	tmp := make([]byte, 1024)
	n, err := c.p.Read(tmp)
	c.buf = append(c.buf, tmp[:n]...)
	if err != nil {
		c.t.Fatalf("waiting for %s: %v; have %q", what, err, c.buf)
	}
}

// exact requires the next bytes from the modem to be want.
func (c *client) exact(want string) {
	c.t.Helper()
	c.fill(strconv.Quote(want), func(b []byte) bool { return len(b) >= len(want) })
	if got := string(c.buf[:len(want)]); got != want {
		c.t.Fatalf("got  %q\nwant %q", c.buf, want)
	}
	c.buf = c.buf[len(want):]
}

// cmd sends a command line and requires the exact answer.
func (c *client) cmd(line, want string) {
	c.t.Helper()
	c.send(line + "\r")
	c.exact(want)
}

// lines reads until a final result code and returns the non-empty lines,
// dropping NULs, the way a tolerant AT parser would.
func (c *client) lines() []string {
	c.t.Helper()
	var out []string
	for {
		for {
			i := bytes.IndexAny(c.buf, "\r\n")
			if i < 0 {
				break
			}
			l := strings.ReplaceAll(string(c.buf[:i]), "\x00", "")
			c.buf = c.buf[i+1:]
			if l == "" {
				continue
			}
			out = append(out, l)
			if isFinal(l) {
				return out
			}
		}
		c.readMore("a final result")
	}
}

// prompt reads until the "> " prompt, tolerating URCs before it.
func (c *client) prompt() {
	c.t.Helper()
	c.fill("prompt", func(b []byte) bool { return strings.Contains(string(b), "\r\n> ") })
	i := strings.Index(string(c.buf), "\r\n> ")
	c.buf = c.buf[i+4:]
}

func isFinal(l string) bool {
	return l == "OK" || l == "ERROR" || strings.HasPrefix(l, "+CME ERROR:") || strings.HasPrefix(l, "+CMS ERROR:")
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startPTY(t *testing.T, cfg Config) (*Sim, string) {
	t.Helper()
	s := New(cfg)
	t.Cleanup(func() { _ = s.Close() })
	link := filepath.Join(t.TempDir(), "usb-Quectel_EC25-if02-port0")
	slave, err := s.ServePTY(link)
	if err != nil {
		t.Fatalf("serve pty: %v", err)
	}
	if got, err := os.Readlink(link); err != nil || got != slave {
		t.Fatalf("link -> %q, %v; want %q", got, err, slave)
	}
	return s, link
}

func startTCP(t *testing.T, cfg Config) (*Sim, net.Addr) {
	t.Helper()
	s := New(cfg)
	t.Cleanup(func() { _ = s.Close() })
	addr, err := s.ServeTCP("127.0.0.1:0")
	if err != nil {
		t.Fatalf("serve tcp: %v", err)
	}
	return s, addr
}

func TestInitFlowOverPTY(t *testing.T) {
	s, link := startPTY(t, Config{})
	c := openPTY(t, link)
	if err := s.WaitConnected(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	c.exact(bootURCs)
	steps := []struct{ send, want string }{
		{"\x1b", "\x1b\r"}, // the ESC flush of §1.2 step 0: echoed, not answered
		{"AT", "AT\r\r\nOK\r\n"},
		{"at", "at\r\r\nOK\r\n"},
		{"ATZ", "ATZ\r\r\nOK\r\n"},
		{"ATE0", "ATE0\r\r\nOK\r\n"}, // echoed: echo was on when it arrived
		{"ATV1", "\r\nOK\r\n"},
		{"AT+CMEE=1", "\r\nOK\r\n"},
		{"AT+CMEE?", "\r\n+CMEE: 1\r\n\r\nOK\r\n"},
		{"AT+CFUN?", "\r\n+CFUN: 1\r\n\r\nOK\r\n"},
		{"AT+CPIN?", "\r\n+CPIN: READY\r\n\r\nOK\r\n"},
		{"ATI", "\r\nQuectel\r\n\r\nEC25\r\n\r\nRevision: EC25EFAR06A06M4G\r\n\r\nOK\r\n"},
		{"AT+CGMI", "\r\nQuectel\r\n\r\nOK\r\n"},
		{"AT+CGMM", "\r\nEC25\r\n\r\nOK\r\n"},
		{"AT+CGMR", "\r\nEC25EFAR06A06M4G\r\n\r\nOK\r\n"},
		{"AT+CGSN", "\r\n490154203237518\r\n\r\nOK\r\n"},
		{"AT+CIMI", "\r\n001010123456789\r\n\r\nOK\r\n"},
		{"AT+QCCID", "\r\n+QCCID: 89001012345678901234\r\n\r\nOK\r\n"},
		{"AT+GCAP", "\r\n+GCAP: +CGSM,+DS,+ES\r\n\r\nOK\r\n"},
		{"AT+CMGF=?", "\r\n+CMGF: (0-1)\r\n\r\nOK\r\n"},
		{"AT+CMGF=0", "\r\nOK\r\n"},
		{`AT+CSCS="GSM"`, "\r\nOK\r\n"},
		{"AT+CSCS?", "\r\n+CSCS: \"GSM\"\r\n\r\nOK\r\n"},
		{"AT+CSMS=0", "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n"},
		{"AT+CPMS=?", "\r\n+CPMS: (\"SM\",\"ME\",\"MT\"),(\"SM\",\"ME\",\"MT\"),(\"SM\",\"ME\",\"MT\")\r\n\r\nOK\r\n"},
		{`AT+CPMS="SM","SM","SM"`, "\r\n+CPMS: 0,30,0,30,0,30\r\n\r\nOK\r\n"},
		{"AT+CSCA?", "\r\n+CSCA: \"+40722270333\",145\r\n\r\nOK\r\n"},
		{"AT+CREG?", "\r\n+CREG: 0,1\r\n\r\nOK\r\n"},
		{"AT+CEREG?", "\r\n+CEREG: 0,1\r\n\r\nOK\r\n"},
		{"AT+COPS?", "\r\n+COPS: 0,0,\"SIM Sim\",7\r\n\r\nOK\r\n"},
		{"AT+CSQ", "\r\n+CSQ: 23,99\r\n\r\nOK\r\n"},
		{"AT+CNMI=?", "\r\n+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)\r\n\r\nOK\r\n"},
		{"AT+CNMI=2,1,0,1,0", "\r\nOK\r\n"},
		{"AT+CNMI=3,1,0,1,0", "\r\n+CMS ERROR: 303\r\n"},
		{"AT+CMMS=1", "\r\nOK\r\n"},
		{"AT+FOO", "\r\nERROR\r\n"},
		{"AT+CMEE=1;+CMGF=0", "\r\nOK\r\n"},
		{"ATE0V1", "\r\nOK\r\n"},
		{"AT+CSQ;+FOO;+CGMI", "\r\n+CSQ: 23,99\r\n\r\nERROR\r\n"}, // the first error ends the line
		{"AT+CMEE=2", "\r\nOK\r\n"},
		{"AT+CPIN=\"1234\"", "\r\n+CME ERROR: operation not allowed\r\n"},
		{"AT+CMEE=0", "\r\nOK\r\n"},
		{"AT+CPIN=\"1234\"", "\r\nERROR\r\n"},
		{"ATV0", "0\r"},
		{"AT+CSQ", "+CSQ: 23,99\r\n0\r"},
		{"AT+FOO", "4\r"},
		{"ATV1", "\r\nOK\r\n"},
		{"ATZ", "\r\nOK\r\n"},
		{"AT", "AT\r\r\nOK\r\n"}, // ATZ restored echo
	}
	for _, st := range steps {
		c.cmd(st.send, st.want)
	}
	// CRLF terminators are tolerated; the LF is echoed with the line.
	c.send("AT+CGMM\r\n")
	c.exact("AT+CGMM\r\r\nEC25\r\n\r\nOK\r\n\n")
	if got := s.Stats().Commands; got != len(steps) { // all but the flush, plus CGMM
		t.Errorf("Commands = %d, want %d", got, len(steps))
	}
}

func TestPINFlowOverTCP(t *testing.T) {
	s, addr := startTCP(t, Config{PIN: "1234"})
	c := dialTCP(t, addr)
	c.exact("\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: SIM PIN\r\n")
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	c.cmd("AT+CMEE=1", "\r\nOK\r\n")
	c.cmd("AT+CPIN?", "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n")
	c.cmd("AT+CIMI", "\r\n+CME ERROR: 11\r\n")
	c.cmd("AT+CMGS=19", "\r\n+CMS ERROR: 314\r\n")
	c.cmd("AT+CPMS?", "\r\n+CMS ERROR: 314\r\n")
	c.cmd("AT+CREG?", "\r\n+CREG: 0,0\r\n\r\nOK\r\n")
	c.cmd(`AT+CPIN="0000"`, "\r\n+CME ERROR: 16\r\n")
	c.cmd(`AT+CPIN="1234"`, "\r\nOK\r\n\r\n+CPIN: READY\r\n\r\nSMS Ready\r\n")
	c.cmd("AT+CPIN?", "\r\n+CPIN: READY\r\n\r\nOK\r\n")
	c.cmd("AT+CIMI", "\r\n001010123456789\r\n\r\nOK\r\n")
	c.cmd("AT+CREG?", "\r\n+CREG: 0,1\r\n\r\nOK\r\n")

	// A reboot locks the SIM again; three wrong PINs then lock it for good.
	s.Reboot()
	c.exact("\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: SIM PIN\r\n")
	c.cmd("AT+CMEE=1", "AT+CMEE=1\r\r\nOK\r\n")
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	for range 3 {
		c.cmd(`AT+CPIN="9999"`, "\r\n+CME ERROR: 16\r\n")
	}
	c.cmd("AT+CPIN?", "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n")
	c.cmd(`AT+CPIN="1234"`, "\r\n+CME ERROR: 12\r\n")
	c.cmd("AT+CIMI", "\r\n+CME ERROR: 12\r\n")
}

func TestRegistrationDelay(t *testing.T) {
	// The delay only has to outlast two command round trips.
	const delay = 2 * time.Second
	s, addr := startTCP(t, Config{RegistrationDelay: delay})
	c := dialTCP(t, addr)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	c.cmd("AT+CMEE=1", "\r\nOK\r\n")
	c.cmd("AT+CREG?", "\r\n+CREG: 0,2\r\n\r\nOK\r\n")
	c.cmd("AT+CMGS=19", "\r\n> ")
	c.send(pduHello + "\x1a")
	c.exact("\r\n+CMS ERROR: 331\r\n")
	c.cmd("AT+CREG=1", "\r\nOK\r\n")
	c.exact("\r\n+CREG: 1\r\n") // the URC when the search ends
	c.cmd("AT+CREG?", "\r\n+CREG: 1,1\r\n\r\nOK\r\n")

	s.SetRegistered(false)
	c.exact("\r\n+CREG: 2\r\n")
	c.cmd("AT+CSQ", "\r\n+CSQ: 99,99\r\n\r\nOK\r\n")
	c.cmd("AT+COPS?", "\r\n+COPS: 0\r\n\r\nOK\r\n")
	s.SetRegistered(true)
	c.exact("\r\n+CREG: 1\r\n")
	c.cmd("AT+CREG=2;+CREG?", "\r\n+CREG: 2,1,\"00C3\",\"01A2B3C4\",7\r\n\r\nOK\r\n")
}

func TestSendSinglePartOverPTYWithEcho(t *testing.T) {
	const latency = 20 * time.Millisecond
	s, link := startPTY(t, Config{PartLatency: latency})
	c := openPTY(t, link)
	c.exact(bootURCs)
	c.cmd("AT+CMGS=19", "AT+CMGS=19\r\r\n> ")
	c.send(pduHello + "\x1a")
	c.exact(pduHello + "\x1a\r\n+CMGS: 0\r\n\r\nOK\r\n")
	if err := s.WaitReceived(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	got := s.Received()[0]
	want := Message{To: "+40726369867", Text: "hello", Parts: 1, Refs: []int{0}, Encoding: GSM7, ValidityPeriod: 96 * time.Hour, At: got.At}
	if !equalMessage(got, want) {
		t.Errorf("received %+v\nwant     %+v", got, want)
	}
	subs := s.Submits()
	if len(subs) != 1 || subs[0].PDU != pduHello || subs[0].Length != 19 || subs[0].Result != "+CMGS: 0" || subs[0].TPDU == nil || subs[0].TPDU.Text != "hello" {
		t.Errorf("submits = %+v", subs)
	}
	if n := len(s.CMGSStarts()); n != 1 {
		t.Errorf("CMGSStarts has %d entries, want 1", n)
	}
	if b := s.CMGSBusy(); b < latency {
		t.Errorf("CMGSBusy = %v, less than the %v latency", b, latency)
	}
}

func equalMessage(a, b Message) bool {
	return a.To == b.To && a.Text == b.Text && a.Parts == b.Parts && slices.Equal(a.Refs, b.Refs) &&
		a.Encoding == b.Encoding && a.StatusReport == b.StatusReport && a.ValidityPeriod == b.ValidityPeriod && a.At.Equal(b.At)
}

func TestSendTwoPartsOverTCP(t *testing.T) {
	s, addr := startTCP(t, Config{})
	s.SetNextMR(255) // the MR wraps between the parts
	c := dialTCP(t, addr)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	c.cmd("AT+CMGS=153", "\r\n> ")
	c.send(pduPart1 + "\x1a")
	c.exact("\r\n+CMGS: 255\r\n\r\nOK\r\n")
	if n := len(s.Received()); n != 0 {
		t.Fatalf("%d messages complete after part 1", n)
	}
	c.cmd("AT+CMGS=34", "\r\n> ")
	c.send(pduPart2 + "\x1a")
	c.exact("\r\n+CMGS: 0\r\n\r\nOK\r\n")
	if err := s.WaitReceived(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	got := s.Received()[0]
	want := Message{To: "+40726369867", Text: text170, Parts: 2, Refs: []int{255, 0}, Encoding: GSM7, At: got.At}
	if !equalMessage(got, want) {
		t.Errorf("received %+v\nwant     %+v", got, want)
	}
	if st := s.Stats(); st.Accepted != 2 || st.Prompts != 2 || st.Rejected != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestSendRejects(t *testing.T) {
	s, addr := startTCP(t, Config{})
	c := dialTCP(t, addr)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	c.cmd("AT+CMEE=1", "\r\nOK\r\n")

	c.cmd("AT+CMGS=18", "\r\n> ") // one short of the 19 TPDU octets
	c.send(pduHello + "\x1a")
	c.exact("\r\n+CMS ERROR: 304\r\n")

	c.cmd("AT+CMGS=19", "\r\n> ")
	c.send("00XX" + pduHello[4:] + "\x1a")
	c.exact("\r\n+CMS ERROR: 304\r\n")

	c.cmd("AT+CMGS=19", "\r\n> ")
	c.send(pduHello[:10] + "\x1b") // ESC abandons the PDU
	c.exact("\r\nOK\r\n")

	c.cmd("AT+CMGS=999", "\r\n+CMS ERROR: 304\r\n")
	c.cmd("AT+CMGS", "\r\nERROR\r\n")
	c.cmd("AT+CMGF=1", "\r\nOK\r\n")
	c.cmd(`AT+CMGS="+40726369867"`, "\r\n+CMS ERROR: 302\r\n")
	c.cmd("AT+CMGF=0", "\r\nOK\r\n")

	c.cmd(`AT+CSCA=""`, "\r\nOK\r\n")
	c.cmd("AT+CMGS=19", "\r\n> ")
	c.send(pduHello + "\x1a")
	c.exact("\r\n+CMS ERROR: 330\r\n")
	c.cmd("AT+CMGS=19", "\r\n> ") // an SMSC in the PDU does without AT+CSCA
	c.send("07910427222222F2" + pduHello[2:] + "\x1a")
	c.exact("\r\n+CMGS: 0\r\n\r\nOK\r\n")

	subs := s.Submits()
	results := make([]string, len(subs))
	for i, sub := range subs {
		results[i] = sub.Result
	}
	want := []string{"+CMS ERROR: 304", "+CMS ERROR: 304", "+CMS ERROR: 330", "+CMGS: 0"}
	if !slices.Equal(results, want) {
		t.Errorf("results = %q, want %q", results, want)
	}
	if st := s.Stats(); st.Aborted != 1 || st.Rejected != 3 || st.Accepted != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestInjectedCMSErrors(t *testing.T) {
	s, addr := startTCP(t, Config{})
	c := dialTCP(t, addr)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	c.cmd("AT+CMEE=1", "\r\nOK\r\n")
	s.InjectCMSErrors(500, 1)
	s.InjectCMSErrors(42, 1)
	for _, want := range []string{"\r\n+CMS ERROR: 500\r\n", "\r\n+CMS ERROR: 42\r\n", "\r\n+CMGS: 0\r\n\r\nOK\r\n"} {
		c.cmd("AT+CMGS=19", "\r\n> ")
		c.send(pduHello + "\x1a")
		c.exact(want)
	}
	c.cmd("AT+CMEE=2", "\r\nOK\r\n")
	s.InjectCMSErrors(500, 1)
	c.cmd("AT+CMGS=19", "\r\n> ")
	c.send(pduHello + "\x1a")
	c.exact("\r\n+CMS ERROR: unknown error\r\n")
	if n := len(s.Received()); n != 1 {
		t.Errorf("%d messages received, want 1", n)
	}
}

func TestHangAndUnhang(t *testing.T) {
	s, link := startPTY(t, Config{})
	c := openPTY(t, link)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	ctx := ctxT(t)

	// A total hang: the AT is heard but not answered. If it were, its OK
	// would arrive before the CSQ answer below.
	s.Hang()
	c.send("AT\r")
	if err := s.WaitCommand(ctx, "AT", 2); err != nil {
		t.Fatal(err)
	}
	s.Unhang()
	c.cmd("AT+CSQ", "\r\n+CSQ: 23,99\r\n\r\nOK\r\n")

	// No prompt.
	s.HangCMGS(HangBeforePrompt)
	c.send("AT+CMGS=19\r")
	if err := s.WaitCommand(ctx, "AT+CMGS=", 1); err != nil {
		t.Fatal(err)
	}
	c.send("\x1b\r")
	s.Unhang()
	c.cmd("AT", "\r\nOK\r\n")

	// No result after Ctrl-Z, yet the message left.
	s.HangCMGS(HangAfterPDU)
	c.cmd("AT+CMGS=19", "\r\n> ")
	c.send(pduHello + "\x1a")
	if err := s.WaitReceived(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c.send("AT\r")
	if err := s.WaitCommand(ctx, "AT", 7); err != nil {
		t.Fatal(err)
	}
	s.Unhang()
	c.cmd("AT", "\r\nOK\r\n")
	if subs := s.Submits(); len(subs) != 1 || subs[0].Result != "" {
		t.Errorf("submits = %+v, want one without a result", subs)
	}
}

func TestUnplugReplug(t *testing.T) {
	s, link := startPTY(t, Config{})
	old := s.SlavePath()
	c := openPTY(t, link)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")

	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	_ = c.p.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.p.Read(make([]byte, 16)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on the unplugged port = %d, %v; want an I/O error", n, err)
	}
	if _, err := c.p.Write([]byte("AT\r")); err == nil {
		t.Fatal("write on the unplugged port succeeded")
	}
	if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("symlink still there: %v", err)
	}
	if err := s.Unplug(); err != nil {
		t.Fatalf("second unplug: %v", err)
	}

	if err := s.Replug(); err != nil {
		t.Fatal(err)
	}
	if err := s.Replug(); !errors.Is(err, ErrPlugged) {
		t.Fatalf("second replug = %v, want ErrPlugged", err)
	}
	if s.SlavePath() == old {
		t.Fatalf("replug reused %s while the old one is still open", old)
	}
	c2 := openPTY(t, link)
	c2.exact(bootURCs)
	c2.cmd("AT", "AT\r\r\nOK\r\n") // echo is back on
	if err := s.WaitConnected(ctxT(t), 2); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Boots != 2 {
		t.Errorf("Boots = %d, want 2", st.Boots)
	}
}

func TestChildProcessesDoNotInheritTheLine(t *testing.T) {
	startPTY(t, Config{})
	// A gateway started by a test must not hold the master open, or
	// Unplug could not hang the line up under it.
	out, err := exec.Command("sh", "-c", "ls -l /proc/$$/fd").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "ptmx") || strings.Contains(string(out), "inotify") {
		t.Fatalf("child inherited the simulator's descriptors:\n%s", out)
	}
}

func TestExclusiveModeEndsWithTheClient(t *testing.T) {
	s, link := startPTY(t, Config{})
	f, err := os.OpenFile(link, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ioctl := func(f *os.File, req uint) (v int, err error) {
		rc, err := f.SyscallConn()
		if err != nil {
			return 0, err
		}
		if cerr := rc.Control(func(fd uintptr) {
			if req == unix.TIOCGEXCL {
				v, err = unix.IoctlGetInt(int(fd), req)
			} else {
				err = unix.IoctlSetInt(int(fd), req, 0)
			}
		}); cerr != nil {
			return 0, cerr
		}
		return v, err
	}
	// What go.bug.st/serial does on open; it is not undone if the client dies.
	if _, err := ioctl(f, unix.TIOCEXCL); err != nil {
		t.Fatal(err)
	}
	if v, err := ioctl(f, unix.TIOCGEXCL); err != nil || v != 1 {
		t.Fatalf("TIOCGEXCL = %d, %v; want 1", v, err)
	}
	_ = f.Close()
	err = s.wait(ctxT(t), "exclusive mode cleared", func() bool {
		v, err := ioctl(s.pty.slave, unix.TIOCGEXCL)
		return err == nil && v == 0
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRebootDropsInFlightSend(t *testing.T) {
	s, addr := startTCP(t, Config{PartLatency: time.Hour})
	c := dialTCP(t, addr)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	c.cmd("AT+CMGS=19", "\r\n> ")
	c.send(pduHello + "\x1a")
	if err := s.WaitSubmits(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	s.Reboot()
	c.exact(bootURCs)
	c.cmd("AT", "AT\r\r\nOK\r\n")
	if subs, got := s.Submits(), s.Received(); subs[0].Result != "" || len(got) != 0 {
		t.Errorf("after reboot: submits %+v, received %+v", subs, got)
	}

	// The latency can be changed at runtime.
	s.SetPartLatency(0)
	c.cmd("AT+CMGS=19", "AT+CMGS=19\r\r\n> ")
	c.send(pduHello + "\x1a")
	c.exact(pduHello + "\x1a\r\n+CMGS: 0\r\n\r\nOK\r\n")
}

func TestNoiseDoesNotBreakSending(t *testing.T) {
	s, link := startPTY(t, Config{Seed: 7})
	s.SetURCNoise(true)
	s.SetLineNoise(true)
	c := openPTY(t, link)
	for _, l := range []string{"ATE0", "AT+CMEE=1", "AT+CMGF=0", "AT+CSQ", "AT+CREG?"} {
		c.send(l + "\r")
		if got := c.lines(); got[len(got)-1] != "OK" {
			t.Fatalf("%s: %q", l, got)
		}
	}
	for _, p := range []struct {
		pdu    string
		length string
	}{{pduPart1, "153"}, {pduPart2, "34"}} {
		c.send("AT+CMGS=" + p.length + "\r")
		c.prompt()
		c.send(p.pdu + "\x1a")
		if got := c.lines(); got[len(got)-1] != "OK" || !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "+CMGS: ") }) {
			t.Fatalf("CMGS: %q", got)
		}
	}
	if err := s.WaitReceived(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	if got := s.Received()[0].Text; got != text170 {
		t.Errorf("text = %q", got)
	}
	if n := s.Stats().NoiseURCs; n < 2 {
		t.Errorf("only %d noise URCs written", n)
	}
}

func TestTCPServesOneClientAtATime(t *testing.T) {
	s, addr := startTCP(t, Config{})
	c1 := dialTCP(t, addr)
	c1.exact(bootURCs)
	c2 := dialTCP(t, addr)
	c2.send("AT+CGMM\r") // waits in the socket until c1 leaves
	c1.cmd("AT+CGMI", "AT+CGMI\r\r\nQuectel\r\n\r\nOK\r\n")
	_ = c1.p.Close()
	c2.exact("AT+CGMM\r\r\nEC25\r\n\r\nOK\r\n")
	if err := s.WaitConnected(ctxT(t), 2); err != nil {
		t.Fatal(err)
	}

	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	_ = c2.p.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c2.p.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after unplug: %v, want EOF or reset", err)
	}
	if err := s.Replug(); err != nil {
		t.Fatal(err)
	}
	c3 := dialTCP(t, addr)
	c3.exact(bootURCs)
}

func TestWaitHonoursContext(t *testing.T) {
	s := New(Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.WaitCommand(ctx, "AT", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitCommand = %v, want DeadlineExceeded", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReceived(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitReceived after Close = %v, want ErrClosed", err)
	}
	if _, err := s.ServePTY(filepath.Join(t.TempDir(), "tty")); !errors.Is(err, ErrClosed) {
		t.Errorf("ServePTY after Close = %v, want ErrClosed", err)
	}
}

// FuzzModemInput feeds arbitrary bytes to the command parser and the PDU
// path: whatever arrives on the line, the modem must not panic.
func FuzzModemInput(f *testing.F) {
	for _, seed := range []string{
		"AT\r", "ATE0V1Q0X4&C1&D2\r", "AT+CMGS=19\r" + pduHello + "\x1a", "AT+CMGS=5\r00\x1b",
		"AT+CPIN=\"1234\";+CPIN?\r", `AT+CPMS="SM",,"ME"` + "\r", "AT+CNMI=2,1,0,1,0,9\r",
		"AT+CFUN=1,1\rAT\r", "AT+CREG=2;+CREG?;+CEREG?\r", "AT+CSCA=\"\",\r", "xxAT+COPS=?\r\n",
		"AT&\r", "AT+\r", "AT+CMEE=2;+CIMI;+CSCS=\"X\"\r", "\xc0\xb3\xa2\vat0\r",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(Config{PIN: "1234", RegistrationDelay: time.Hour})
		defer s.Close()
		s.mu.Lock()
		s.plugged = true
		s.bootLocked()
		s.mu.Unlock()
		for len(data) > 0 {
			s.mu.Lock()
			n, j := s.consumeLocked(data)
			s.out = nil
			s.mu.Unlock()
			data = data[n:]
			if j != nil {
				s.network(j)
			}
		}
	})
}
