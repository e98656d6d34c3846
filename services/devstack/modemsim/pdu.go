package modemsim

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"
)

// ErrPDU marks a PDU the simulator cannot accept; a real modem answers
// such a PDU with +CMS ERROR: 304.
var ErrPDU = errors.New("modemsim: invalid PDU")

// Encoding is the alphabet a TP-DCS selects.
type Encoding string

// Alphabets of 23.038 §4.
const (
	GSM7  Encoding = "GSM7"
	UCS2  Encoding = "UCS2" // decoded as UTF-16, surrogate pairs included
	Octet Encoding = "8bit"
)

// Concat is a concatenation information element (IEI 0x00 or 0x08).
type Concat struct {
	Ref, Total, Seq int
	Wide            bool // 16-bit reference (IEI 0x08)
}

// TPDU is a decoded SMS-SUBMIT, with the SMSC field that precedes it.
type TPDU struct {
	SMSC           string // "" when the PDU says "use AT+CSCA"
	MR             int    // TP-MR as the client wrote it
	To             string // "+" prefixed when the type of number is international
	StatusReport   bool   // TP-SRR
	PID, DCS       byte
	Encoding       Encoding
	ValidityPeriod time.Duration // relative format only; 0 when absent or not relative
	Concat         *Concat       // nil for a single-part message
	Text           string        // 8-bit data is returned byte for byte
}

// gsm7Default is the 23.038 default alphabet indexed by septet. 0x1B is the
// escape to the extension table and never decoded through this table.
var gsm7Default = [128]rune([]rune("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"))

var gsm7Ext = map[byte]rune{
	0x0A: '\f', 0x14: '^', 0x28: '{', 0x29: '}', 0x2F: '\\',
	0x3C: '[', 0x3D: '~', 0x3E: ']', 0x40: '|', 0x65: '€',
}

// pduReader walks the octets of a PDU and remembers the first overrun, so
// field parsing reads top to bottom without an error check per octet.
type pduReader struct {
	b   []byte
	err error
}

func (r *pduReader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = fmt.Errorf("%w: %s truncated", ErrPDU, field)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *pduReader) octet(field string) byte {
	if v := r.take(1, field); v != nil {
		return v[0]
	}
	return 0
}

// decodeSubmit decodes the octets of an SMSC field followed by an
// SMS-SUBMIT TPDU. It is deliberately strict (no trailing octets, UDL
// within limits) because its job is to catch encoder bugs in the gateway.
func decodeSubmit(pdu []byte) (*TPDU, error) {
	r := &pduReader{b: pdu}
	var t TPDU
	smscLen := int(r.octet("SMSC length"))
	if smscLen > 11 {
		return nil, fmt.Errorf("%w: SMSC length %d", ErrPDU, smscLen)
	}
	if smscLen > 0 {
		toa := r.octet("SMSC type")
		raw := r.take(smscLen-1, "SMSC")
		// The SMSC field is counted in octets, so an odd number ends in
		// an F filler that is not a digit.
		n := 2 * len(raw)
		if n > 0 && raw[len(raw)-1]>>4 == 0x0F {
			n--
		}
		digits, err := semiOctets(raw, n)
		if err != nil {
			return nil, err
		}
		t.SMSC = withTON(toa, digits)
	}
	fo := r.octet("first octet")
	if r.err == nil && fo&0x03 != 0x01 {
		return nil, fmt.Errorf("%w: TP-MTI %d is not SMS-SUBMIT", ErrPDU, fo&0x03)
	}
	t.StatusReport = fo&0x20 != 0
	t.MR = int(r.octet("TP-MR"))
	daLen := int(r.octet("TP-DA length"))
	if daLen > 20 {
		return nil, fmt.Errorf("%w: TP-DA length %d", ErrPDU, daLen)
	}
	daTOA := r.octet("TP-DA type")
	da := r.take((daLen+1)/2, "TP-DA")
	if r.err == nil {
		digits, err := semiOctets(da, daLen)
		if err != nil {
			return nil, err
		}
		t.To = withTON(daTOA, digits)
	}
	t.PID = r.octet("TP-PID")
	t.DCS = r.octet("TP-DCS")
	switch (fo >> 3) & 0x03 {
	case 0x02:
		t.ValidityPeriod = relativeVP(r.octet("TP-VP"))
	case 0x01, 0x03: // enhanced and absolute formats: 7 octets, skipped
		r.take(7, "TP-VP")
	}
	udl := int(r.octet("TP-UDL"))
	if r.err != nil {
		return nil, r.err
	}
	enc, err := alphabet(t.DCS)
	if err != nil {
		return nil, err
	}
	t.Encoding = enc
	if err := t.decodeUD(r.b, udl, fo&0x40 != 0); err != nil {
		return nil, err
	}
	return &t, nil
}

func (t *TPDU) decodeUD(ud []byte, udl int, udhi bool) error {
	udOctets, limit := udl, 140
	if t.Encoding == GSM7 {
		udOctets, limit = (7*udl+7)/8, 160
	}
	if udl > limit {
		return fmt.Errorf("%w: TP-UDL %d over %d", ErrPDU, udl, limit)
	}
	if len(ud) != udOctets {
		return fmt.Errorf("%w: TP-UD has %d octets, TP-UDL %d needs %d", ErrPDU, len(ud), udl, udOctets)
	}
	hdr := 0 // octets taken by the UDH including UDHL
	if udhi {
		if len(ud) == 0 {
			return fmt.Errorf("%w: UDHI set but TP-UD empty", ErrPDU)
		}
		hdr = int(ud[0]) + 1
		if hdr > len(ud) {
			return fmt.Errorf("%w: UDHL %d beyond TP-UD", ErrPDU, ud[0])
		}
		c, err := parseUDH(ud[1:hdr])
		if err != nil {
			return err
		}
		t.Concat = c
	}
	switch t.Encoding {
	case GSM7:
		hdrSeptets := (8*hdr + 6) / 7 // the UDH plus its fill bits
		if hdrSeptets > udl {
			return fmt.Errorf("%w: UDH longer than TP-UDL", ErrPDU)
		}
		t.Text = gsm7Text(unpackSeptets(ud, 7*hdrSeptets, udl-hdrSeptets))
	case UCS2:
		body := ud[hdr:]
		if len(body)%2 != 0 {
			return fmt.Errorf("%w: odd UCS2 length %d", ErrPDU, len(body))
		}
		units := make([]uint16, len(body)/2)
		for i := range units {
			units[i] = uint16(body[2*i])<<8 | uint16(body[2*i+1])
		}
		t.Text = string(utf16.Decode(units))
	default:
		t.Text = string(ud[hdr:])
	}
	return nil
}

// parseUDH returns the concatenation element, if any, of a UDH body.
func parseUDH(h []byte) (*Concat, error) {
	var c *Concat
	for len(h) > 0 {
		if len(h) < 2 || int(h[1]) > len(h)-2 {
			return nil, fmt.Errorf("%w: truncated UDH element", ErrPDU)
		}
		iei, data := h[0], h[2:2+int(h[1])]
		h = h[2+len(data):]
		switch {
		case iei == 0x00 && len(data) == 3:
			c = &Concat{Ref: int(data[0]), Total: int(data[1]), Seq: int(data[2])}
		case iei == 0x08 && len(data) == 4:
			c = &Concat{Ref: int(data[0])<<8 | int(data[1]), Total: int(data[2]), Seq: int(data[3]), Wide: true}
		case iei == 0x00 || iei == 0x08:
			return nil, fmt.Errorf("%w: concatenation element length %d", ErrPDU, len(data))
		}
	}
	if c != nil && (c.Total == 0 || c.Seq == 0 || c.Seq > c.Total) {
		return nil, fmt.Errorf("%w: concatenation part %d of %d", ErrPDU, c.Seq, c.Total)
	}
	return c, nil
}

// alphabet interprets TP-DCS per the coding groups of 23.038 §4.
func alphabet(dcs byte) (Encoding, error) {
	switch dcs >> 4 {
	case 0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7:
		if dcs&0x20 != 0 {
			return "", fmt.Errorf("%w: compressed DCS 0x%02X", ErrPDU, dcs)
		}
		switch (dcs >> 2) & 0x03 {
		case 1:
			return Octet, nil
		case 2:
			return UCS2, nil
		}
		return GSM7, nil // 11 is reserved and read as GSM7
	case 0xC, 0xD:
		return GSM7, nil
	case 0xE:
		return UCS2, nil
	case 0xF:
		if dcs&0x04 != 0 {
			return Octet, nil
		}
		return GSM7, nil
	}
	return "", fmt.Errorf("%w: reserved DCS 0x%02X", ErrPDU, dcs)
}

// relativeVP converts a relative TP-VP (23.040 §9.2.3.12.1).
func relativeVP(v byte) time.Duration {
	n := time.Duration(v)
	switch {
	case v <= 143:
		return (n + 1) * 5 * time.Minute
	case v <= 167:
		return 12*time.Hour + (n-143)*30*time.Minute
	case v <= 196:
		return (n - 166) * 24 * time.Hour
	}
	return (n - 192) * 7 * 24 * time.Hour
}

// semiOctets decodes n BCD digits, low nibble first. An F nibble is only
// allowed as the filler of an odd count.
func semiOctets(b []byte, n int) (string, error) {
	const digits = "0123456789*#abc"
	var sb strings.Builder
	for i := range 2 * len(b) {
		nib := b[i/2] >> (4 * (i % 2)) & 0x0F
		switch {
		case i >= n:
			if nib != 0x0F {
				return "", fmt.Errorf("%w: address filler 0x%X", ErrPDU, nib)
			}
		case nib == 0x0F:
			return "", fmt.Errorf("%w: address digit 0x%X", ErrPDU, nib)
		default:
			sb.WriteByte(digits[nib])
		}
	}
	return sb.String(), nil
}

func withTON(toa byte, digits string) string {
	if (toa>>4)&0x07 == 1 {
		return "+" + digits
	}
	return digits
}

// unpackSeptets reads n septets from ud starting at bit offset start, the
// bit stream being filled LSB first (23.038 §6.1.2.1.1).
func unpackSeptets(ud []byte, start, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		bit := start + 7*i
		v := uint16(ud[bit/8]) >> (bit % 8)
		if bit%8 > 1 {
			v |= uint16(ud[bit/8+1]) << (8 - bit%8)
		}
		out[i] = byte(v & 0x7F)
	}
	return out
}

func gsm7Text(septets []byte) string {
	var sb strings.Builder
	for i := 0; i < len(septets); i++ {
		s := septets[i]
		if s != 0x1B {
			sb.WriteRune(gsm7Default[s])
			continue
		}
		i++
		switch {
		case i == len(septets), septets[i] == 0x1B:
			sb.WriteByte(' ') // a lone or doubled escape has no character
		default:
			if r, ok := gsm7Ext[septets[i]]; ok {
				sb.WriteRune(r)
			} else {
				// 23.038: an unknown extension shows the default character.
				sb.WriteRune(gsm7Default[septets[i]])
			}
		}
	}
	return sb.String()
}
