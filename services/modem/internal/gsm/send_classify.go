package gsm

import (
	"errors"

	"github.com/sensorsreport/smsgw/services/modem/internal/at"
)

// Class says what a failed submit means for the SMS.
type Class int

const (
	// Transient: nothing was submitted, or the network asked us to retry.
	Transient Class = iota
	// Permanent: the network or the SIM refused this SMS; retrying cannot help.
	Permanent
	// Unknown: the PDU may have reached the SMSC; it must never be resent.
	Unknown
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	}
	return "unknown"
}

// Classify maps an error from Submit to what it means for the SMS. It is the
// one place where +CMS ERROR codes are split into transient and permanent
// (modem-protocol.md §1.4).
func Classify(err error) Class {
	var cms *at.CMSError
	var cme *at.CMEError
	switch {
	case err == nil:
		return Transient
	case errors.Is(err, at.ErrSubmitUnknown), errors.Is(err, ErrSubmitInterrupted):
		return Unknown
	case errors.Is(err, at.ErrPromptTimeout), errors.Is(err, ErrNotReady):
		return Transient
	case errors.As(err, &cms):
		return classifyCMS(cms.Code)
	case errors.As(err, &cme):
		return Transient
	}
	// Anything else, a bare context error included, stopped Submit before
	// the PDU was written: the engine marks every later failure with
	// at.ErrSubmitUnknown.
	return Transient
}

func classifyCMS(code int) Class {
	switch {
	case code == 332: // network timeout: the SMS may or may not have left
		return Unknown
	case code == 1, code == 8, code == 10, code == 21, code == 28, code == 29, code == 30,
		code == 50, code == 69, code == 303, code == 304, code == 305, code == 330,
		code == 310, code == 311, code == 313, code == 316:
		return Permanent
	case code >= 128 && code <= 255 && code != 0xC0 && code != 0xC2:
		return Permanent
	}
	// 27, 38, 41, 42, 47, 81-127, 0xC0, 0xC2, 300-302, 314, 322, 331, 500,
	// 512+ and anything unlisted: worth a bounded retry.
	return Transient
}
