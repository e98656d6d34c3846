package pdu

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"
)

// Address is a decoded TP-OA, TP-DA, TP-RA or SMSC address.
type Address struct {
	// TOA is the type-of-address octet (0x91 international, 0x81 unknown,
	// 0xD0 alphanumeric, ...).
	TOA byte
	// Value is "+" and the digits for international numbers, the digits
	// (and any of "*#abc") otherwise, or the sender name when alphanumeric.
	Value string
}

// DCS is the TP-Data-Coding-Scheme octet.
type DCS byte

// Encoding returns the alphabet of the user data per the coding groups of
// TS 23.038 §4. Reserved alphabets and groups read as GSM 7-bit, as the spec
// tells receivers to; compressed data reads as Binary since it would have to
// be decompressed first, which nobody does in practice.
func (d DCS) Encoding() Encoding {
	switch d >> 4 {
	case 0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7: // general data coding
		if d&0x20 != 0 {
			return Binary
		}
		switch d >> 2 & 0x03 {
		case 0x01:
			return Binary
		case 0x02:
			return UCS2
		}
	case 0xE: // message waiting, UCS2
		return UCS2
	case 0xF: // data coding/message class
		if d&0x04 != 0 {
			return Binary
		}
	}
	return GSM7
}

// IE is one information element of a user data header.
type IE struct {
	ID   byte
	Data []byte
}

// Concat identifies one part of a concatenated message. Parts belong
// together when sender, Ref16, Ref and Total agree.
type Concat struct {
	Ref        uint16
	Ref16      bool // IEI 0x08 (16-bit reference) rather than 0x00
	Seq, Total int  // Seq counts from 1
}

// UserData is the decoded TP-UD.
type UserData struct {
	// Header lists every IE in order, including ones this package does not
	// interpret (national language shifts 0x24/0x25, ports, ...).
	Header []IE
	// Concat is set when the header holds a well-formed concatenation IE.
	// Per TS 23.040 an IE with sequence 0 or beyond the total is ignored.
	Concat *Concat
	// Text is the message for GSM7 and UCS2 data. National language shift
	// tables are not applied: such text decodes with the default tables.
	Text string
	// Data is the payload (after the header) of 8-bit or compressed data.
	Data []byte
}

// Submit is a decoded SMS-SUBMIT (what the gateway sends; the simulator
// decodes it).
type Submit struct {
	StatusReport bool // TP-SRR
	MR           byte
	To           Address
	PID          byte
	DCS          DCS
	// Validity is the relative TP-VP; zero when absent or in the rarely used
	// absolute or enhanced formats, which are skipped.
	Validity time.Duration
	UserData
}

// Deliver is a decoded SMS-DELIVER (a received message).
type Deliver struct {
	From Address
	PID  byte
	DCS  DCS
	SCTS time.Time // service centre time stamp, in the sender SC's zone
	UserData
}

// StatusReport is a decoded SMS-STATUS-REPORT.
type StatusReport struct {
	// MR is the TP-MR of the SUBMIT it reports on, i.e. the <mr> from +CMGS.
	MR        byte
	Recipient Address
	SCTS      time.Time // when the SC received the SUBMIT
	Discharge time.Time // when it was delivered or finally failed
	Status    Status
	// PID, DCS and UserData are present only if TP-PI says so.
	PID byte
	DCS DCS
	UserData
}

// Status is TP-Status (TS 23.040 §9.2.3.15).
type Status byte

// Delivered is true for the "transaction completed" block 0x00-0x1F, which
// includes "forwarded, delivery unconfirmed" and "replaced": the SC is done
// and nothing says it failed.
func (s Status) Delivered() bool { return s < 0x20 }

// Pending is true for 0x20-0x3F: a temporary error, the SC keeps trying, and
// another report will follow.
func (s Status) Pending() bool { return s >= 0x20 && s < 0x40 }

// Failed is true for permanent errors (0x40-0x5F), temporary errors the SC
// gave up on (0x60-0x7F) and reserved values, which cannot mean progress.
func (s Status) Failed() bool { return s >= 0x40 }

// SplitSMSC separates the optional SMSC address that modems put in front of
// the TPDU in PDU mode. tpduLen is the <length> of +CMGR, +CMGL, +CMT or
// +CDS, which counts TPDU octets only: when the PDU is exactly that long
// there is no SMSC field (some modems omit it), otherwise the first octet is
// the SMSC field's length and must account for the rest exactly.
func SplitSMSC(hexPDU string, tpduLen int) (smsc Address, tpdu []byte, err error) {
	smsc, tpdu, err = splitSMSC(hexPDU, tpduLen)
	if err != nil {
		return Address{}, nil, fmt.Errorf("split smsc: %w", err)
	}
	return smsc, tpdu, nil
}

func splitSMSC(hexPDU string, tpduLen int) (Address, []byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(hexPDU))
	if err != nil {
		return Address{}, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case tpduLen <= 0:
		return Address{}, nil, fmt.Errorf("%w: TPDU length %d", ErrMalformed, tpduLen)
	case len(b) == tpduLen:
		return Address{}, b, nil
	case len(b) < tpduLen || 1+int(b[0])+tpduLen != len(b):
		return Address{}, nil, fmt.Errorf("%w: %d octets do not fit TPDU length %d", ErrMalformed, len(b), tpduLen)
	}
	n := int(b[0])
	if n == 0 {
		return Address{}, b[1:], nil
	}
	if n > 12 { // TOA + at most 11 octets of digits (24.011 §8.2.5.1)
		return Address{}, nil, fmt.Errorf("%w: SMSC field of %d octets", ErrMalformed, n)
	}
	raw := b[2 : 1+n]
	digits := 2 * len(raw)
	if raw[len(raw)-1]>>4 == 0x0F {
		digits--
	}
	value, ok := semiOctets(raw, digits)
	if !ok {
		return Address{}, nil, fmt.Errorf("%w: SMSC: filler nibble inside the digits", ErrMalformed)
	}
	if b[1]&0x70 == 0x10 {
		value = "+" + value
	}
	return Address{TOA: b[1], Value: value}, b[1+n:], nil
}

// DecodeSubmit decodes an SMS-SUBMIT TPDU (without the SMSC prefix).
func DecodeSubmit(tpdu []byte) (*Submit, error) {
	r := reader{b: tpdu}
	first := r.octet("first octet")
	if err := r.mti(first, 0x01, "SMS-SUBMIT"); err != nil {
		return nil, fmt.Errorf("decode submit: %w", err)
	}
	s := &Submit{StatusReport: first&0x20 != 0}
	s.MR = r.octet("TP-MR")
	s.To = r.address("TP-DA")
	s.PID = r.octet("TP-PID")
	s.DCS = DCS(r.octet("TP-DCS"))
	switch first >> 3 & 0x03 {
	case 0x02:
		if vp := r.next(1, "TP-VP"); vp != nil {
			s.Validity = vpDuration(vp[0])
		}
	case 0x01, 0x03:
		r.next(7, "TP-VP")
	}
	s.UserData = r.userData(s.DCS, first&0x40 != 0)
	if r.err != nil {
		return nil, fmt.Errorf("decode submit: %w", r.err)
	}
	return s, nil
}

// DecodeDeliver decodes an SMS-DELIVER TPDU (without the SMSC prefix).
func DecodeDeliver(tpdu []byte) (*Deliver, error) {
	r := reader{b: tpdu}
	first := r.octet("first octet")
	if err := r.mti(first, 0x00, "SMS-DELIVER"); err != nil {
		return nil, fmt.Errorf("decode deliver: %w", err)
	}
	d := &Deliver{}
	d.From = r.address("TP-OA")
	d.PID = r.octet("TP-PID")
	d.DCS = DCS(r.octet("TP-DCS"))
	d.SCTS = r.timestamp("TP-SCTS")
	d.UserData = r.userData(d.DCS, first&0x40 != 0)
	if r.err != nil {
		return nil, fmt.Errorf("decode deliver: %w", r.err)
	}
	return d, nil
}

// DecodeStatusReport decodes an SMS-STATUS-REPORT TPDU (without the SMSC
// prefix).
func DecodeStatusReport(tpdu []byte) (*StatusReport, error) {
	r := reader{b: tpdu}
	first := r.octet("first octet")
	if err := r.mti(first, 0x02, "SMS-STATUS-REPORT"); err != nil {
		return nil, fmt.Errorf("decode status report: %w", err)
	}
	s := &StatusReport{}
	s.MR = r.octet("TP-MR")
	s.Recipient = r.address("TP-RA")
	s.SCTS = r.timestamp("TP-SCTS")
	s.Discharge = r.timestamp("TP-DT")
	s.Status = Status(r.octet("TP-ST"))
	if r.err == nil && r.off < len(r.b) {
		// TP-PI and what it announces are optional; the extension bit chains
		// further PI octets whose bits no current spec assigns.
		pi := r.octet("TP-PI")
		for ext := pi; ext&0x80 != 0 && r.err == nil; {
			ext = r.octet("TP-PI extension")
		}
		if pi&0x01 != 0 {
			s.PID = r.octet("TP-PID")
		}
		if pi&0x02 != 0 {
			s.DCS = DCS(r.octet("TP-DCS"))
		}
		if pi&0x04 != 0 {
			s.UserData = r.userData(s.DCS, first&0x40 != 0)
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode status report: %w", r.err)
	}
	return s, nil
}

// reader walks a TPDU. The first failure sticks and later reads return
// zero values, so decoders read field after field and check once, and a
// truncated PDU can never index out of range.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (r *reader) next(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.fail("%s: need %d octets at offset %d, have %d", field, n, r.off, len(r.b)-r.off)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) octet(field string) byte {
	if s := r.next(1, field); s != nil {
		return s[0]
	}
	return 0
}

func (r *reader) mti(first, want byte, name string) error {
	if r.err != nil {
		return r.err
	}
	if got := first & 0x03; got != want {
		return fmt.Errorf("%w: TP-MTI %d, want %d (%s)", ErrWrongType, got, want, name)
	}
	return nil
}

// address reads an OA/DA/RA: digit count, TOA, semi-octets.
func (r *reader) address(field string) Address {
	n := int(r.octet(field + " length"))
	toa := r.octet(field + " TOA")
	if r.err == nil && n > maxAddressDigits {
		r.fail("%s: %d digits", field, n)
	}
	raw := r.next((n+1)/2, field)
	if r.err != nil {
		return Address{}
	}
	a := Address{TOA: toa}
	switch toa & 0x70 {
	case 0x50: // alphanumeric: GSM7 packed, length in semi-octets
		septets, _ := unpackSeptets(raw, 0, n*4/7)
		a.Value = decodeSeptets(septets)
	default:
		v, ok := semiOctets(raw, n)
		if !ok {
			r.fail("%s: filler nibble inside the digits", field)
			return Address{}
		}
		if toa&0x70 == 0x10 { // international
			v = "+" + v
		}
		a.Value = v
	}
	return a
}

// semiOctets reads n BCD digits, low nibble first. 0xA-0xE are the
// TS 24.008 "*#abc" codes; 0xF is only padding and invalid inside n.
func semiOctets(raw []byte, n int) (string, bool) {
	const codes = "0123456789*#abc"
	out := make([]byte, n)
	for i := range out {
		nib := raw[i/2] >> (4 * (i % 2)) & 0x0F
		if nib == 0x0F {
			return "", false
		}
		out[i] = codes[nib]
	}
	return string(out), true
}

// timestamp reads a 7-octet SCTS/DT: swapped-BCD YY MM DD hh mm ss, then
// the zone in quarter hours with the sign in bit 3 (§5.2).
func (r *reader) timestamp(field string) time.Time {
	raw := r.next(7, field)
	if raw == nil {
		return time.Time{}
	}
	var v [6]int
	for i := range v {
		lo, hi := raw[i]&0x0F, raw[i]>>4
		if lo > 9 || hi > 9 {
			r.fail("%s: octet %d (%02X) is not BCD", field, i, raw[i])
			return time.Time{}
		}
		v[i] = int(lo)*10 + int(hi)
	}
	tz := raw[6]
	if tz>>4 > 9 {
		r.fail("%s: zone octet %02X is not BCD", field, tz)
		return time.Time{}
	}
	quarters := int(tz&0x07)*10 + int(tz>>4)
	if tz&0x08 != 0 {
		quarters = -quarters
	}
	year, month, day, hour, minute, sec := 2000+v[0], time.Month(v[1]), v[2], v[3], v[4], v[5]
	t := time.Date(year, month, day, hour, minute, sec, 0, time.FixedZone("", quarters*15*60))
	// time.Date normalises 31 April to 1 May; a changed date means the
	// fields were out of range.
	if month < 1 || month > 12 || t.Month() != month || t.Day() != day || hour > 23 || minute > 59 || sec > 59 {
		r.fail("%s: %02d-%02d-%02d %02d:%02d:%02d is not a valid time", field, v[0], v[1], v[2], hour, minute, sec)
		return time.Time{}
	}
	return t
}

// userData reads TP-UDL and TP-UD. UDL counts septets for GSM7 (header and
// fill bits included) and octets otherwise. Octets after the user data are
// ignored: UDL is authoritative.
func (r *reader) userData(dcs DCS, udhi bool) UserData {
	udl := int(r.octet("TP-UDL"))
	enc := dcs.Encoding()
	n := udl
	if enc == GSM7 {
		if udl > gsm7Single {
			r.fail("TP-UDL %d septets exceeds %d", udl, gsm7Single)
		}
		n = (udl*7 + 7) / 8
	}
	if n > 140 {
		r.fail("TP-UDL %d octets exceeds 140", n)
	}
	ud := r.next(n, "TP-UD")
	if r.err != nil {
		return UserData{}
	}

	var u UserData
	hdrLen := 0 // octets, including UDHL
	if udhi {
		if len(ud) == 0 {
			r.fail("TP-UDHI set but no user data")
			return UserData{}
		}
		hdrLen = 1 + int(ud[0])
		if hdrLen > len(ud) {
			r.fail("UDH length %d exceeds user data length %d", hdrLen, len(ud))
			return UserData{}
		}
		if err := u.parseHeader(ud[1:hdrLen]); err != nil {
			r.err = err
			return UserData{}
		}
	}

	switch enc {
	case GSM7:
		hdrSeptets := (hdrLen*8 + 6) / 7
		if hdrSeptets > udl {
			r.fail("UDH of %d septets exceeds TP-UDL %d", hdrSeptets, udl)
			return UserData{}
		}
		septets, ok := unpackSeptets(ud[hdrLen:], hdrSeptets*7-hdrLen*8, udl-hdrSeptets)
		if !ok {
			r.fail("user data shorter than TP-UDL %d", udl)
			return UserData{}
		}
		u.Text = decodeSeptets(septets)
	case UCS2:
		body := ud[hdrLen:]
		if len(body)%2 != 0 {
			r.fail("UCS2 user data has an odd length %d", len(body))
			return UserData{}
		}
		units := make([]uint16, len(body)/2)
		for i := range units {
			units[i] = uint16(body[2*i])<<8 | uint16(body[2*i+1])
		}
		u.Text = string(utf16.Decode(units))
	default:
		u.Data = append([]byte(nil), ud[hdrLen:]...)
	}
	return u
}

// parseHeader splits the UDH into IEs, skipping unknown ones by length.
func (u *UserData) parseHeader(h []byte) error {
	for i := 0; i < len(h); {
		if len(h)-i < 2 {
			return fmt.Errorf("%w: UDH: truncated IE at offset %d", ErrMalformed, i)
		}
		id, l := h[i], int(h[i+1])
		i += 2
		if l > len(h)-i {
			return fmt.Errorf("%w: UDH: IE %02X length %d overruns header", ErrMalformed, id, l)
		}
		data := h[i : i+l]
		i += l
		u.Header = append(u.Header, IE{ID: id, Data: append([]byte(nil), data...)})

		var c Concat
		switch {
		case id == 0x00 && l == 3:
			c = Concat{Ref: uint16(data[0]), Total: int(data[1]), Seq: int(data[2])}
		case id == 0x08 && l == 4:
			c = Concat{Ref: uint16(data[0])<<8 | uint16(data[1]), Ref16: true, Total: int(data[2]), Seq: int(data[3])}
		default:
			continue
		}
		// A repeated IE overrides the earlier one (TS 23.040 §9.2.3.24).
		if c.Total > 0 && c.Seq > 0 && c.Seq <= c.Total {
			u.Concat = &c
		}
	}
	return nil
}
