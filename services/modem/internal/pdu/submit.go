package pdu

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultMaxParts caps concatenation when Options.MaxParts is zero. Telit
// caps at 10 in its own commands and long alarms are a mistake upstream.
const DefaultMaxParts = 10

// maxConcatParts is what the one-octet "total" field of the header can say.
const maxConcatParts = 255

// Options tune Encode.
type Options struct {
	// MaxParts limits the number of parts; 0 means DefaultMaxParts, and
	// values above 255 are capped there because the header counts in one octet.
	MaxParts int
	// ValidityPeriod is the SMS's remaining TTL, sent as a relative TP-VP
	// rounded up to the next step the field can express and clamped to
	// [5 min, 63 weeks]. Zero sends no TP-VP (the SMSC default applies).
	ValidityPeriod time.Duration
	// StatusReport sets TP-SRR on every part, so each part's delivery is
	// reported and a message counts as delivered once all parts are (§5.3).
	StatusReport bool
}

// Part is one SMS-SUBMIT ready for the modem.
type Part struct {
	// Hex is what to write after the CMGS prompt (before Ctrl-Z): the SMSC
	// octet "00", meaning the SMSC stored by AT+CSCA, then the TPDU.
	Hex string
	// TPDULen is the <length> for AT+CMGS: TPDU octets, excluding the SMSC
	// octet. A wrong value makes modems answer +CMS ERROR 304 or hang.
	TPDULen int
	// Seq counts from 1 to Total.
	Seq, Total int
}

// TooManyPartsError reports how many parts a text needed against the limit.
// It matches ErrTooManyParts under errors.Is.
type TooManyPartsError struct {
	Needed, Max int
}

func (e *TooManyPartsError) Error() string {
	return fmt.Sprintf("%v: message needs %d parts, limit is %d", ErrTooManyParts, e.Needed, e.Max)
}

// Is makes errors.Is(err, ErrTooManyParts) true.
func (e *TooManyPartsError) Is(target error) bool { return target == ErrTooManyParts }

// RefCounter hands out concatenation reference numbers modulo 256 so that
// two long messages to the same handset in quick succession do not share a
// reference (the handset would merge their parts). Keep one per modem and
// seed it (for example randomly) so a restart does not reuse the last refs.
// The zero value starts at 0. It is safe for concurrent use.
type RefCounter struct {
	next atomic.Uint32
}

// NewRefCounter returns a counter whose first reference is start.
func NewRefCounter(start uint8) *RefCounter {
	c := &RefCounter{}
	c.next.Store(uint32(start))
	return c
}

// Next returns the next reference. 2^32 is a multiple of 256, so the
// sequence stays continuous when the underlying counter wraps.
func (c *RefCounter) Next() uint8 { return uint8(c.next.Add(1) - 1) }

// Encode turns text into SMS-SUBMIT parts for to, in GSM 7-bit when every
// character is in the default or extension table and in UTF-16 otherwise.
// ref supplies the concatenation reference; it is consumed only when the
// text needs more than one part and may be nil if the caller knows it won't.
func Encode(to Number, text string, ref *RefCounter, opt Options) ([]Part, error) {
	parts, err := encode(to, text, ref, opt)
	if err != nil {
		return nil, fmt.Errorf("encode sms: %w", err)
	}
	return parts, nil
}

func encode(to Number, text string, ref *RefCounter, opt Options) ([]Part, error) {
	if text == "" {
		return nil, ErrEmpty
	}
	da, err := to.address()
	if err != nil {
		return nil, err
	}
	vp, hasVP, err := relativeVP(opt.ValidityPeriod)
	if err != nil {
		return nil, err
	}
	limit := opt.MaxParts
	if limit <= 0 {
		limit = DefaultMaxParts
	}
	limit = min(limit, maxConcatParts)

	p := planText(text)
	total := len(p.ends)
	if total > limit {
		return nil, &TooManyPartsError{Needed: total, Max: limit}
	}

	first := byte(0x01) // TP-MTI SMS-SUBMIT
	if hasVP {
		first |= 0x10 // TP-VPF relative
	}
	if opt.StatusReport {
		first |= 0x20 // TP-SRR
	}
	var udh []byte
	if total > 1 {
		if ref == nil {
			return nil, errors.New("multi-part message needs a RefCounter")
		}
		first |= 0x40 // TP-UDHI
		udh = []byte{0x05, 0x00, 0x03, ref.Next(), byte(total), 0}
	}
	dcs := byte(0x00)
	if p.enc == UCS2 {
		dcs = 0x08
	}

	parts := make([]Part, total)
	buf := make([]byte, 0, 160) // largest TPDU: 7 header octets + 12 DA + UDL + 140
	start := 0
	for i, end := range p.ends {
		tpdu := append(buf[:0], first, 0x00) // TP-MR 0: the modem assigns its own
		tpdu = append(tpdu, da...)
		tpdu = append(tpdu, 0x00, dcs) // TP-PID normal
		if hasVP {
			tpdu = append(tpdu, vp)
		}
		udlAt := len(tpdu)
		tpdu = append(tpdu, 0)
		if udh != nil {
			udh[5] = byte(i + 1)
			tpdu = append(tpdu, udh...)
		}
		switch p.enc {
		case GSM7:
			// The text starts on a septet boundary of the whole UD, so pad the
			// header up to one; UDL counts septets including that padding.
			hdrSeptets := (len(udh)*8 + 6) / 7
			tpdu = packSeptets(tpdu, p.septets[start:end], hdrSeptets*7-len(udh)*8)
			tpdu[udlAt] = byte(hdrSeptets + end - start)
		case UCS2:
			for _, u := range p.units[start:end] {
				tpdu = append(tpdu, byte(u>>8), byte(u))
			}
			tpdu[udlAt] = byte(len(tpdu) - udlAt - 1)
		}
		parts[i] = Part{Hex: pduHex(tpdu), TPDULen: len(tpdu), Seq: i + 1, Total: total}
		start = end
	}
	return parts, nil
}

// pduHex renders the PDU-mode line: "00" (default SMSC) then the TPDU in
// upper-case hex, the form every modem manual shows.
func pduHex(tpdu []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 2, 2+2*len(tpdu))
	out[0], out[1] = '0', '0'
	for _, b := range tpdu {
		out = append(out, digits[b>>4], digits[b&0x0F])
	}
	return string(out)
}

// relativeVP converts a remaining lifetime into a relative TP-VP octet
// (TS 23.040 §9.2.3.12.1). It rounds up: rounding down could let the SMSC
// drop an SMS that still had time left, while a few extra minutes of
// validity cost nothing.
func relativeVP(d time.Duration) (vp byte, ok bool, err error) {
	const (
		day  = 24 * time.Hour
		week = 7 * day
	)
	// ceilDiv avoids d+step-1, which could overflow for huge durations.
	ceilDiv := func(d, step time.Duration) int {
		n := int(d / step)
		if d%step != 0 {
			n++
		}
		return n
	}
	switch {
	case d < 0:
		return 0, false, fmt.Errorf("%w: %v", ErrInvalidValidity, d)
	case d == 0:
		return 0, false, nil
	case d <= 12*time.Hour: // 0..143: (VP+1) × 5 min
		return byte(ceilDiv(d, 5*time.Minute) - 1), true, nil
	case d <= day: // 144..167: 12 h + (VP-143) × 30 min
		return byte(143 + ceilDiv(d-12*time.Hour, 30*time.Minute)), true, nil
	case d <= 30*day: // 168..196: (VP-166) days, from 2 days
		return byte(166 + ceilDiv(d, day)), true, nil
	case d <= 63*week: // 197..255: (VP-192) weeks, from 5 weeks
		return byte(192 + max(ceilDiv(d, week), 5)), true, nil
	default:
		return 0xFF, true, nil
	}
}

// vpDuration is the inverse of relativeVP.
func vpDuration(vp byte) time.Duration {
	v := time.Duration(vp)
	switch {
	case vp <= 143:
		return (v + 1) * 5 * time.Minute
	case vp <= 167:
		return 12*time.Hour + (v-143)*30*time.Minute
	case vp <= 196:
		return (v - 166) * 24 * time.Hour
	default:
		return (v - 192) * 7 * 24 * time.Hour
	}
}

// RequestStatusReport sets TP-SRR in a PDU-mode line as Encode renders it
// (SMSC field first, then an SMS-SUBMIT), so a status report is requested
// for a part encoded without Options.StatusReport.
func RequestStatusReport(hexPDU string) (string, error) {
	b, err := hex.DecodeString(hexPDU)
	if err != nil || len(b) < 2 || 1+int(b[0]) >= len(b) {
		return "", fmt.Errorf("%w: not a PDU-mode SMS-SUBMIT", ErrMalformed)
	}
	first := 1 + int(b[0])
	if b[first]&0x03 != 0x01 {
		return "", fmt.Errorf("%w: TP-MTI %d is not SMS-SUBMIT", ErrMalformed, b[first]&0x03)
	}
	b[first] |= 0x20
	return strings.ToUpper(hex.EncodeToString(b)), nil
}
