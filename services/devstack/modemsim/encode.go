package modemsim

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf16"
)

// The simulator's own SMS-DELIVER and SMS-STATUS-REPORT encoders, written
// from 23.040 independently of services/modem so each side checks the other.

var gsm7Index = func() map[rune]byte {
	m := make(map[rune]byte, 128)
	for i, r := range gsm7Default {
		if i != 0x1B {
			m[r] = byte(i)
		}
	}
	return m
}()

var gsm7ExtIndex = func() map[rune]byte {
	m := make(map[rune]byte, len(gsm7Ext))
	for b, r := range gsm7Ext {
		m[r] = b
	}
	return m
}()

// toSeptets returns text in GSM 7-bit septets (extension characters as
// ESC + code), or false when a character is in neither table.
func toSeptets(text string) ([]byte, bool) {
	var out []byte
	for _, r := range text {
		if b, ok := gsm7Index[r]; ok {
			out = append(out, b)
		} else if b, ok := gsm7ExtIndex[r]; ok {
			out = append(out, 0x1B, b)
		} else {
			return nil, false
		}
	}
	return out, true
}

// packSeptets packs septets LSB first after fill zero bits.
func packSeptets(septets []byte, fill int) []byte {
	nbits := fill + 7*len(septets)
	out := make([]byte, (nbits+7)/8)
	for i, s := range septets {
		bit := fill + 7*i
		out[bit/8] |= s << (bit % 8)
		if bit%8 > 1 {
			out[bit/8+1] |= s >> (8 - bit%8)
		}
	}
	return out
}

// encodeAddress renders a TP-OA/TP-RA: length in digits, type, BCD digits.
func encodeAddress(num string) []byte {
	toa := byte(0x81)
	if strings.HasPrefix(num, "+") {
		toa, num = 0x91, num[1:]
	}
	out := []byte{byte(len(num)), toa}
	for i := 0; i < len(num); i += 2 {
		lo := num[i] - '0'
		hi := byte(0x0F)
		if i+1 < len(num) {
			hi = num[i+1] - '0'
		}
		out = append(out, hi<<4|lo)
	}
	return out
}

// encodeTime renders a 7-octet service-centre time stamp in t's zone.
func encodeTime(t time.Time) []byte {
	swap := func(v int) byte { return byte(v%10<<4 | v/10%10) }
	_, off := t.Zone()
	q := off / 900
	tz := byte(0)
	if q < 0 {
		q, tz = -q, 0x08
	}
	tz |= byte(q%10<<4) | byte(q/10)
	return []byte{swap(t.Year() % 100), swap(int(t.Month())), swap(t.Day()),
		swap(t.Hour()), swap(t.Minute()), swap(t.Second()), tz}
}

// Incoming describes an SMS the network delivers to the simulated modem.
type Incoming struct {
	From string // "+4072..." or national digits
	Text string
	// Direct routes it as +CMT instead of storing it and announcing +CMTI.
	Direct bool
	// Ref16 uses a 16-bit concatenation reference (IEI 0x08); Ref is the
	// reference (default: a counter).
	Ref16 bool
	Ref   int
	// Order lists the part numbers (1-based) in delivery order; nil is in
	// order. Parts not listed are not delivered.
	Order []int
	// UCS2 forces UCS-2 even when GSM 7-bit would do.
	UCS2 bool
	SCTS time.Time // default: now
}

// deliverPDUs splits in into SMS-DELIVER TPDUs, in part order.
func deliverPDUs(in Incoming, ref int) ([][]byte, error) {
	if in.From == "" {
		return nil, fmt.Errorf("modemsim: incoming SMS needs From")
	}
	scts := in.SCTS
	if scts.IsZero() {
		scts = time.Now()
	}
	septets, gsm := toSeptets(in.Text)
	if in.UCS2 {
		gsm = false
	}
	udhLen := 6
	if in.Ref16 {
		udhLen = 7
	}
	var chunks [][]byte // septets or UTF-16 octets per part
	dcs := byte(0x00)
	if gsm {
		if len(septets) <= 160 {
			chunks = [][]byte{septets}
		} else {
			per := (140*8 - (udhLen*8+6)/7*7) / 7 // 153 with an 8-bit ref
			for start := 0; start < len(septets); {
				end := min(start+per, len(septets))
				if septets[end-1] == 0x1B && end < len(septets) {
					end-- // never split an escape from its character
				}
				chunks = append(chunks, septets[start:end])
				start = end
			}
		}
	} else {
		dcs = 0x08
		units := utf16.Encode([]rune(in.Text))
		per := 70
		if len(units) > 70 {
			per = (140 - udhLen) / 2 // 67
		}
		for start := 0; start < len(units); {
			end := min(start+per, len(units))
			if end < len(units) && utf16.IsSurrogate(rune(units[end-1])) && units[end-1] < 0xDC00 {
				end-- // keep a surrogate pair in one part
			}
			var b []byte
			for _, u := range units[start:end] {
				b = append(b, byte(u>>8), byte(u))
			}
			chunks = append(chunks, b)
			start = end
		}
	}
	total := len(chunks)
	if total > 255 {
		return nil, fmt.Errorf("modemsim: %d parts", total)
	}
	out := make([][]byte, total)
	for i, c := range chunks {
		fo := byte(0x04) // SMS-DELIVER, no more messages waiting
		var udh []byte
		if total > 1 {
			fo |= 0x40
			if in.Ref16 {
				udh = []byte{0x06, 0x08, 0x04, byte(ref >> 8), byte(ref), byte(total), byte(i + 1)}
			} else {
				udh = []byte{0x05, 0x00, 0x03, byte(ref), byte(total), byte(i + 1)}
			}
		}
		t := []byte{fo}
		t = append(t, encodeAddress(in.From)...)
		t = append(t, 0x00, dcs)
		t = append(t, encodeTime(scts)...)
		if gsm {
			hdrSeptets := (len(udh)*8 + 6) / 7
			ud := packSeptets(c, hdrSeptets*7)
			copy(ud, udh)
			t = append(t, byte(hdrSeptets+len(c)))
			t = append(t, ud...)
		} else {
			t = append(t, byte(len(udh)+len(c)))
			t = append(t, udh...)
			t = append(t, c...)
		}
		out[i] = t
	}
	return out, nil
}

// DeliverPDUs returns the SMS-DELIVER TPDUs (without the SMSC field) the
// network would deliver for in, in part order, with concatenation
// reference ref; tests of a receiver use it as an independent encoder.
func DeliverPDUs(in Incoming, ref int) ([][]byte, error) { return deliverPDUs(in, ref) }

// StatusReportPDU returns an SMS-STATUS-REPORT TPDU for the part with
// message reference mr sent to recipient, with TP-ST st.
func StatusReportPDU(mr int, recipient string, submitted, discharged time.Time, st byte) []byte {
	return statusReportPDU(mr, recipient, submitted, discharged, st)
}

// statusReportPDU builds an SMS-STATUS-REPORT for the part with TP-MR mr.
func statusReportPDU(mr int, recipient string, scts, dt time.Time, st byte) []byte {
	t := []byte{0x06, byte(mr)} // STATUS-REPORT, MMS; TP-SRQ 0
	t = append(t, encodeAddress(recipient)...)
	t = append(t, encodeTime(scts)...)
	t = append(t, encodeTime(dt)...)
	return append(t, st)
}

// withSMSC prefixes a TPDU with the SMSC field, as modems list it.
func withSMSC(smsc string, tpdu []byte) string {
	a := encodeAddress(smsc)
	field := append([]byte{byte(len(a) - 1)}, a[1:]...)
	return fmt.Sprintf("%X%X", field, tpdu)
}
