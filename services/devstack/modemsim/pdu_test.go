package modemsim

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Vectors from modem-protocol.md §2.11.
const (
	pduHello     = "0011000B910427369668F70000AA05E8329BFD06"
	pduHelloNoVP = "0001000B910427369668F7000005E8329BFD06"
	pduEmoji     = "0011000B910427369668F70008AA0A004800690020D83DDE00"
	pduCyrillic  = "0011000B910427369668F70008AA0C041F04400438043204350442"
	pduPart1     = "0041000B910427369668F70000A00500032A02016031D98C56B3DD7039584C36A3D56C375C0E1693CD6835DB0D9783C564335ACD76C3E56031D98C56B3DD7039584C36A3D56C375C0E1693CD6835DB0D9783C564335ACD76C3E56031D98C56B3DD7039584C36A3D56C375C0E1693CD6835DB0D9783C564335ACD76C3E56031D98C56B3DD7039584C36A3D56C375C0E1693CD6835DB0D9783C564"
	pduPart2     = "0041000B910427369668F70000180500032A020266B49AED86CBC162B219AD66BBE172"
	pduPart2Wide = "0041000B910427369668F700001906080412340202335ACD76C3E56031D98C56B3DD7039"
	pduExt       = "0001000B910427369668F70000099B720DB4E1E1373E"
	// warthog618/sms README vector, with an SMSC field prepended.
	pduHelloWorld = "00" + "010105912143F500000BC8329BFD06DDDF723619"
)

var text170 = strings.Repeat("0123456789", 17)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeSubmitVectors(t *testing.T) {
	tests := []struct {
		name, pdu string
		want      TPDU
	}{
		{"hello VP 4 days", pduHello, TPDU{To: "+40726369867", Encoding: GSM7, ValidityPeriod: 96 * time.Hour, Text: "hello"}},
		{"hello no VP", pduHelloNoVP, TPDU{To: "+40726369867", Encoding: GSM7, Text: "hello"}},
		{"SRR", "0031000B910427369668F70000AA05E8329BFD06", TPDU{To: "+40726369867", StatusReport: true, Encoding: GSM7, ValidityPeriod: 96 * time.Hour, Text: "hello"}},
		{"UCS2 emoji", pduEmoji, TPDU{To: "+40726369867", DCS: 0x08, Encoding: UCS2, ValidityPeriod: 96 * time.Hour, Text: "Hi 😀"}},
		{"UCS2 Cyrillic", pduCyrillic, TPDU{To: "+40726369867", DCS: 0x08, Encoding: UCS2, ValidityPeriod: 96 * time.Hour, Text: "Привет"}},
		{"extension table", pduExt, TPDU{To: "+40726369867", Encoding: GSM7, Text: "€5 [x]"}},
		{"national number, MR", pduHelloWorld, TPDU{MR: 1, To: "+12345", Encoding: GSM7, Text: "Hello world"}},
		{"part 1", pduPart1, TPDU{To: "+40726369867", Encoding: GSM7, Concat: &Concat{Ref: 0x2A, Total: 2, Seq: 1}, Text: text170[:153]}},
		{"part 2", pduPart2, TPDU{To: "+40726369867", Encoding: GSM7, Concat: &Concat{Ref: 0x2A, Total: 2, Seq: 2}, Text: text170[153:]}},
		{"part 2, 16-bit ref", pduPart2Wide, TPDU{To: "+40726369867", Encoding: GSM7, Concat: &Concat{Ref: 0x1234, Total: 2, Seq: 2, Wide: true}, Text: text170[153:]}},
		{"SMSC given", "07910427222222F2" + pduHello[2:], TPDU{SMSC: "+40722222222", To: "+40726369867", Encoding: GSM7, ValidityPeriod: 96 * time.Hour, Text: "hello"}},
		{"8-bit data", "000100038121F30004" + "0341FF00", TPDU{To: "123", DCS: 0x04, Encoding: Octet, Text: "A\xff\x00"}},
		{"absolute VP skipped", "0019000B910427369668F7000042105291000000" + "05E8329BFD06", TPDU{To: "+40726369867", Encoding: GSM7, Text: "hello"}},
		{"empty text", "000100038121F3000000", TPDU{To: "123", Encoding: GSM7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeSubmit(mustHex(t, tt.pdu))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if (got.Concat == nil) != (tt.want.Concat == nil) || got.Concat != nil && *got.Concat != *tt.want.Concat {
				t.Errorf("concat = %+v, want %+v", got.Concat, tt.want.Concat)
			}
			got.Concat, tt.want.Concat = nil, nil
			if *got != tt.want {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestDecodeSubmitRejects(t *testing.T) {
	tests := []struct{ name, pdu string }{
		{"empty", ""},
		{"SMSC too long", "0C91" + strings.Repeat("00", 11)},
		{"SMS-DELIVER", "0004000B910427369668F7000005E8329BFD06"},
		{"truncated address", "0001000B910427"},
		{"digit F inside address", "0001000491F1F200000000"},
		{"bad filler", "00010003812143000000"},
		{"UDL beyond data", "0001000B910427369668F7000006E8329BFD06"},
		{"trailing octet", "0001000B910427369668F7000005E8329BFD0600"},
		{"UDL over 160", "000100038121F300" + "00A1" + strings.Repeat("00", 141)},
		{"reserved DCS", "000100038121F300800100"},
		{"compressed DCS", "000100038121F300200100"},
		{"odd UCS2", "000100038121F30008010A"},
		{"UDHL beyond UD", "004100038121F300040209AA"},
		{"truncated IE", "004100038121F30004020100"},
		{"concat seq 0", "004100038121F3000406050003010200"},
		{"concat seq > total", "004100038121F3000406050003010203"},
		{"concat element length", "004100038121F30004050400020102"},
		{"UDH longer than UDL", "004100038121F3000006" + "050003010201"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeSubmit(mustHex(t, tt.pdu))
			if !errors.Is(err, ErrPDU) {
				t.Fatalf("decode = %+v, %v; want ErrPDU", got, err)
			}
		})
	}
}

func TestCheckPDULength(t *testing.T) {
	if _, err := checkPDU(pduHello, 19, false); err != nil {
		t.Fatalf("length 19: %v", err)
	}
	for _, tc := range []struct {
		pdu    string
		length int
	}{{pduHello, 18}, {pduHello, 20}, {pduHello[:len(pduHello)-1], 19}, {"ZZ" + pduHello[2:], 19}, {"", 0}} {
		if _, err := checkPDU(tc.pdu, tc.length, false); !errors.Is(err, ErrPDU) {
			t.Errorf("checkPDU(%q, %d) = %v, want ErrPDU", tc.pdu, tc.length, err)
		}
	}
	if _, err := checkPDU(pduHello, 19, true); !errors.Is(err, ErrPDU) {
		t.Errorf("overflow accepted: %v", err)
	}
}

func TestGSM7Tables(t *testing.T) {
	if n := utf8.RuneCountInString("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"); n != 128 {
		t.Fatalf("default table has %d characters, want 128", n)
	}
	// Spot checks for the pitfalls in modem-protocol.md §2.8.
	for septet, want := range map[byte]rune{0x00: '@', 0x02: '$', 0x11: '_', 0x24: '¤', 0x5F: '§', 0x60: '¿', 0x7F: 'à'} {
		if gsm7Default[septet] != want {
			t.Errorf("septet 0x%02X = %q, want %q", septet, gsm7Default[septet], want)
		}
	}
	if got := gsm7Text([]byte{0x1B, 0x65, 0x1B, 0x1B, 0x1B, 0x41, 0x1B}); got != "€ A " {
		t.Errorf("escapes = %q", got)
	}
}

func TestRelativeVP(t *testing.T) {
	for v, want := range map[byte]time.Duration{
		0: 5 * time.Minute, 143: 12 * time.Hour, 144: 12*time.Hour + 30*time.Minute,
		167: 24 * time.Hour, 168: 48 * time.Hour, 196: 30 * 24 * time.Hour,
		197: 5 * 7 * 24 * time.Hour, 255: 63 * 7 * 24 * time.Hour,
	} {
		if got := relativeVP(v); got != want {
			t.Errorf("relativeVP(%d) = %v, want %v", v, got, want)
		}
	}
}

func FuzzDecodeSubmit(f *testing.F) {
	for _, p := range []string{pduHello, pduHelloNoVP, pduEmoji, pduCyrillic, pduPart1, pduPart2, pduPart2Wide, pduExt, pduHelloWorld} {
		f.Add(mustHex(f, p))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tp, err := decodeSubmit(b)
		if err != nil {
			if !errors.Is(err, ErrPDU) {
				t.Fatalf("error %v is not ErrPDU", err)
			}
			return
		}
		if c := tp.Concat; c != nil && (c.Seq < 1 || c.Seq > c.Total) {
			t.Fatalf("concat %+v accepted", c)
		}
		if tp.Encoding != Octet && !utf8.ValidString(tp.Text) {
			t.Fatalf("invalid UTF-8 text %q", tp.Text)
		}
	})
}
