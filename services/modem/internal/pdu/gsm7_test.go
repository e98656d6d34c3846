package pdu

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// allDefault is every default-table character in septet order (0x1B, the
// escape, has none); allExtension every extension-table character.
var (
	allDefault   = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	allExtension = "\f^{}\\[~]|€"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad test hex %q: %v", s, err)
	}
	return b
}

func TestSeptetTablePitfalls(t *testing.T) {
	// §2.8 lists these because widely copied tables get them wrong.
	tests := []struct {
		r      rune
		septet uint16
	}{
		{'@', inDefault}, // septet 0x00
		{'$', inDefault | 0x02},
		{'_', inDefault | 0x11},
		{'¤', inDefault | 0x24},
		{'§', inDefault | 0x5F},
		{'¿', inDefault | 0x60},
		{'à', inDefault | 0x7F},
		{'Ç', inDefault | 0x09},
		{'Δ', inDefault | 0x10},
		{'\n', inDefault | 0x0A},
		{'\r', inDefault | 0x0D},
		{'\f', inExtension | 0x0A},
		{'^', inExtension | 0x14},
		{'{', inExtension | 0x28},
		{'}', inExtension | 0x29},
		{'\\', inExtension | 0x2F},
		{'[', inExtension | 0x3C},
		{'~', inExtension | 0x3D},
		{']', inExtension | 0x3E},
		{'|', inExtension | 0x40},
		{'€', inExtension | 0x65},
		{'`', 0},      // no backtick in GSM 03.38
		{'ç', 0},      // only the capital is in the table
		{'ê', 0},      // not every Latin-1 letter is
		{0x1B, 0},     // the escape code is not a character
		{'ș', 0},      // Romanian needs UCS2
		{'😀', 0},      // nor are emoji
		{-1, 0},       // invalid runes must not index the table
		{0x10FFFF, 0}, // nor huge ones
	}
	for _, tt := range tests {
		if got := septetFor(tt.r); got != tt.septet {
			t.Errorf("septetFor(%q) = %#x, want %#x", tt.r, got, tt.septet)
		}
	}
	if n := len([]rune(allDefault)); n != 127 {
		t.Fatalf("allDefault has %d characters, want 127", n)
	}
}

func TestSeptetsRoundTripEveryCharacter(t *testing.T) {
	for _, r := range allDefault + allExtension {
		septets, ok := appendSeptets(nil, string(r))
		if !ok {
			t.Errorf("%q: not encodable", r)
			continue
		}
		wantLen := 1
		if strings.ContainsRune(allExtension, r) {
			wantLen = 2
		}
		if len(septets) != wantLen {
			t.Errorf("%q: %d septets, want %d", r, len(septets), wantLen)
		}
		if got := decodeSeptets(septets); got != string(r) {
			t.Errorf("%q: decoded as %q", r, got)
		}
	}
}

func TestPackSeptets(t *testing.T) {
	tests := []struct {
		text string
		fill int
		want string
	}{
		{"hello", 0, "E8329BFD06"},
		{"hellohello", 0, "E8329BFD4697D9EC37"},
		{"Hello world", 0, "C8329BFD06DDDF723619"},
		// §2.11 example 3, part 2: after the 6-octet concat UDH the text
		// starts with one fill bit; after the 7-octet one with none.
		{"34567890123456789", 1, "66B49AED86CBC162B219AD66BBE172"},
		{"34567890123456789", 0, "335ACD76C3E56031D98C56B3DD7039"},
		{"", 0, ""},
	}
	for _, tt := range tests {
		septets, ok := appendSeptets(nil, tt.text)
		if !ok {
			t.Fatalf("%q not encodable", tt.text)
		}
		got := packSeptets(nil, septets, tt.fill)
		if !bytes.Equal(got, mustHex(t, tt.want)) {
			t.Errorf("pack(%q, fill %d) = %X, want %s", tt.text, tt.fill, got, tt.want)
		}
		back, ok := unpackSeptets(got, tt.fill, len(septets))
		if !ok || !bytes.Equal(back, septets) {
			t.Errorf("unpack(%X) = %v, %v, want %v", got, back, ok, septets)
		}
	}
}

func TestPackSeptetsAppendsAfterHeader(t *testing.T) {
	got := packSeptets([]byte{0xAA}, []byte{0x7F}, 1)
	if want := []byte{0xAA, 0xFE}; !bytes.Equal(got, want) {
		t.Fatalf("got %X, want %X", got, want)
	}
}

func TestUnpackSeptetsRejectsShortInput(t *testing.T) {
	// 8 septets need 7 octets; 9 need 8.
	if _, ok := unpackSeptets(make([]byte, 7), 0, 9); ok {
		t.Error("9 septets from 7 octets accepted")
	}
	if _, ok := unpackSeptets(make([]byte, 7), 1, 8); ok {
		t.Error("8 septets after a fill bit from 7 octets accepted")
	}
	if _, ok := unpackSeptets(nil, -1, 0); ok {
		t.Error("negative fill accepted")
	}
}

func TestDecodeSeptetsEscapeEdgeCases(t *testing.T) {
	tests := []struct {
		name    string
		septets []byte
		want    string
	}{
		{"trailing lone escape shows a space", []byte{0x61, esc}, "a "},
		{"double escape shows a space", []byte{esc, esc, 0x61}, " a"},
		{"unassigned extension code falls back to default table", []byte{esc, 0x41}, "A"},
		{"high bit ignored", []byte{0x80 | 0x61}, "a"},
	}
	for _, tt := range tests {
		if got := decodeSeptets(tt.septets); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}
