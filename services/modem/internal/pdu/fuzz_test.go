package pdu

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// tpduSeeds returns the TPDUs (SMSC prefix removed) of the published vectors
// plus every part the encoder produces for a few awkward texts.
func tpduSeeds(f *testing.F) [][]byte {
	f.Helper()
	seeds := [][]byte{
		mustHex(f, hexHelloWorld),
		mustHex(f, hexAlnum),
		{}, {0x00}, {0x01}, {0x02}, {0x03}, {0xFF},
	}
	for _, v := range []struct {
		hex string
		n   int
	}{{hexWoot, 23}, {hexCMT, 23}, {hexCDS, 25}, {hexEx3Ref16, 35}} {
		_, tpdu := mustSplit(f, v.hex, v.n)
		seeds = append(seeds, tpdu)
	}
	for _, h := range hexWarthogConcat {
		seeds = append(seeds, mustHex(f, h))
	}
	for _, text := range []string{"hello", "Hi 😀", strings.Repeat("€", 90), strings.Repeat("ș", 80)} {
		parts, err := Encode(ro, text, NewRefCounter(0), Options{ValidityPeriod: fourDays, StatusReport: true})
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range parts {
			seeds = append(seeds, mustHex(f, p.Hex[2:]))
		}
	}
	// The same TPDUs with the MTI of each type, so every decoder gets past
	// its type check on every seed.
	for _, s := range seeds { // range reads len(seeds) once
		for mti := range byte(3) {
			if len(s) > 0 && s[0]&3 != mti {
				v := append([]byte{s[0]&^3 | mti}, s[1:]...)
				seeds = append(seeds, v)
			}
		}
	}
	return seeds
}

// checkDecoded is what every decoder owes its caller on any input: no
// panic, exactly one of result or error, an error from this package's
// vocabulary, and valid UTF-8 text.
func checkDecoded[T any](t *testing.T, v *T, err error, text func(*T) string) {
	if (v == nil) == (err == nil) {
		t.Fatalf("result %v with error %v", v, err)
	}
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrWrongType) {
			t.Fatalf("error outside the vocabulary: %v", err)
		}
		return
	}
	if s := text(v); !utf8.ValidString(s) {
		t.Fatalf("invalid UTF-8 text %q", s)
	}
}

func FuzzDecodeDeliver(f *testing.F) {
	for _, s := range tpduSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDeliver(b)
		checkDecoded(t, d, err, func(d *Deliver) string { return d.Text + d.From.Value })
	})
}

func FuzzDecodeStatusReport(f *testing.F) {
	for _, s := range tpduSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeStatusReport(b)
		checkDecoded(t, r, err, func(r *StatusReport) string { return r.Text + r.Recipient.Value })
	})
}

func FuzzDecodeSubmit(f *testing.F) {
	for _, s := range tpduSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSubmit(b)
		checkDecoded(t, s, err, func(s *Submit) string { return s.Text + s.To.Value })
	})
}

func FuzzSplitSMSC(f *testing.F) {
	f.Add(hexWoot, 23)
	f.Add(hexCDS, 25)
	f.Add(hexCDS, 33)
	f.Add("00", 1)
	f.Add("", 0)
	f.Add("FF00", 1)
	f.Fuzz(func(t *testing.T, h string, n int) {
		smsc, tpdu, err := SplitSMSC(h, n)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error outside the vocabulary: %v", err)
			}
			return
		}
		if len(tpdu) != n || !utf8.ValidString(smsc.Value) {
			t.Fatalf("SplitSMSC(%q, %d) = %+v, %d octets", h, n, smsc, len(tpdu))
		}
		if b, _ := hex.DecodeString(strings.TrimSpace(h)); len(b) > n && int(b[0])+1+n != len(b) {
			t.Fatalf("SMSC field of %d octets accepted in %d octets", b[0], len(b))
		}
	})
}

// FuzzEncodeRoundTrip: whatever valid UTF-8 encodes must decode, part by
// part, back to the same text, with the part count PlanParts predicted.
func FuzzEncodeRoundTrip(f *testing.F) {
	for _, s := range []string{
		"hello", "", "€5 [x]", "Hi 😀", "Привет", allDefault + allExtension,
		strings.Repeat("0123456789", 17),
		strings.Repeat("a", 152) + "€" + strings.Repeat("b", 20),
		strings.Repeat("a", 66) + "😀" + strings.Repeat("b", 10),
		"Alarmă: ușa serei e deschisă, țineți-o închisă",
		"a`b", "\x00\x1b\r\n\f", "\uFFFD", "👩‍👩‍👧‍👦 family", "e\u0301",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if !utf8.ValidString(text) {
			return // Go strings from JSON jobs are valid UTF-8; invalid bytes have no text to round-trip
		}
		enc, n := PlanParts(text)
		parts, err := Encode(ro, text, NewRefCounter(0), Options{MaxParts: maxConcatParts})
		switch {
		case text == "":
			if !errors.Is(err, ErrEmpty) {
				t.Fatalf("empty text: %v", err)
			}
			return
		case errors.Is(err, ErrTooManyParts):
			if n <= maxConcatParts {
				t.Fatalf("%d planned parts rejected: %v", n, err)
			}
			return
		case err != nil:
			t.Fatal(err)
		}
		if len(parts) != n {
			t.Fatalf("PlanParts said %d parts, Encode made %d", n, len(parts))
		}
		got, subs := decodeParts(t, parts)
		if got != text {
			t.Fatalf("round trip:\n got %q\nwant %q", got, text)
		}
		if subs[0].DCS.Encoding() != enc {
			t.Fatalf("PlanParts said %v, DCS is %#x", enc, subs[0].DCS)
		}
	})
}
