package at

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sensorsreport/smsgw/shared/logging"
)

// secretArgs names commands whose arguments are PINs, passwords, SIM APDUs
// (PIN verification travels in AT+CSIM) or dialled numbers.
var secretArgs = map[string]bool{
	"+CPIN": true, "+CPIN2": true, "+CPWD": true, "+CLCK": true, "+CSIM": true, "D": true,
}

// quotedNumber matches a quoted phone number as in +CLIP, +CSCA, +CMGL.
var quotedNumber = regexp.MustCompile(`"\+?[0-9]{5,}"`)

// redactTX renders bytes written to the modem for the debug trace.
func redactTX(s string) string {
	switch {
	case s == "\x1b":
		return "<ESC>"
	case strings.HasSuffix(s, "\x1a"):
		return fmt.Sprintf("<pdu %d hex digits><Ctrl-Z>", len(s)-1)
	}
	return redactCommand(strings.TrimSuffix(s, "\r"))
}

// redactCommand hides secret arguments and masks phone numbers in a
// command line; the modem's echo of it goes through here too.
func redactCommand(cmd string) string {
	sp := parseCommand(cmd)
	if secretArgs[sp.name] {
		head := 2 + len(sp.name)
		// Queries and tests ("?", "=?") carry nothing secret.
		if rest := cmd[head:]; rest != "?" && rest != "=?" && rest != "" {
			return cmd[:head] + "<redacted>"
		}
	}
	return maskNumbers(cmd)
}

// redactRX renders a received line for the debug trace: PDUs (and their
// echo) are summarised, phone numbers masked.
func redactRX(line string) string {
	if strings.ContainsRune(line, 0x1a) || looksHex(line) {
		return fmt.Sprintf("<hex %d digits>", len(line))
	}
	if len(line) >= 2 && strings.EqualFold(line[:2], "AT") {
		return redactCommand(line)
	}
	return maskNumbers(line)
}

func looksHex(s string) bool {
	return len(s) >= 16 && isHex(s)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func maskNumbers(s string) string {
	return quotedNumber.ReplaceAllStringFunc(s, func(q string) string {
		return `"` + logging.MaskPhone(q[1:len(q)-1]) + `"`
	})
}
