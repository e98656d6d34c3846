package pdu

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// Published vectors (modem-protocol.md §2.11, §5.2, §5.4, §8.3).
const (
	// warthog618/sms README: SMS-DELIVER with SMSC, "+61503975312: Woot".
	hexWoot = "07911614220991F1040B911605935713F200008140806113912304D7F79B0E"
	// gammu smsd-incoming-cds.c, §5.2 (+CDS: 25).
	hexCDS = "07914875215652F006360B914892347527F3817003018104808170030181448000"
	// gammu smsd-incoming-cmt.c, §5.4 (+CMT: ,23).
	hexCMT = "07918497483252F0040B918496445078F700007121320144744004D4F29C0E"
	// §2.11 example 3, part 2 with a 16-bit reference (AT+CMGS=35).
	hexEx3Ref16 = "0041000B910427369668F700001906080412340202335ACD76C3E56031D98C56B3DD7039"
	// warthog618/sms README: SMS-SUBMIT "Hello world" to 12345, TP-MR 1.
	hexHelloWorld = "010105912143f500000bc8329bfd06dddf723619"
	// §2.4: alphanumeric OA "Info" in a DELIVER, text "Test".
	hexAlnum = "04" + "07D049B7F90D" + "0000" + "71213201447440" + "04D4F29C0E"
)

// warthog618/sms README: a 3-part UCS2 SMS-DELIVER without SMSC prefix.
var hexWarthogConcat = []string{
	"400B911605935713F20008814080611373238C050003C00301007400680069007300200069007300200061002000760065007200790020006C006F006E00670020006D0065007300730061006700650020007400680061007400200064006F006500730020006E006F0074002000660069007400200069006E00200061002000730069006E0067006C006500200053004D00530020006D0065007300730061",
	"400B911605935713F20008814080611373238C050003C0030200670065002C0020006100740020006C0065006100730074002000690074002000770069006C006C002000690066002000490020006B00650065007000200061006400640069006E00670020006D006F0072006500200074006F0020006900740020006100730020003100360030002000630068006100720061006300740065007200730020",
	"440B911605935713F200088140806113832344050003C00303006900730020006D006F007200650020007400680061006E00200079006F00750020006D00690067006800740020007400680069006E006B0020D83DDE01",
}

func zone(hours int) *time.Location { return time.FixedZone("", hours*3600) }

func mustSplit(t testing.TB, h string, tpduLen int) (Address, []byte) {
	t.Helper()
	smsc, tpdu, err := SplitSMSC(h, tpduLen)
	if err != nil {
		t.Fatalf("SplitSMSC(%s, %d): %v", h, tpduLen, err)
	}
	return smsc, tpdu
}

func sameInstantAndZone(a, b time.Time) bool {
	_, oa := a.Zone()
	_, ob := b.Zone()
	return a.Equal(b) && oa == ob
}

func TestDecodeDeliverVectors(t *testing.T) {
	tests := []struct {
		name    string
		hex     string
		tpduLen int
		smsc    Address
		from    Address
		scts    time.Time
		text    string
	}{
		{
			name: "warthog618 Woot", hex: hexWoot, tpduLen: 23,
			smsc: Address{TOA: 0x91, Value: "+61412290191"},
			from: Address{TOA: 0x91, Value: "+61503975312"},
			scts: time.Date(2018, 4, 8, 16, 31, 19, 0, zone(8)),
			text: "Woot",
		},
		{
			name: "+CMT §5.4", hex: hexCMT, tpduLen: 23,
			smsc: Address{TOA: 0x91, Value: "+48798423250"},
			from: Address{TOA: 0x91, Value: "+48694405877"},
			scts: time.Date(2017, 12, 23, 10, 44, 47, 0, zone(1)),
			text: "Test",
		},
		{
			name: "alphanumeric sender §2.4", hex: hexAlnum, tpduLen: 21,
			from: Address{TOA: 0xD0, Value: "Info"},
			scts: time.Date(2017, 12, 23, 10, 44, 47, 0, zone(1)),
			text: "Test",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			smsc, tpdu := mustSplit(t, tt.hex, tt.tpduLen)
			if smsc != tt.smsc {
				t.Errorf("SMSC %+v, want %+v", smsc, tt.smsc)
			}
			d, err := DecodeDeliver(tpdu)
			if err != nil {
				t.Fatal(err)
			}
			if d.From != tt.from || d.Text != tt.text || d.DCS != 0 || d.PID != 0 || d.Concat != nil {
				t.Errorf("got %+v", d)
			}
			if !sameInstantAndZone(d.SCTS, tt.scts) {
				t.Errorf("SCTS %v, want %v", d.SCTS, tt.scts)
			}
		})
	}
}

func TestDecodeDeliverConcatenatedUCS2(t *testing.T) {
	want := "this is a very long message that does not fit in a single SMS message, at least it will if I keep adding more to it as 160 characters is more than you might think 😁"
	texts := make([]string, 3)
	// Decode out of order, as parts may arrive.
	for _, i := range []int{2, 0, 1} {
		h := hexWarthogConcat[i]
		_, tpdu := mustSplit(t, h, len(h)/2)
		d, err := DecodeDeliver(tpdu)
		if err != nil {
			t.Fatalf("part %d: %v", i+1, err)
		}
		if c := d.Concat; c == nil || *c != (Concat{Ref: 0xC0, Total: 3, Seq: i + 1}) {
			t.Fatalf("part %d: concat %+v", i+1, d.Concat)
		}
		if d.DCS.Encoding() != UCS2 || d.From.Value != "+61503975312" {
			t.Fatalf("part %d: %+v", i+1, d)
		}
		texts[d.Concat.Seq-1] = d.Text
	}
	if got := strings.Join(texts, ""); got != want {
		t.Fatalf("reassembled %q", got)
	}
}

func TestDecodeSubmitVectors(t *testing.T) {
	s, err := DecodeSubmit(mustHex(t, hexHelloWorld))
	if err != nil {
		t.Fatal(err)
	}
	if s.MR != 1 || s.To != (Address{TOA: 0x91, Value: "+12345"}) || s.Text != "Hello world" ||
		s.Validity != 0 || s.StatusReport || s.Header != nil {
		t.Fatalf("got %+v", s)
	}

	_, tpdu := mustSplit(t, hexEx3Ref16, 35)
	s, err = DecodeSubmit(tpdu)
	if err != nil {
		t.Fatal(err)
	}
	if s.Concat == nil || *s.Concat != (Concat{Ref: 0x1234, Ref16: true, Total: 2, Seq: 2}) {
		t.Fatalf("concat %+v", s.Concat)
	}
	if s.Text != "34567890123456789" || s.To.Value != "+40726369867" {
		t.Fatalf("got %+v", s)
	}
}

func TestDecodeStatusReportCDS(t *testing.T) {
	smsc, tpdu := mustSplit(t, hexCDS, 25)
	if smsc != (Address{TOA: 0x91, Value: "+84571265250"}) {
		t.Errorf("SMSC %+v", smsc)
	}
	r, err := DecodeStatusReport(tpdu)
	if err != nil {
		t.Fatal(err)
	}
	if r.MR != 0x36 || r.Recipient != (Address{TOA: 0x91, Value: "+84294357723"}) || r.Status != 0 || !r.Status.Delivered() {
		t.Errorf("got %+v", r)
	}
	if want := time.Date(2018, 7, 30, 10, 18, 40, 0, zone(2)); !sameInstantAndZone(r.SCTS, want) {
		t.Errorf("SCTS %v, want %v", r.SCTS, want)
	}
	if want := time.Date(2018, 7, 30, 10, 18, 44, 0, zone(2)); !sameInstantAndZone(r.Discharge, want) {
		t.Errorf("DT %v, want %v", r.Discharge, want)
	}
}

func TestDecodeStatusReportOptionalFields(t *testing.T) {
	_, base := mustSplit(t, hexCDS, 25)
	tests := []struct {
		name string
		tail string
		text string
	}{
		{"PI with PID, DCS and UD", "07" + "00" + "00" + "04D4F29C0E", "Test"},
		{"PI extension octet", "8700" + "00" + "00" + "04D4F29C0E", "Test"},
		{"PI announcing nothing", "00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeStatusReport(append(bytes.Clone(base), mustHex(t, tt.tail)...))
			if err != nil {
				t.Fatal(err)
			}
			if r.Text != tt.text || r.MR != 0x36 {
				t.Fatalf("got %+v", r)
			}
		})
	}
}

func TestStatusClasses(t *testing.T) {
	tests := []struct {
		st                         Status
		delivered, pending, failed bool
	}{
		{0x00, true, false, false},
		{0x01, true, false, false},
		{0x02, true, false, false},
		{0x1F, true, false, false},
		{0x20, false, true, false},
		{0x25, false, true, false},
		{0x3F, false, true, false},
		{0x40, false, false, true},
		{0x46, false, false, true}, // validity period expired
		{0x60, false, false, true},
		{0x65, false, false, true},
		{0x80, false, false, true},
		{0xFF, false, false, true},
	}
	for _, tt := range tests {
		if tt.st.Delivered() != tt.delivered || tt.st.Pending() != tt.pending || tt.st.Failed() != tt.failed {
			t.Errorf("status %#02x: delivered %v pending %v failed %v", byte(tt.st), tt.st.Delivered(), tt.st.Pending(), tt.st.Failed())
		}
	}
}

func TestDCSEncoding(t *testing.T) {
	tests := []struct {
		dcs  DCS
		want Encoding
	}{
		{0x00, GSM7}, {0x04, Binary}, {0x08, UCS2}, {0x0C, GSM7}, // 11 = reserved → GSM7
		{0x10, GSM7}, {0x11, GSM7}, {0x18, UCS2}, {0x14, Binary}, // class present
		{0x20, Binary}, {0x28, Binary}, // compressed
		{0x40, GSM7}, {0x48, UCS2}, {0x44, Binary}, // auto-delete group
		{0x80, GSM7}, {0xB8, GSM7}, // reserved groups
		{0xC0, GSM7}, {0xD8, GSM7}, {0xE0, UCS2}, {0xE8, UCS2}, // message waiting
		{0xF0, GSM7}, {0xF3, GSM7}, {0xF4, Binary}, {0xF7, Binary},
	}
	for _, tt := range tests {
		if got := tt.dcs.Encoding(); got != tt.want {
			t.Errorf("DCS %#02x: %v, want %v", byte(tt.dcs), got, tt.want)
		}
	}
}

func TestTimestampZones(t *testing.T) {
	tests := []struct {
		raw  string
		want time.Time
	}{
		{"81700301810480", time.Date(2018, 7, 30, 10, 18, 40, 0, zone(2))},
		{"81700301810440", time.Date(2018, 7, 30, 10, 18, 40, 0, zone(1))},
		{"8170030181040A", time.Date(2018, 7, 30, 10, 18, 40, 0, zone(-5))},
		{"81700301810400", time.Date(2018, 7, 30, 10, 18, 40, 0, time.UTC)},
		{"81700301810422", time.Date(2018, 7, 30, 10, 18, 40, 0, time.FixedZone("", 5*3600+30*60))}, // India: 22 quarters
		{"8170030181048B", time.Date(2018, 7, 30, 10, 18, 40, 0, time.FixedZone("", -(9*3600+30*60)))},
		{"99211332959500", time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"42209201000000", time.Date(2024, 2, 29, 10, 0, 0, 0, time.UTC)}, // leap day
	}
	for _, tt := range tests {
		r := reader{b: mustHex(t, tt.raw)}
		got := r.timestamp("ts")
		if r.err != nil || !sameInstantAndZone(got, tt.want) {
			t.Errorf("%s: %v, %v; want %v", tt.raw, got, r.err, tt.want)
		}
	}
}

func TestDecodeHeaderSkipsUnknownIEs(t *testing.T) {
	// UDH: unknown IEI 0x70 (2 octets), national single shift 0x24, concat
	// 8-bit ref 5, part 1 of 2. 13 header octets = 104 bits → 15 septets
	// with one fill bit.
	udh := []byte{12, 0x70, 2, 0xAA, 0xBB, 0x24, 1, 1, 0x00, 3, 5, 2, 1}
	septets, _ := appendSeptets(nil, "hi")
	ud := packSeptets(bytes.Clone(udh), septets, 1)
	tpdu := append(mustHex(t, "440B911605935713F200008140806113912311"), ud...) // UDL 0x11 = 17
	d, err := DecodeDeliver(tpdu)
	if err != nil {
		t.Fatal(err)
	}
	if d.Text != "hi" {
		t.Errorf("text %q", d.Text)
	}
	if d.Concat == nil || *d.Concat != (Concat{Ref: 5, Total: 2, Seq: 1}) {
		t.Errorf("concat %+v", d.Concat)
	}
	ids := []byte{}
	for _, ie := range d.Header {
		ids = append(ids, ie.ID)
	}
	if !bytes.Equal(ids, []byte{0x70, 0x24, 0x00}) || !bytes.Equal(d.Header[0].Data, []byte{0xAA, 0xBB}) {
		t.Errorf("header %+v", d.Header)
	}
}

func TestDecodeUserDataVariants(t *testing.T) {
	const head = "0B911605935713F200" // OA, PID; then DCS
	const scts = "81408061139123"
	tests := []struct {
		name   string
		first  string
		dcs    string
		ud     string
		text   string
		data   []byte
		concat *Concat
		nIEs   int
	}{
		{name: "8-bit data", first: "04", dcs: "04", ud: "03010203", data: []byte{1, 2, 3}},
		{name: "8-bit with port header", first: "44", dcs: "04", ud: "08" + "06" + "05040B8423F0" + "FF", data: []byte{0xFF}, nIEs: 1},
		{name: "UCS2 with 16-bit concat", first: "44", dcs: "08", ud: "0B" + "06" + "0804ABCD0302" + "00410042", text: "AB", concat: &Concat{Ref: 0xABCD, Ref16: true, Total: 3, Seq: 2}, nIEs: 1},
		{name: "concat with seq 0 ignored", first: "44", dcs: "08", ud: "08" + "050003010200" + "0041", text: "A", nIEs: 1},
		{name: "concat with seq beyond total ignored", first: "44", dcs: "08", ud: "08" + "050003010203" + "0041", text: "A", nIEs: 1},
		{name: "concat with wrong IE length ignored", first: "44", dcs: "08", ud: "07" + "04" + "00020102" + "0041", text: "A", nIEs: 1},
		{name: "empty GSM7 text", first: "04", dcs: "00", ud: "00", text: ""},
		{name: "lone surrogate decodes to U+FFFD", first: "04", dcs: "08", ud: "02D83D", text: "\uFFFD"},
		{name: "trailing octets after UD ignored", first: "04", dcs: "00", ud: "04D4F29C0E0000", text: "Test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.first + head + tt.dcs + scts + tt.ud
			d, err := DecodeDeliver(mustHex(t, h))
			if err != nil {
				t.Fatalf("%s: %v", h, err)
			}
			if d.Text != tt.text || !bytes.Equal(d.Data, tt.data) || len(d.Header) != tt.nIEs {
				t.Errorf("got text %q data %X header %+v", d.Text, d.Data, d.Header)
			}
			if (d.Concat == nil) != (tt.concat == nil) || (d.Concat != nil && *d.Concat != *tt.concat) {
				t.Errorf("concat %+v, want %+v", d.Concat, tt.concat)
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	const oa = "0B911605935713F2"
	const scts = "81408061139123"
	deliver := func(first, dcs, ud string) string { return first + oa + "00" + dcs + scts + ud }
	_, cds := mustSplit(t, hexCDS, 25)
	tests := []struct {
		name   string
		decode string // deliver, submit, report
		hex    string
		target error
		why    string
	}{
		{"empty", "deliver", "", ErrMalformed, "first octet"},
		{"deliver as submit", "submit", deliver("04", "00", "00"), ErrWrongType, "TP-MTI 0"},
		{"submit as deliver", "deliver", hexHelloWorld, ErrWrongType, "TP-MTI 1"},
		{"deliver as status report", "report", deliver("04", "00", "00"), ErrWrongType, "want 2"},
		{"UDH longer than UD", "deliver", deliver("44", "00", "02"+"0500"), ErrMalformed, "UDH length 6"},
		{"IE overruns UDH", "deliver", deliver("44", "08", "04"+"03000501"), ErrMalformed, "overruns header"},
		{"truncated IE", "deliver", deliver("44", "08", "03"+"010000"), ErrMalformed, "truncated IE"},
		{"UDHI with empty UD", "deliver", deliver("44", "08", "00"), ErrMalformed, "no user data"},
		{"UDH septets exceed UDL", "deliver", deliver("44", "00", "06"+"050003010101"), ErrMalformed, "exceeds TP-UDL"},
		{"UCS2 odd length", "deliver", deliver("04", "08", "03004100"), ErrMalformed, "odd length"},
		{"GSM7 UDL over 160", "deliver", deliver("04", "00", "A1"+strings.Repeat("00", 141)), ErrMalformed, "161 septets"},
		{"UCS2 UDL over 140", "deliver", deliver("04", "08", "8D"+strings.Repeat("00", 141)), ErrMalformed, "141 octets"},
		{"UD shorter than UDL", "deliver", deliver("04", "00", "05D4F29C0E"), ErrMalformed, "TP-UD:"},
		{"SCTS not BCD", "deliver", "04" + oa + "0000" + "8140806113F123" + "00", ErrMalformed, "not BCD"},
		{"SCTS zone not BCD", "deliver", "04" + oa + "0000" + "814080611391A3" + "00", ErrMalformed, "zone octet"},
		{"SCTS month 13", "deliver", "04" + oa + "0000" + "81318061139123" + "00", ErrMalformed, "18-13-08"},
		{"SCTS 30 February", "deliver", "04" + oa + "0000" + "81200361139123" + "00", ErrMalformed, "18-02-30"},
		{"SCTS hour 24", "deliver", "04" + oa + "0000" + "81408042139123" + "00", ErrMalformed, "24:31"},
		{"SCTS minute 60", "deliver", "04" + oa + "0000" + "81408061069123" + "00", ErrMalformed, "16:60"},
		{"filler inside address", "deliver", "04" + "0B91160593571FF2" + "0000" + scts + "00", ErrMalformed, "TP-OA: filler"},
		{"address over 20 digits", "deliver", "04" + "1591" + strings.Repeat("11", 11) + "0000" + scts + "00", ErrMalformed, "21 digits"},
		{"status report PI announces missing fields", "report", hex.EncodeToString(cds) + "07", ErrMalformed, "TP-PID"},
		{"status report PI extension truncated", "report", hex.EncodeToString(cds) + "80", ErrMalformed, "TP-PI extension"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustHex(t, tt.hex)
			var err error
			switch tt.decode {
			case "deliver":
				_, err = DecodeDeliver(b)
			case "submit":
				_, err = DecodeSubmit(b)
			case "report":
				_, err = DecodeStatusReport(b)
			}
			if !errors.Is(err, tt.target) {
				t.Fatalf("err = %v, want %v", err, tt.target)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.why)
			}
		})
	}
}

// TestDecodeTruncatedPrefixes feeds every strict prefix of valid TPDUs: each
// cuts a mandatory field short and must fail cleanly.
func TestDecodeTruncatedPrefixes(t *testing.T) {
	type decoder func([]byte) error
	deliver := func(b []byte) error { _, err := DecodeDeliver(b); return err }
	submit := func(b []byte) error { _, err := DecodeSubmit(b); return err }
	report := func(b []byte) error { _, err := DecodeStatusReport(b); return err }
	_, woot := mustSplit(t, hexWoot, 23)
	_, cmt := mustSplit(t, hexCMT, 23)
	_, cds := mustSplit(t, hexCDS, 25)
	_, ex3 := mustSplit(t, hexEx3Ref16, 35)
	tests := []struct {
		name string
		tpdu []byte
		dec  decoder
	}{
		{"woot", woot, deliver},
		{"cmt", cmt, deliver},
		{"alnum", mustHex(t, hexAlnum), deliver},
		{"warthog concat 3", mustHex(t, hexWarthogConcat[2]), deliver},
		{"cds", cds, report},
		{"hello world", mustHex(t, hexHelloWorld), submit},
		{"example 3 16-bit", ex3, submit},
	}
	for _, tt := range tests {
		if err := tt.dec(tt.tpdu); err != nil {
			t.Fatalf("%s: full TPDU fails: %v", tt.name, err)
		}
		for n := range len(tt.tpdu) {
			if err := tt.dec(tt.tpdu[:n]); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: prefix of %d octets: err = %v", tt.name, n, err)
			}
		}
	}
}

func TestSplitSMSC(t *testing.T) {
	tests := []struct {
		name    string
		hex     string
		tpduLen int
		smsc    Address
		tpdu    string
		wantErr bool
	}{
		{name: "full SMSC", hex: "07914875215652F0" + "AB", tpduLen: 1, smsc: Address{TOA: 0x91, Value: "+84571265250"}, tpdu: "AB"},
		{name: "even SMSC digits", hex: "0691" + "2143658709" + "AB", tpduLen: 1, smsc: Address{TOA: 0x91, Value: "+1234567890"}, tpdu: "AB"},
		{name: "national SMSC", hex: "038121F3" + "AB", tpduLen: 1, smsc: Address{TOA: 0x81, Value: "123"}, tpdu: "AB"},
		{name: "empty SMSC field", hex: "00AB", tpduLen: 1, tpdu: "AB"},
		{name: "no SMSC field", hex: "ABCD", tpduLen: 2, tpdu: "ABCD"},
		{name: "lower case and CR", hex: "00ab\r\n", tpduLen: 1, tpdu: "AB"},
		{name: "bad hex", hex: "0G", tpduLen: 1, wantErr: true},
		{name: "odd hex", hex: "00A", tpduLen: 1, wantErr: true},
		{name: "zero length", hex: "00", tpduLen: 0, wantErr: true},
		{name: "shorter than length", hex: "00AB", tpduLen: 3, wantErr: true},
		{name: "SMSC length does not match", hex: "05914875AB", tpduLen: 1, wantErr: true},
		{name: "SMSC too long", hex: "0D" + strings.Repeat("11", 13) + "AB", tpduLen: 1, wantErr: true},
		{name: "filler inside SMSC", hex: "0391F121" + "AB", tpduLen: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			smsc, tpdu, err := SplitSMSC(tt.hex, tt.tpduLen)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || smsc != tt.smsc || !bytes.Equal(tpdu, mustHex(t, tt.tpdu)) {
				t.Fatalf("got %+v, %X, %v", smsc, tpdu, err)
			}
		})
	}
}
