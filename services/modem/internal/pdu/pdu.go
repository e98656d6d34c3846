// Package pdu encodes outgoing SMS as SMS-SUBMIT TPDUs for AT+CMGS in PDU
// mode and decodes the TPDUs a modem hands back (SMS-DELIVER, SMS-STATUS-REPORT,
// and SMS-SUBMIT for the simulator), following 3GPP TS 23.040 and 23.038 as
// summarised in modem-protocol.md §2 and §5. It picks the smallest alphabet
// (GSM 7-bit, else UTF-16), splits long texts into concatenated parts without
// tearing escape sequences or surrogate pairs, and normalises destination
// numbers with libphonenumber. It knows nothing about serial ports or AT
// framing beyond the PDU-mode SMSC prefix. It is written from the specs
// because the module proxy refuses every Go SMS/PDU library (§8.1).
package pdu

import "errors"

// Errors returned by this package; callers branch on them with errors.Is.
var (
	// ErrEmpty: there is no text to send.
	ErrEmpty = errors.New("empty message")
	// ErrTooManyParts: the text needs more parts than allowed. The concrete
	// error is a *TooManyPartsError carrying the counts.
	ErrTooManyParts = errors.New("too many parts")
	// ErrInvalidNumber: the destination is not a dialable phone number.
	ErrInvalidNumber = errors.New("invalid phone number")
	// ErrInvalidValidity: the validity period is negative, i.e. the SMS has
	// already outlived its TTL and must not be sent.
	ErrInvalidValidity = errors.New("invalid validity period")
	// ErrMalformed: a PDU is truncated, out of range or otherwise undecodable.
	ErrMalformed = errors.New("malformed PDU")
	// ErrWrongType: a TPDU decoded as one message type carries another TP-MTI.
	ErrWrongType = errors.New("unexpected TPDU type")
)

// Encoding is the alphabet of the user data.
type Encoding uint8

// Alphabets per TS 23.038 §4. Binary covers 8-bit data and compressed text,
// which this package passes through undecoded.
const (
	GSM7 Encoding = iota
	UCS2
	Binary
)

func (e Encoding) String() string {
	switch e {
	case GSM7:
		return "gsm7"
	case UCS2:
		return "ucs2"
	case Binary:
		return "8bit"
	}
	return "unknown"
}
