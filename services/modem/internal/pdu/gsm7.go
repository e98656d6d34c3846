package pdu

import "strings"

// esc switches the next septet to the extension table (TS 23.038 §6.2.1.1).
const esc = 0x1B

// defaultAlphabet is the GSM 7-bit default table indexed by septet. Written
// out from TS 23.038 §6.2.1 rather than taken from a library because the
// tables in circulation differ (§2.8: 0x02 is '$', 0x24 is '¤', 0x5F is '§',
// 0x60 is '¿'; there is no backtick). The slice-to-array conversion panics at
// init if a character is ever dropped or added, so the indices cannot drift.
// Index 0x1B holds the escape code itself and is never produced by a rune.
var defaultAlphabet = [128]rune([]rune(
	"@£$¥èéùìòÇ\nØø\rÅå" +
		"Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ" +
		" !\"#¤%&'()*+,-./" +
		"0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNO" +
		"PQRSTUVWXYZÄÖÑÜ§" +
		"¿abcdefghijklmno" +
		"pqrstuvwxyzäöñüà"))

// extensionTable holds the characters reached through esc; zero means the
// code is unassigned.
var extensionTable = [128]rune{
	0x0A: '\f',
	0x14: '^',
	0x28: '{',
	0x29: '}',
	0x2F: '\\',
	0x3C: '[',
	0x3D: '~',
	0x3E: ']',
	0x40: '|',
	0x65: '€',
}

// Reverse lookup. Latin-1 runes go through an array because they dominate
// real texts; the Greek capitals and '€' go through a map. A value is
// septet|inDefault or code|inExtension; zero means "not encodable".
const (
	inDefault   = 0x100
	inExtension = 0x200
)

var (
	latin1Septets [256]uint16
	otherSeptets  = map[rune]uint16{}
)

func init() {
	add := func(r rune, v uint16) {
		if r < 256 {
			latin1Septets[r] = v
		} else {
			otherSeptets[r] = v
		}
	}
	for s, r := range defaultAlphabet {
		if s != esc {
			add(r, inDefault|uint16(s))
		}
	}
	for c, r := range extensionTable {
		if r != 0 {
			add(r, inExtension|uint16(c))
		}
	}
}

func septetFor(r rune) uint16 {
	if r >= 0 && r < 256 {
		return latin1Septets[r]
	}
	return otherSeptets[r]
}

// appendSeptets appends the septets for s (extension characters as esc plus
// code) and reports false, leaving dst unspecified, if any character is
// outside the default and extension tables.
func appendSeptets(dst []byte, s string) ([]byte, bool) {
	for _, r := range s {
		v := septetFor(r)
		switch {
		case v&inDefault != 0:
			dst = append(dst, byte(v))
		case v&inExtension != 0:
			dst = append(dst, esc, byte(v))
		default:
			return dst, false
		}
	}
	return dst, true
}

// decodeSeptets maps septets back to text. Per TS 23.038 an escape that
// leads nowhere (unassigned code, a second escape, or the end of the data)
// is shown as the default-table character or a space rather than rejected,
// because a garbled character is better than losing a received message.
func decodeSeptets(septets []byte) string {
	var b strings.Builder
	b.Grow(len(septets))
	for i := 0; i < len(septets); i++ {
		s := septets[i] & 0x7F
		if s != esc {
			b.WriteRune(defaultAlphabet[s])
			continue
		}
		i++
		switch {
		case i == len(septets), septets[i]&0x7F == esc:
			b.WriteByte(' ')
		case extensionTable[septets[i]&0x7F] != 0:
			b.WriteRune(extensionTable[septets[i]&0x7F])
		default:
			b.WriteRune(defaultAlphabet[septets[i]&0x7F])
		}
	}
	return b.String()
}

// packSeptets appends septets packed LSB-first after fill zero bits
// (TS 23.038 §6.1.2.1.1). dst must end on an octet boundary, which holds
// because the UDH is whole octets.
func packSeptets(dst, septets []byte, fill int) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, (fill+7*len(septets)+7)/8)...)
	out := dst[start:]
	bit := fill
	for _, s := range septets {
		i, sh := bit/8, uint(bit%8)
		out[i] |= (s & 0x7F) << sh
		if sh > 1 {
			out[i+1] |= (s & 0x7F) >> (8 - sh)
		}
		bit += 7
	}
	return dst
}

// unpackSeptets reads n septets starting fill bits into src. The count comes
// from TP-UDL, never from len(src): the last octet's spare bits would
// otherwise read as a trailing '@'.
func unpackSeptets(src []byte, fill, n int) ([]byte, bool) {
	if fill < 0 || n < 0 || (fill+7*n+7)/8 > len(src) {
		return nil, false
	}
	out := make([]byte, n)
	bit := fill
	for k := range out {
		i, sh := bit/8, uint(bit%8)
		v := src[i] >> sh
		if sh > 1 {
			v |= src[i+1] << (8 - sh)
		}
		out[k] = v & 0x7F
		bit += 7
	}
	return out, true
}
