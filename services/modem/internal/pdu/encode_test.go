package pdu

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ro is the destination of every §2.11 example.
var ro = Number{Digits: "40726369867", International: true}

const fourDays = 96 * time.Hour

// decodeParts checks the framing of encoded parts, decodes each with
// DecodeSubmit and returns the reassembled text and the decoded parts.
func decodeParts(t testing.TB, parts []Part) (string, []*Submit) {
	t.Helper()
	var text strings.Builder
	subs := make([]*Submit, len(parts))
	for i, p := range parts {
		if p.Seq != i+1 || p.Total != len(parts) {
			t.Fatalf("part %d: Seq/Total = %d/%d, want %d/%d", i, p.Seq, p.Total, i+1, len(parts))
		}
		if !strings.HasPrefix(p.Hex, "00") || len(p.Hex) != 2+2*p.TPDULen {
			t.Fatalf("part %d: hex %q does not hold SMSC 00 plus %d TPDU octets", i, p.Hex, p.TPDULen)
		}
		smsc, tpdu, err := SplitSMSC(p.Hex, p.TPDULen)
		if err != nil || smsc != (Address{}) {
			t.Fatalf("part %d: SplitSMSC = %+v, %v", i, smsc, err)
		}
		s, err := DecodeSubmit(tpdu)
		if err != nil {
			t.Fatalf("part %d: DecodeSubmit(%s): %v", i, p.Hex, err)
		}
		if len(parts) == 1 {
			if s.Concat != nil || s.Header != nil {
				t.Fatalf("single part carries a header: %+v", s.Header)
			}
		} else {
			c := s.Concat
			if c == nil || c.Ref16 || c.Seq != i+1 || c.Total != len(parts) || (i > 0 && c.Ref != subs[0].Concat.Ref) {
				t.Fatalf("part %d: concat %+v", i, c)
			}
		}
		subs[i] = s
		text.WriteString(s.Text)
	}
	return text.String(), subs
}

func TestEncodeWorkedExamples(t *testing.T) {
	warthogText := "this is a very long message that does not fit in a single SMS message, at least it will if I keep adding more to it as 160 characters is more than you might think 😁"
	tests := []struct {
		name string
		to   Number
		text string
		ref  uint8
		opt  Options
		want []string // hex including the 00 SMSC octet
		lens []int    // AT+CMGS=<len>
	}{
		{
			name: "§2.11 example 1: hello, VP 4 days",
			to:   ro, text: "hello", opt: Options{ValidityPeriod: fourDays},
			want: []string{"0011000B910427369668F70000AA05E8329BFD06"},
			lens: []int{19},
		},
		{
			name: "§2.11 example 1 without VP",
			to:   ro, text: "hello",
			want: []string{"0001000B910427369668F7000005E8329BFD06"},
			lens: []int{18},
		},
		{
			name: "§2.11 example 1 with delivery report",
			to:   ro, text: "hello", opt: Options{ValidityPeriod: fourDays, StatusReport: true},
			want: []string{"0031000B910427369668F70000AA05E8329BFD06"},
			lens: []int{19},
		},
		{
			name: "§2.11 example 2: UCS2 with emoji",
			to:   ro, text: "Hi 😀", opt: Options{ValidityPeriod: fourDays},
			want: []string{"0011000B910427369668F70008AA0A004800690020D83DDE00"},
			lens: []int{24},
		},
		{
			name: "§2.11 example 2, Cyrillic",
			to:   ro, text: "Привет", opt: Options{ValidityPeriod: fourDays},
			want: []string{"0011000B910427369668F70008AA0C041F04400438043204350442"},
			lens: []int{26},
		},
		{
			name: "§2.11 example 3: two concatenated GSM7 parts, ref 0x2A",
			to:   ro, text: strings.Repeat("0123456789", 17), ref: 0x2A,
			want: []string{
				"0041000B910427369668F70000A00500032A02016031D98C56B3DD7039584C36A3D56C375C0E1693CD6835DB0D9783C564335ACD76C3E56031D98C56B3DD7039584C36A3D56C375C0E1693CD6835DB0D9783C564335ACD76C3E56031D98C56B3DD7039584C36A3D56C375C0E1693CD6835DB0D9783C564335ACD76C3E56031D98C56B3DD7039584C36A3D56C375C0E1693CD6835DB0D9783C564",
				"0041000B910427369668F70000180500032A020266B49AED86CBC162B219AD66BBE172",
			},
			lens: []int{153, 34},
		},
		{
			name: "§2.11 example 4: extension characters",
			to:   ro, text: "€5 [x]",
			want: []string{"0001000B910427369668F70000099B720DB4E1E1373E"},
			lens: []int{21},
		},
		// warthog618/sms README vectors. Its encoder numbers TP-MR 1, 2, 3;
		// ours sends 00 and lets the modem assign it, so the second TPDU
		// octet differs and is patched to 00 here. Everything else is as
		// published.
		{
			name: "warthog618 README: Hello world to 12345",
			to:   Number{Digits: "12345", International: true}, text: "Hello world",
			want: []string{"00" + "0100" + "05912143F500000BC8329BFD06DDDF723619"},
			lens: []int{20},
		},
		{
			name: "warthog618 README: 3-part UCS2 ending in an emoji",
			to:   Number{Digits: "12345", International: true}, text: warthogText, ref: 1,
			want: []string{
				"00" + "4100" + "05912143F500088C050003010301007400680069007300200069007300200061002000760065007200790020006C006F006E00670020006D0065007300730061006700650020007400680061007400200064006F006500730020006E006F0074002000660069007400200069006E00200061002000730069006E0067006C006500200053004D00530020006D0065007300730061",
				"00" + "4100" + "05912143F500088C05000301030200670065002C0020006100740020006C0065006100730074002000690074002000770069006C006C002000690066002000490020006B00650065007000200061006400640069006E00670020006D006F0072006500200074006F0020006900740020006100730020003100360030002000630068006100720061006300740065007200730020",
				"00" + "4100" + "05912143F5000844050003010303006900730020006D006F007200650020007400680061006E00200079006F00750020006D00690067006800740020007400680069006E006B0020D83DDE01",
			},
			lens: []int{150, 150, 78},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := Encode(tt.to, tt.text, NewRefCounter(tt.ref), tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) != len(tt.want) {
				t.Fatalf("%d parts, want %d", len(parts), len(tt.want))
			}
			for i, p := range parts {
				if p.Hex != tt.want[i] {
					t.Errorf("part %d:\n got %s\nwant %s", i+1, p.Hex, tt.want[i])
				}
				if p.TPDULen != tt.lens[i] {
					t.Errorf("part %d: TPDULen %d, want %d", i+1, p.TPDULen, tt.lens[i])
				}
			}
			if got, _ := decodeParts(t, parts); got != tt.text {
				t.Errorf("round trip: got %q", got)
			}
		})
	}
}

func TestEncodeSegmentation(t *testing.T) {
	a := func(n int) string { return strings.Repeat("a", n) }
	s := func(n int) string { return strings.Repeat("ș", n) }
	romanian := "Alarmă: în seră s-a depășit pragul; verificați ușa. ĂÂÎȘȚ şţ"
	tests := []struct {
		name  string
		text  string
		enc   Encoding
		parts []string // decoded text of each part
	}{
		{"160 GSM chars fit one part", a(160), GSM7, []string{a(160)}},
		{"161 GSM chars need two", a(161), GSM7, []string{a(153), a(8)}},
		{"extension char costs two septets", a(159) + "€", GSM7, []string{a(153), a(6) + "€"}},
		{"extension char at 160 septets still fits", a(158) + "€", GSM7, []string{a(158) + "€"}},
		{"escape pair never split across parts", a(152) + "€" + a(10), GSM7, []string{a(152), "€" + a(10)}},
		{"extension pair exactly at the part end", a(151) + "€" + a(10), GSM7, []string{a(151) + "€", a(10)}},
		{"70 UCS2 chars fit one part", s(70), UCS2, []string{s(70)}},
		{"71 UCS2 chars need two", s(71), UCS2, []string{s(67), s(4)}},
		{"emoji costs two units", a(68) + "😀", UCS2, []string{a(68) + "😀"}},
		{"emoji over 70 units", a(69) + "😀", UCS2, []string{a(67), "aa😀"}},
		{"surrogate pair never split across parts", a(66) + "😀" + a(10), UCS2, []string{a(66), "😀" + a(10)}},
		{"surrogate pair exactly at the part end", a(65) + "😀" + a(10), UCS2, []string{a(65) + "😀", a(10)}},
		{"Romanian diacritics force UCS2", romanian, UCS2, []string{romanian}},
		{"every GSM character", allDefault + allExtension, GSM7, []string{allDefault + allExtension}},
		{"backtick forces UCS2", "a`b", UCS2, []string{"a`b"}},
		{"ten parts", a(1530), GSM7, []string{a(153), a(153), a(153), a(153), a(153), a(153), a(153), a(153), a(153), a(153)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, n := PlanParts(tt.text)
			if enc != tt.enc || n != len(tt.parts) {
				t.Errorf("PlanParts = %v, %d; want %v, %d", enc, n, tt.enc, len(tt.parts))
			}
			parts, err := Encode(ro, tt.text, NewRefCounter(200), Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, subs := decodeParts(t, parts)
			if got != tt.text {
				t.Errorf("reassembled %q", got)
			}
			if len(subs) != len(tt.parts) {
				t.Fatalf("%d parts, want %d", len(subs), len(tt.parts))
			}
			for i, sub := range subs {
				if sub.DCS.Encoding() != tt.enc {
					t.Errorf("part %d: DCS %#x", i+1, sub.DCS)
				}
				if sub.Text != tt.parts[i] {
					t.Errorf("part %d: %q, want %q", i+1, sub.Text, tt.parts[i])
				}
			}
		})
	}
}

func TestEncodeEveryCharacterAcrossParts(t *testing.T) {
	text := strings.Repeat(allDefault+allExtension, 4) // 588 septets, 4 parts
	parts, err := Encode(ro, text, NewRefCounter(0), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 4 {
		t.Fatalf("%d parts, want 4", len(parts))
	}
	if got, _ := decodeParts(t, parts); got != text {
		t.Fatalf("reassembled %q", got)
	}
}

func TestEncodeFlagsAndValidity(t *testing.T) {
	long := strings.Repeat("x", 200)
	tests := []struct {
		name     string
		text     string
		opt      Options
		first    byte
		validity time.Duration
	}{
		{"plain", "x", Options{}, 0x01, 0},
		{"VP", "x", Options{ValidityPeriod: 30 * time.Minute}, 0x11, 30 * time.Minute},
		{"SRR", "x", Options{StatusReport: true}, 0x21, 0},
		{"SRR and VP", "x", Options{StatusReport: true, ValidityPeriod: time.Hour}, 0x31, time.Hour},
		{"UDHI", long, Options{}, 0x41, 0},
		{"UDHI and VP", long, Options{ValidityPeriod: 7 * time.Minute}, 0x51, 10 * time.Minute},
		{"UDHI and SRR", long, Options{StatusReport: true}, 0x61, 0},
		{"everything", long, Options{StatusReport: true, ValidityPeriod: 63 * 7 * 24 * time.Hour}, 0x71, 63 * 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := Encode(ro, tt.text, NewRefCounter(0), tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			_, subs := decodeParts(t, parts)
			for i, p := range parts {
				if first := mustHex(t, p.Hex[2:4])[0]; first != tt.first {
					t.Errorf("part %d: first octet %#02x, want %#02x", i+1, first, tt.first)
				}
				if subs[i].Validity != tt.validity || subs[i].StatusReport != tt.opt.StatusReport {
					t.Errorf("part %d: validity %v SRR %v", i+1, subs[i].Validity, subs[i].StatusReport)
				}
			}
		})
	}
}

func TestEncodeNationalNumber(t *testing.T) {
	parts, err := Encode(Number{Digits: "1234"}, "hi", nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// 04 digits, TOA 81, 21 43.
	if want := "000100048121430000"; !strings.HasPrefix(parts[0].Hex, want) {
		t.Fatalf("got %s, want prefix %s", parts[0].Hex, want)
	}
	_, subs := decodeParts(t, parts)
	if subs[0].To != (Address{TOA: 0x81, Value: "1234"}) {
		t.Fatalf("To = %+v", subs[0].To)
	}
}

func TestEncodeErrors(t *testing.T) {
	a := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name   string
		to     Number
		text   string
		ref    *RefCounter
		opt    Options
		target error
		// for ErrTooManyParts
		needed, max int
	}{
		{name: "empty text", to: ro, text: "", ref: NewRefCounter(0), target: ErrEmpty},
		{name: "11 parts over the default 10", to: ro, text: a(1531), ref: NewRefCounter(0), target: ErrTooManyParts, needed: 11, max: 10},
		{name: "UCS2 over the default", to: ro, text: strings.Repeat("ș", 671), ref: NewRefCounter(0), target: ErrTooManyParts, needed: 11, max: 10},
		{name: "configured limit 3", to: ro, text: a(153*3 + 1), ref: NewRefCounter(0), opt: Options{MaxParts: 3}, target: ErrTooManyParts, needed: 4, max: 3},
		{name: "configured limit capped at 255", to: ro, text: a(153*255 + 1), ref: NewRefCounter(0), opt: Options{MaxParts: 1000}, target: ErrTooManyParts, needed: 256, max: 255},
		{name: "no digits", to: Number{}, text: "x", ref: NewRefCounter(0), target: ErrInvalidNumber},
		{name: "non-digit", to: Number{Digits: "0722a"}, text: "x", ref: NewRefCounter(0), target: ErrInvalidNumber},
		{name: "plus inside digits", to: Number{Digits: "+40722"}, text: "x", ref: NewRefCounter(0), target: ErrInvalidNumber},
		{name: "21 digits", to: Number{Digits: strings.Repeat("1", 21)}, text: "x", ref: NewRefCounter(0), target: ErrInvalidNumber},
		{name: "expired TTL", to: ro, text: "x", ref: NewRefCounter(0), opt: Options{ValidityPeriod: -time.Second}, target: ErrInvalidValidity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := Encode(tt.to, tt.text, tt.ref, tt.opt)
			if !errors.Is(err, tt.target) || parts != nil {
				t.Fatalf("got %v, %v; want %v", len(parts), err, tt.target)
			}
			if tt.target != ErrTooManyParts {
				return
			}
			var tm *TooManyPartsError
			if !errors.As(err, &tm) || tm.Needed != tt.needed || tm.Max != tt.max {
				t.Fatalf("got %#v, want needed %d max %d", tm, tt.needed, tt.max)
			}
			if msg := err.Error(); !strings.Contains(msg, "needs "+strconv.Itoa(tt.needed)+" parts") {
				t.Fatalf("message %q does not say how many parts were needed", msg)
			}
		})
	}
}

func TestEncodeMaxPartsAllowsMore(t *testing.T) {
	text := strings.Repeat("a", 153*11)
	parts, err := Encode(ro, text, NewRefCounter(0), Options{MaxParts: 11})
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 11 {
		t.Fatalf("%d parts, want 11", len(parts))
	}
	if got, _ := decodeParts(t, parts); got != text {
		t.Fatal("round trip failed")
	}
}

func TestEncodeNilRefCounter(t *testing.T) {
	if _, err := Encode(ro, "short", nil, Options{}); err != nil {
		t.Fatalf("single part with nil counter: %v", err)
	}
	if _, err := Encode(ro, strings.Repeat("a", 161), nil, Options{}); err == nil {
		t.Fatal("multi-part with nil counter succeeded")
	}
}

func TestEncodeConsumesRefOnlyForMultiPart(t *testing.T) {
	c := NewRefCounter(7)
	long := strings.Repeat("a", 200)
	for _, step := range []struct {
		text string
		ref  int // -1: single part
	}{{"short", -1}, {long, 7}, {"short", -1}, {long, 8}} {
		parts, err := Encode(ro, step.text, c, Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, subs := decodeParts(t, parts)
		got := -1
		if subs[0].Concat != nil {
			got = int(subs[0].Concat.Ref)
		}
		if got != step.ref {
			t.Fatalf("ref %d, want %d", got, step.ref)
		}
	}
}

func TestRefCounter(t *testing.T) {
	c := NewRefCounter(254)
	for _, want := range []uint8{254, 255, 0, 1} {
		if got := c.Next(); got != want {
			t.Fatalf("Next() = %d, want %d", got, want)
		}
	}
	var zero RefCounter
	if got := zero.Next(); got != 0 {
		t.Fatalf("zero value starts at %d", got)
	}
}

func TestRefCounterConcurrent(t *testing.T) {
	const goroutines, each = 8, 512 // 4096 refs: every value exactly 16 times
	c := NewRefCounter(99)
	var (
		mu     sync.Mutex
		counts [256]int
		wg     sync.WaitGroup
	)
	for range goroutines {
		wg.Go(func() {
			var local [256]int
			for range each {
				local[c.Next()]++
			}
			mu.Lock()
			defer mu.Unlock()
			for i, n := range local {
				counts[i] += n
			}
		})
	}
	wg.Wait()
	for ref, n := range counts {
		if n != goroutines*each/256 {
			t.Fatalf("ref %d handed out %d times, want %d", ref, n, goroutines*each/256)
		}
	}
}

func TestRelativeVP(t *testing.T) {
	const (
		day  = 24 * time.Hour
		week = 7 * day
	)
	tests := []struct {
		d    time.Duration
		want byte
	}{
		{time.Nanosecond, 0},
		{time.Minute, 0},
		{5 * time.Minute, 0},
		{5*time.Minute + time.Second, 1},
		{10 * time.Minute, 1},
		{30 * time.Minute, 5}, // the default upstream TTL
		{time.Hour, 11},
		{12 * time.Hour, 143},
		{12*time.Hour + time.Nanosecond, 144},
		{12*time.Hour + 30*time.Minute, 144},
		{12*time.Hour + 31*time.Minute, 145},
		{day, 167},
		{day + time.Second, 168},
		{2 * day, 168},
		{fourDays, 170},
		{4*day + time.Minute, 171},
		{30 * day, 196},
		{30*day + time.Second, 197}, // next step is 5 weeks
		{5 * week, 197},
		{5*week + time.Second, 198},
		{63 * week, 255},
		{63*week + time.Second, 255},
		{100 * week, 255},
		{1<<63 - 1, 255},
	}
	for _, tt := range tests {
		got, ok, err := relativeVP(tt.d)
		if err != nil || !ok || got != tt.want {
			t.Errorf("relativeVP(%v) = %d, %v, %v; want %d", tt.d, got, ok, err, tt.want)
		}
	}
	if _, ok, err := relativeVP(0); ok || err != nil {
		t.Errorf("relativeVP(0) = %v, %v; want no VP", ok, err)
	}
	if _, _, err := relativeVP(-time.Nanosecond); !errors.Is(err, ErrInvalidValidity) {
		t.Errorf("relativeVP(-1ns) err = %v", err)
	}
}

// TestRelativeVPRoundsUpToNextStep checks every step: a duration just
// above the previous step, and the step itself, both map to it.
func TestRelativeVPRoundsUpToNextStep(t *testing.T) {
	for vp := 0; vp < 256; vp++ {
		ds := []time.Duration{vpDuration(byte(vp))}
		if vp > 0 {
			ds = append(ds, vpDuration(byte(vp-1))+time.Nanosecond)
		}
		for _, d := range ds {
			if got, _, _ := relativeVP(d); int(got) != vp {
				t.Errorf("relativeVP(%v) = %d (%v), want %d (%v)", d, got, vpDuration(got), vp, vpDuration(byte(vp)))
			}
		}
	}
}

func TestRequestStatusReportMatchesTheOption(t *testing.T) {
	for _, text := range []string{"hello", strings.Repeat("€x", 120)} {
		plain, err := Encode(ro, text, NewRefCounter(9), Options{ValidityPeriod: fourDays})
		if err != nil {
			t.Fatal(err)
		}
		want, err := Encode(ro, text, NewRefCounter(9), Options{ValidityPeriod: fourDays, StatusReport: true})
		if err != nil {
			t.Fatal(err)
		}
		for i := range plain {
			got, err := RequestStatusReport(plain[i].Hex)
			if err != nil || got != want[i].Hex {
				t.Errorf("part %d: %s, %v\nwant %s", i+1, got, err, want[i].Hex)
			}
		}
	}
	for _, bad := range []string{"", "00", "zz", "0004", "0501020304", "0000"} {
		if _, err := RequestStatusReport(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("RequestStatusReport(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}
