package at

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

var (
	// ErrTimeout: the modem gave no final result code in time. The command
	// may still complete later; the engine resynchronises before the next one.
	ErrTimeout = errors.New("timeout")
	// ErrClosed: the port hit EOF or a read/write error, or Close was called.
	// The engine is finished; the caller reopens the port and makes a new one.
	ErrClosed = errors.New("port closed")
	// ErrError: a plain ERROR, or Huawei's COMMAND NOT SUPPORT.
	ErrError = errors.New("ERROR")
	// ErrInvalidCommand: the command was refused before anything was written.
	ErrInvalidCommand = errors.New("invalid command")
	// ErrSubmitUnknown: the PDU and Ctrl-Z were handed to the modem but no
	// result came back, so the SMS may or may not have left. Never resend
	// automatically.
	ErrSubmitUnknown = errors.New("PDU handed to the modem, outcome unknown")

	// ErrPromptTimeout: AT+CMGS got no "> " prompt; ESC was sent and the PDU
	// was NOT submitted, so a retry is safe. It matches ErrTimeout.
	ErrPromptTimeout error = &phaseError{"no > prompt, PDU not submitted", []error{ErrTimeout}}
	// ErrResultTimeout: no +CMGS/OK/+CMS ERROR after the PDU; ESC was sent.
	// It matches ErrTimeout and ErrSubmitUnknown.
	ErrResultTimeout error = &phaseError{"no result after the PDU, outcome unknown", []error{ErrTimeout, ErrSubmitUnknown}}

	errCommandNotSupport = fmt.Errorf("%w (COMMAND NOT SUPPORT)", ErrError)
)

// phaseError is a sentinel that also matches broader sentinels, so callers
// can ask either "was it a timeout?" or "is the outcome unknown?".
type phaseError struct {
	msg  string
	also []error
}

func (e *phaseError) Error() string        { return e.msg }
func (e *phaseError) Is(target error) bool { return slices.Contains(e.also, target) }

// CMEError is a "+CME ERROR:" final result (27.007 §9.2). Code is -1 when the
// modem answered in words the engine does not know; Text holds the modem's
// own words whenever it answered verbosely (AT+CMEE=2).
type CMEError struct {
	Code int
	Text string
}

func (e *CMEError) Error() string { return describe("+CME ERROR", e.Code, e.Text, cmeMeaning) }

// CMSError is a "+CMS ERROR:" final result (27.005 §3.2.5), shaped like CMEError.
type CMSError struct {
	Code int
	Text string
}

func (e *CMSError) Error() string { return describe("+CMS ERROR", e.Code, e.Text, cmsMeaning) }

func describe(kind string, code int, text string, meaning map[int]string) string {
	if text != "" {
		return kind + ": " + text
	}
	if m, ok := meaning[code]; ok {
		return fmt.Sprintf("%s: %d (%s)", kind, code, m)
	}
	return fmt.Sprintf("%s: %d", kind, code)
}

// parseFinal reports whether line ends a command and, if so, its outcome.
func parseFinal(line string) (bool, error) {
	switch {
	case line == "OK":
		return true, nil
	case line == "ERROR":
		return true, ErrError
	case line == "COMMAND NOT SUPPORT":
		return true, errCommandNotSupport
	case strings.HasPrefix(line, "+CME ERROR:"):
		code, text := errorArg(line[len("+CME ERROR:"):], cmeCode)
		return true, &CMEError{Code: code, Text: text}
	case strings.HasPrefix(line, "+CMS ERROR:"):
		code, text := errorArg(line[len("+CMS ERROR:"):], cmsCode)
		return true, &CMSError{Code: code, Text: text}
	}
	return false, nil
}

// errorArg decodes the numeric (CMEE=1) or verbose (CMEE=2) argument.
func errorArg(arg string, byText map[string]int) (int, string) {
	arg = strings.TrimSpace(arg)
	if n, err := strconv.Atoi(arg); err == nil {
		return n, ""
	}
	if n, ok := byText[normalise(arg)]; ok {
		return n, arg
	}
	return -1, arg
}

// normalise folds the case and spacing differences between vendors' wording.
func normalise(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

// cmeMeaning holds the 27.007 §9.2 texts modems print with AT+CMEE=2.
var cmeMeaning = map[int]string{
	0: "phone failure", 1: "no connection to phone", 2: "phone-adaptor link reserved",
	3: "operation not allowed", 4: "operation not supported", 5: "PH-SIM PIN required",
	6: "PH-FSIM PIN required", 7: "PH-FSIM PUK required",
	10: "SIM not inserted", 11: "SIM PIN required", 12: "SIM PUK required", 13: "SIM failure",
	14: "SIM busy", 15: "SIM wrong", 16: "incorrect password", 17: "SIM PIN2 required",
	18: "SIM PUK2 required", 20: "memory full", 21: "invalid index", 22: "not found",
	23: "memory failure", 24: "text string too long", 25: "invalid characters in text string",
	26: "dial string too long", 27: "invalid characters in dial string",
	30: "no network service", 31: "network timeout", 32: "network not allowed - emergency calls only",
	40: "network personalization PIN required", 41: "network personalization PUK required",
	42: "network subset personalization PIN required", 43: "network subset personalization PUK required",
	44: "service provider personalization PIN required", 45: "service provider personalization PUK required",
	46: "corporate personalization PIN required", 47: "corporate personalization PUK required",
	100: "unknown", 515: "please wait, init or command processing in progress",
}

// cmsMeaning holds the 27.005 §3.2.5 texts for the ME/TA range.
var cmsMeaning = map[int]string{
	300: "ME failure", 301: "SMS service of ME reserved", 302: "operation not allowed",
	303: "operation not supported", 304: "invalid PDU mode parameter", 305: "invalid text mode parameter",
	310: "SIM not inserted", 311: "SIM PIN required", 312: "PH-SIM PIN required", 313: "SIM failure",
	314: "SIM busy", 315: "SIM wrong", 316: "SIM PUK required", 317: "SIM PIN2 required",
	318: "SIM PUK2 required", 320: "memory failure", 321: "invalid memory index", 322: "memory full",
	330: "SMSC address unknown", 331: "no network service", 332: "network timeout",
	340: "no +CNMA acknowledgement expected", 500: "unknown error",
}

var (
	cmeCode = byText(cmeMeaning)
	cmsCode = byText(cmsMeaning)
)

func byText(meaning map[int]string) map[string]int {
	m := make(map[string]int, len(meaning))
	for code, text := range meaning {
		m[normalise(text)] = code
	}
	return m
}
