package pdu

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/nyaruka/phonenumbers"
)

// Number is a destination address for TP-DA.
type Number struct {
	// Digits are the ASCII digits without any '+' or international prefix.
	Digits string
	// International selects TOA 0x91 (the digits start with a country code);
	// otherwise TOA 0x81 (unknown type, for national and short numbers).
	International bool
}

// String returns the number as dialled: E.164 with '+' when international.
// Log it through logging.Phone, never raw.
func (n Number) String() string {
	if n.International {
		return "+" + n.Digits
	}
	return n.Digits
}

// maxAddressDigits is what the 10 address octets of TP-DA can hold.
const maxAddressDigits = 20

// address encodes n as TP-DA: digit count, TOA, semi-octets with the first
// digit in the low nibble and F padding (TS 23.040 §9.1.2.5).
func (n Number) address() ([]byte, error) {
	if len(n.Digits) == 0 || len(n.Digits) > maxAddressDigits {
		return nil, fmt.Errorf("%w: destination must have 1 to %d digits, has %d",
			ErrInvalidNumber, maxAddressDigits, len(n.Digits))
	}
	toa := byte(0x81)
	if n.International {
		toa = 0x91
	}
	out := make([]byte, 2, 2+(len(n.Digits)+1)/2)
	out[0], out[1] = byte(len(n.Digits)), toa
	for i := 0; i < len(n.Digits); i++ {
		c := n.Digits[i]
		if !isDigit(c) {
			return nil, fmt.Errorf("%w: destination may contain only digits", ErrInvalidNumber)
		}
		if i%2 == 0 {
			out = append(out, 0xF0|(c-'0')) // high nibble stays F if no digit follows
		} else {
			out[len(out)-1] = (c-'0')<<4 | out[len(out)-1]&0x0F
		}
	}
	return out, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// ParseNumber normalises a human-entered phone number to E.164. National
// numbers ("0722 000 111") are read in defaultRegion (ISO 3166 code, e.g.
// "RO"); "+" and "00" introduce international numbers. Spaces, dashes, dots,
// slashes and parentheses are ignored. Anything else, and anything
// libphonenumber does not consider a valid number, is rejected with
// ErrInvalidNumber and the reason. The number itself is kept out of the
// error text because errors end up in logs.
func ParseNumber(raw, defaultRegion string) (Number, error) {
	n, err := parseNumber(raw, defaultRegion)
	if err != nil {
		return Number{}, fmt.Errorf("parse number: %w", err)
	}
	return n, nil
}

func parseNumber(raw, defaultRegion string) (Number, error) {
	invalid := func(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidNumber, reason) }

	s := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || strings.ContainsRune("-./()", r) {
			return -1
		}
		return r
	}, raw)
	// "00" is the international prefix in most of the world, including the
	// default region RO; libphonenumber would only honour it for regions that
	// use it, so convert it up front.
	if rest, ok := strings.CutPrefix(s, "00"); ok {
		s = "+" + rest
	}
	digits := strings.TrimPrefix(s, "+")
	switch {
	case digits == "":
		return Number{}, invalid("no digits")
	case strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) >= 0:
		return Number{}, invalid("only digits, a leading + and separators are allowed")
	case len(digits) > 15:
		return Number{}, invalid("more than 15 digits (E.164 maximum)")
	}

	num, err := phonenumbers.Parse(s, strings.ToUpper(defaultRegion))
	if err != nil {
		if errors.Is(err, phonenumbers.ErrInvalidCountryCode) {
			return Number{}, invalid("unknown country code, or a national number without a default region")
		}
		return Number{}, invalid(err.Error())
	}
	if !phonenumbers.IsValidNumber(num) {
		switch phonenumbers.IsPossibleNumberWithReason(num) {
		case phonenumbers.TOO_SHORT:
			return Number{}, invalid("too short")
		case phonenumbers.TOO_LONG:
			return Number{}, invalid("too long")
		case phonenumbers.INVALID_COUNTRY_CODE:
			return Number{}, invalid("unknown country code")
		}
		return Number{}, invalid("not a valid number in its country")
	}
	e164 := phonenumbers.Format(num, phonenumbers.E164)
	return Number{Digits: strings.TrimPrefix(e164, "+"), International: true}, nil
}
