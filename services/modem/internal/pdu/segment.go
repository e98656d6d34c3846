package pdu

import "unicode/utf16"

// Payload limits per part (TS 23.040 §9.2.3.24.1, modem-protocol.md §2.9).
// Multi-part limits leave room for the 6-octet 8-bit-reference concatenation
// header: 48 bits plus 1 fill bit = 7 septets, or 6 of 140 octets.
const (
	gsm7Single = 160
	gsm7Multi  = 153
	ucs2Single = 70
	ucs2Multi  = 67
)

// plan is a text encoded in its cheapest alphabet and cut into parts.
type plan struct {
	enc     Encoding
	septets []byte   // GSM7 user data, extension characters as esc+code
	units   []uint16 // UCS2 user data as UTF-16 code units
	ends    []int    // exclusive end index of each part in septets/units
}

func planText(text string) plan {
	if septets, ok := appendSeptets(make([]byte, 0, len(text)), text); ok {
		return plan{enc: GSM7, septets: septets,
			ends: cut(septets, gsm7Single, gsm7Multi, func(s byte) bool { return s == esc })}
	}
	// UTF-16 rather than strict UCS-2: handsets decode surrogate pairs, and
	// emoji would otherwise be unsendable (§2.9 step 5).
	units := utf16.Encode([]rune(text))
	return plan{enc: UCS2, units: units,
		ends: cut(units, ucs2Single, ucs2Multi, func(u uint16) bool { return u >= 0xD800 && u <= 0xDBFF })}
}

// cut returns the part boundaries. A part whose last unit is a lead (an
// escape, or a high surrogate) ends one unit early so the pair stays whole:
// a receiver decodes each part on its own before joining the text.
func cut[T byte | uint16](units []T, single, multi int, lead func(T) bool) []int {
	n := len(units)
	if n <= single {
		return []int{n}
	}
	ends := make([]int, 0, (n+multi-1)/multi)
	for start := 0; start < n; {
		end := min(start+multi, n)
		if end < n && lead(units[end-1]) {
			end--
		}
		ends = append(ends, end)
		start = end
	}
	return ends
}

// PlanParts reports the alphabet Encode would choose for text and how many
// parts it needs, ignoring any part limit; it is meant for logs and metrics.
// An empty text needs zero parts.
func PlanParts(text string) (Encoding, int) {
	if text == "" {
		return GSM7, 0
	}
	p := planText(text)
	return p.enc, len(p.ends)
}
