package smsapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sensorsreport/smsgw/shared/logging"
)

var (
	// ErrNoSMS is Next's answer when the queue is empty: the normal idle
	// state, not a failure.
	ErrNoSMS = errors.New("no sms to send")
	// ErrNotApplied means a PATCH answered 200 but the record does not show
	// what was sent (a concurrent write by the server's background task, or
	// a contract change). Permanent: re-sending blindly would loop.
	ErrNotApplied = errors.New("sms api did not apply the update")
	// ErrTransport wraps network failures: transient.
	ErrTransport = errors.New("sms api unreachable")
	// ErrBadResponse is a 2xx answer the client cannot read: permanent.
	ErrBadResponse = errors.New("unreadable sms api response")
	// ErrInvalid is a call the client refuses to make because the server
	// could only answer it with a 500 or a wrong result: permanent.
	ErrInvalid = errors.New("invalid sms api call")
)

// APIError is a non-2xx answer. Messages are the human-readable parts of
// whichever error body shape the server used, with phone-number-like digit
// runs masked; Body is the raw body (truncated) and may hold personal data,
// so log Messages, never Body.
type APIError struct {
	Status   int
	Method   string
	Path     string
	Messages []string
	Body     string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d", e.Method, e.Path, e.Status)
	if len(e.Messages) > 0 {
		s += ": " + strings.Join(e.Messages, "; ")
	}
	return s
}

// Temporary reports whether retrying the same call may succeed: 5xx, 408,
// 429, and 401 and 403, which mean the token (or the identity provider
// behind it) is at fault, not the call: a result must not be dropped for
// them while the SMS may still be Entrusted. Every other 4xx is permanent.
func (e *APIError) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests ||
		e.tokenRefused()
}

// tokenRefused is an answer that a fresh token may turn around.
func (e *APIError) tokenRefused() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// ClaimError is a claim whose answer names an SMS the gateway cannot use:
// a JSON object whose fields do not decode, or one without a Tenant. The
// SMS is Entrusted to this gateway upstream, so the caller should report it
// Failed at once with ID and Tenant, which were read leniently (Tenant may
// be empty). Err wraps ErrBadResponse.
type ClaimError struct {
	ID, Tenant string
	Err        error
}

func (e *ClaimError) Error() string {
	return fmt.Sprintf("sms %s (tenant %q) cannot be used: %v", e.ID, e.Tenant, e.Err)
}

func (e *ClaimError) Unwrap() error { return e.Err }

// IsTransient reports whether err is worth retrying later: network
// failures and temporary HTTP statuses.
func IsTransient(err error) bool {
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.Temporary()
	}
	return errors.Is(err, ErrTransport)
}

const (
	maxBodyKept  = 4096
	maxMessageLn = 300
)

// parseError reads every error body shape the API produces (contract
// §1.4): {"Message":..}, {"Errors":[..]}, camelCase ProblemDetails with an
// errors map, a bare JSON string, plain text, or nothing (405, 503).
func parseError(status int, method, path string, body []byte) *APIError {
	e := &APIError{Status: status, Method: method, Path: path, Body: clip(string(body), maxBodyKept)}
	t := bytes.TrimSpace(body)
	if len(t) == 0 {
		return e
	}
	var v any
	if json.Unmarshal(t, &v) != nil {
		e.Messages = []string{clean(string(t))}
		return e
	}
	switch x := v.(type) {
	case string:
		e.Messages = []string{clean(x)}
	case map[string]any:
		for _, k := range []string{"title", "message", "detail"} {
			if s, ok := lookupFold(x, k).(string); ok && s != "" {
				e.Messages = append(e.Messages, clean(s))
			}
		}
		e.Messages = append(e.Messages, errorList(lookupFold(x, "errors"))...)
	case []any:
		e.Messages = errorList(x)
	default:
		e.Messages = []string{clean(string(t))}
	}
	return e
}

// errorList flattens {"Errors":["a"]} and ProblemDetails' {"errors":{"F":["a"]}}.
func errorList(v any) []string {
	var out []string
	switch x := v.(type) {
	case []any:
		for _, m := range x {
			if s, ok := m.(string); ok {
				out = append(out, clean(s))
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			for _, m := range errorList(x[k]) {
				if k != "" {
					m = k + ": " + m
				}
				out = append(out, m)
			}
		}
	}
	return out
}

// lookupFold finds a key the way the client decodes: case-insensitively.
func lookupFold(m map[string]any, key string) any {
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

var digitRun = regexp.MustCompile(`\+?\w+`)

// clean masks anything that looks like a phone number (a run of 7 or more
// digits, optionally after "+") and bounds the length, so messages are safe
// to log.
func clean(s string) string {
	s = digitRun.ReplaceAllStringFunc(s, func(tok string) string {
		d := strings.TrimPrefix(tok, "+")
		if len(d) < 7 || strings.IndexFunc(d, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
			return tok
		}
		return logging.MaskPhone(tok)
	})
	return clip(strings.TrimSpace(s), maxMessageLn)
}

// clip cuts s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
