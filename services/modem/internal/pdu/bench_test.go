package pdu

import (
	"strings"
	"testing"
)

func benchmarkEncode(b *testing.B, text string, wantEnc Encoding) {
	if enc, _ := PlanParts(text); enc != wantEnc {
		b.Fatalf("benchmark text encodes as %v, want %v", enc, wantEnc)
	}
	ref := NewRefCounter(0)
	opt := Options{MaxParts: 20, ValidityPeriod: fourDays}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(ro, text, ref, opt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode1000 encodes 1,000 GSM characters (7 parts).
func BenchmarkEncode1000(b *testing.B) {
	text := strings.Repeat("Temperature alarm in greenhouse 3: 41C > 35C [sensor #12] ", 20)[:1000]
	benchmarkEncode(b, text, GSM7)
}

// BenchmarkEncode1000UCS2 encodes 1,000 Romanian characters (15 parts).
func BenchmarkEncode1000UCS2(b *testing.B) {
	text := string([]rune(strings.Repeat("Alarmă în seră: temperatura a depășit pragul, verificați ușa. ", 20))[:1000])
	benchmarkEncode(b, text, UCS2)
}
