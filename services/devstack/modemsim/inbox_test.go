package modemsim

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Vectors from modem-protocol.md §5.2 and §5.4 (gammu samples).
const (
	vecCMT = "07918497483252F0040B918496445078F700007121320144744004D4F29C0E"
	vecCDS = "07914875215652F006360B914892347527F3817003018104808170030181448000"
)

func TestDeliverAndStatusReportMatchVectors(t *testing.T) {
	scts := time.Date(2017, 12, 23, 10, 44, 47, 0, time.FixedZone("", 3600))
	p, err := deliverPDUs(Incoming{From: "+48694405877", Text: "Test", SCTS: scts}, 1)
	if err != nil || len(p) != 1 {
		t.Fatalf("deliverPDUs: %v, %d parts", err, len(p))
	}
	if got := withSMSC("+48798423250", p[0]); got != vecCMT {
		t.Errorf("deliver\n got %s\nwant %s", got, vecCMT)
	}
	cest := time.FixedZone("", 7200)
	sr := statusReportPDU(54, "+84294357723", time.Date(2018, 7, 30, 10, 18, 40, 0, cest), time.Date(2018, 7, 30, 10, 18, 44, 0, cest), 0)
	if got := withSMSC("+84571265250", sr); got != vecCDS {
		t.Errorf("status report\n got %s\nwant %s", got, vecCDS)
	}
}

func TestDeliverSplitsLikeAPhone(t *testing.T) {
	tests := []struct {
		name  string
		in    Incoming
		parts int
		udh   string // hex of the first part's header, "" for none
		dcs   byte
	}{
		{"gsm7 single", Incoming{From: "+40700000001", Text: strings.Repeat("a", 160)}, 1, "", 0},
		{"gsm7 extension", Incoming{From: "+40700000001", Text: strings.Repeat("€", 80)}, 1, "", 0},
		{"gsm7 extension split", Incoming{From: "+40700000001", Text: strings.Repeat("€", 81)}, 2, "050003070201", 0},
		{"ucs2 emoji", Incoming{From: "+40700000001", Text: strings.Repeat("😀", 35)}, 1, "", 8},
		{"ucs2 pairs never split", Incoming{From: "+40700000001", Text: "x" + strings.Repeat("😀", 40)}, 2, "050003070201", 8},
		{"16-bit ref", Incoming{From: "+40700000001", Text: strings.Repeat("b", 400), Ref16: true, Ref: 0x1234}, 3, "0608041234030100", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.in.Ref
			if ref == 0 {
				ref = 7
			}
			p, err := deliverPDUs(tc.in, ref)
			if err != nil {
				t.Fatal(err)
			}
			if len(p) != tc.parts {
				t.Fatalf("%d parts, want %d", len(p), tc.parts)
			}
			for i, tp := range p {
				if len(tp) > 19+140 {
					t.Errorf("part %d is %d octets", i+1, len(tp))
				}
			}
			// OA of "+40700000001" is 8 octets; PID, DCS, SCTS(7), UDL follow.
			const udAt = 1 + 8 + 2 + 7 + 1
			if got := p[0][1+8+1]; got != tc.dcs {
				t.Errorf("DCS %#x, want %#x", got, tc.dcs)
			}
			if tc.udh != "" {
				want := strings.TrimSuffix(tc.udh, "00")
				if tc.in.Ref16 {
					want = tc.udh[:len(tc.udh)-2]
				}
				if got := fmt.Sprintf("%X", p[0][udAt:udAt+len(want)/2]); got != strings.ToUpper(want) {
					t.Errorf("UDH %s, want %s", got, want)
				}
			}
			if tc.dcs == 8 {
				for i, tp := range p[:len(p)-1] {
					last := uint16(tp[len(tp)-2])<<8 | uint16(tp[len(tp)-1])
					if last >= 0xD800 && last < 0xDC00 {
						t.Errorf("part %d ends in a high surrogate", i+1)
					}
				}
			}
		})
	}
}

func TestStoredIncomingReadAndDelete(t *testing.T) {
	s, addr := startTCP(t, Config{StoreCapacity: 3})
	c := dialTCP(t, addr)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	c.cmd("AT+CNMI=2,1,0,1,0;+CMEE=1", "\r\nOK\r\n")
	c.cmd("AT+CPMS?", "\r\n+CPMS: \"ME\",0,3,\"ME\",0,3,\"ME\",0,3\r\n\r\nOK\r\n")

	// Two parts out of order, then a single: the third part of the store.
	if n, err := s.Deliver(Incoming{From: "+40711111111", Text: strings.Repeat("x", 200), Order: []int{2, 1}}); err != nil || n != 2 {
		t.Fatalf("deliver: %d, %v", n, err)
	}
	c.exact("\r\n+CMTI: \"ME\",1\r\n\r\n+CMTI: \"ME\",2\r\n")
	if _, err := s.Deliver(Incoming{From: "+40711111111", Text: "one"}); err != nil {
		t.Fatal(err)
	}
	c.exact("\r\n+CMTI: \"ME\",3\r\n")
	// The store is full: the next one is held by the network.
	if _, err := s.Deliver(Incoming{From: "+40722222222", Text: "held"}); err != nil {
		t.Fatal(err)
	}
	c.cmd("AT+CPMS?", "\r\n+CPMS: \"ME\",3,3,\"ME\",3,3,\"ME\",3,3\r\n\r\nOK\r\n")
	if st := s.Stats(); st.Held != 1 {
		t.Errorf("held %d, want 1", st.Held)
	}

	c.send("AT+CMGL=4\r")
	lines := c.lines()
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "+CMGL: 1,0,,") || !strings.HasPrefix(lines[4], "+CMGL: 3,0,,") {
		t.Fatalf("CMGL: %q", lines)
	}
	// Part 2 was stored first, at index 1: its header says so.
	if !strings.Contains(lines[1], "050003") {
		t.Errorf("first entry %q", lines[1])
	}
	c.send("AT+CMGL=0\r") // all read now
	if l := c.lines(); len(l) != 1 || l[0] != "OK" {
		t.Errorf("CMGL=0 after reading: %q", l)
	}
	c.send("AT+CMGR=3\r")
	if l := c.lines(); len(l) != 3 || !strings.HasPrefix(l[0], "+CMGR: 1,,") {
		t.Errorf("CMGR: %q", l)
	}
	c.send("AT+CMGR=9\r")
	if l := c.lines(); len(l) != 1 || l[0] != "+CMS ERROR: 321" {
		t.Errorf("CMGR of an empty index: %q", l)
	}
	c.buf = c.buf[1:] // the LF after the last CR
	// Deleting frees space; the held message is stored and announced.
	c.cmd("AT+CMGD=3", "\r\nOK\r\n\r\n+CMTI: \"ME\",3\r\n")
	c.cmd("AT+CMGD=1", "\r\nOK\r\n")
	c.cmd("AT+CMGD=1,4", "\r\nOK\r\n")
	c.cmd("AT+CPMS?", "\r\n+CPMS: \"ME\",0,3,\"ME\",0,3,\"ME\",0,3\r\n\r\nOK\r\n")
	c.cmd("AT+CMGD=x", "\r\nERROR\r\n")
	c.cmd("AT+CMGL=7", "\r\n+CMS ERROR: 302\r\n")
}

func TestDirectIncomingAndReports(t *testing.T) {
	s, addr := startTCP(t, Config{FailRecipient: "+40799999999"})
	c := dialTCP(t, addr)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	c.cmd("AT+CNMI=2,2,0,1,0", "\r\nOK\r\n")
	if _, err := s.Deliver(Incoming{From: "+40711111111", Text: "hi", Direct: true}); err != nil {
		t.Fatal(err)
	}
	c.send("AT\r") // the URC comes first
	l := c.lines()
	if len(l) != 3 || !strings.HasPrefix(l[0], "+CMT: ,") || l[2] != "OK" {
		t.Fatalf("+CMT: %q", l)
	}
	if len(s.Store()) != 0 {
		t.Error("a direct message was stored")
	}

	// A part sent with TP-SRR gets a +CDS; the fail recipient a failure.
	for _, tc := range []struct {
		pdu, st string
	}{
		{"0031000B910427369668F70000AA05E8329BFD06", "00"},
		{"0031000B910497999999F90000AA05E8329BFD06", "41"},
	} {
		c.send("AT+CMGS=19\r")
		c.fill("prompt", func(b []byte) bool { return strings.Contains(string(b), "> ") })
		c.buf = nil
		c.send(tc.pdu + "\x1a")
		l := c.lines()
		if len(l) != 2 || !strings.HasPrefix(l[0], "+CMGS: ") {
			t.Fatalf("CMGS: %q", l)
		}
		c.fill("+CDS", func(b []byte) bool { return strings.Count(string(b), "\r\n") >= 4 })
		rep := strings.Fields(string(c.buf))
		c.buf = nil
		if len(rep) != 3 || rep[0] != "+CDS:" || !strings.HasSuffix(rep[2], tc.st) {
			t.Errorf("report %q, want status %s", rep, tc.st)
		}
	}
}

func TestStoredReportsAndLoopback(t *testing.T) {
	s, addr := startTCP(t, Config{Number: "+40726369867"})
	c := dialTCP(t, addr)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	c.cmd("AT+CNMI=2,1,0,2,0", "\r\nOK\r\n")
	c.cmd("AT+CMGS=19", "\r\n> ")
	c.send("0031000B910427369668F70000AA05E8329BFD06\x1a")
	c.exact("\r\n+CMGS: 0\r\n\r\nOK\r\n")
	// The report is stored (+CDSI) and the SMS to our own number comes back.
	c.fill("two URCs", func(b []byte) bool { return strings.Count(string(b), "\r\n") >= 4 })
	got := string(c.buf)
	if !strings.Contains(got, "+CDSI: \"ME\",") || !strings.Contains(got, "+CMTI: \"ME\",") {
		t.Errorf("URCs %q", got)
	}
	if st := s.Stats(); st.Reports != 1 || st.Delivered != 1 || len(s.Store()) != 2 {
		t.Errorf("stats %+v, store %d", st, len(s.Store()))
	}
	s.SetLoopback(false)
	c.buf = nil
	c.cmd("AT+CMGS=19", "\r\n> ")
	c.send("0011000B910427369668F70000AA05E8329BFD06\x1a")
	c.exact("\r\n+CMGS: 1\r\n\r\nOK\r\n")
	if err := s.WaitReceived(ctxT(t), 2); err != nil {
		t.Fatal(err)
	}
	// The loopback is decided when the message completes, before WaitReceived returns.
	if st := s.Stats(); st.Loopbacks != 1 {
		t.Errorf("looped back with loopback off: %+v", st)
	}
}

func TestHangOnStopsBeforeTheCommandRuns(t *testing.T) {
	s, addr := startTCP(t, Config{})
	c := dialTCP(t, addr)
	c.exact(bootURCs)
	c.cmd("ATE0", "ATE0\r\r\nOK\r\n")
	if _, err := s.Deliver(Incoming{From: "+40711111111", Text: "x"}); err != nil {
		t.Fatal(err)
	}
	s.HangOn("at+cmgd")
	c.cmd("AT+CMGR=1", "\r\n+CMGR: 0,,")
	c.fill("CMGR", func(b []byte) bool { return strings.HasSuffix(string(b), "OK\r\n") })
	c.buf = nil
	c.send("AT+CMGD=1\r")
	if err := s.WaitCommand(ctxT(t), "AT+CMGD=1", 1); err != nil {
		t.Fatal(err)
	}
	if len(s.Store()) != 1 {
		t.Fatal("the command ran")
	}
	s.Unhang()
	c.cmd("AT+CMGD=1", "\r\nOK\r\n")
	if len(s.Store()) != 0 {
		t.Fatal("not deleted after Unhang")
	}
}
