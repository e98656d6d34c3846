package smsapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// field and object build JSON with a fixed key order, the way STJ writes C#
// properties in declaration order.
type field struct {
	k string
	v any
}

type object []field

// rawJSON is a value echoed verbatim (extension data, JsonElement).
type rawJSON []byte

// writeJSONValue renders v with STJ's default encoder rules, which escape
// non-ASCII and HTML-sensitive characters ("+" becomes \u002B): a client
// must decode JSON, not grep it.
func writeJSONValue(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		writeJSONString(b, x)
	case int:
		fmt.Fprintf(b, "%d", x)
	case schema.Status:
		fmt.Fprintf(b, "%d", int(x))
	case ProviderStatus:
		fmt.Fprintf(b, "%d", int(x))
	case netTime:
		writeJSONString(b, x.format())
	case rawJSON:
		b.Write(x)
	case []string:
		b.WriteByte('[')
		for i, s := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, s)
		}
		b.WriteByte(']')
	case object:
		b.WriteByte('{')
		for i, f := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, f.k)
			b.WriteByte(':')
			writeJSONValue(b, f.v)
		}
		b.WriteByte('}')
	case []object:
		b.WriteByte('[')
		for i, o := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONValue(b, o)
		}
		b.WriteByte(']')
	default:
		panic(fmt.Sprintf("smsapi: no JSON rendering for %T", v))
	}
}

func writeJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch r {
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\\':
			b.WriteString(`\\`)
		default:
			if r < 0x20 || r > 0x7e || strings.ContainsRune("\"&'+<>`", r) {
				if r > 0xffff {
					r -= 0x10000
					fmt.Fprintf(b, `\u%04X\u%04X`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
				} else {
					fmt.Fprintf(b, `\u%04X`, r)
				}
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// smsView is one response's rendering of an SMS: stored records come back
// from Mongo as UTC milliseconds, in-memory objects (POST, next) keep what
// was parsed or computed.
type smsView struct {
	sms    SMS
	ts     netTime
	sentAt *netTime
	extra  []member
}

func storedView(s SMS) smsView {
	v := smsView{sms: s, ts: utc(s.Timestamp)}
	if s.SentAt != nil {
		t := utc(*s.SentAt)
		v.sentAt = &t
	}
	return v
}

// object renders the SmsModel with null properties omitted.
func (v smsView) object() object {
	s := v.sms
	o := object{
		{"Id", s.ID},
		{"PhoneNumber", s.PhoneNumber},
		{"Message", s.Message},
		{"Timestamp", v.ts},
		{"Tenant", s.Tenant},
		{"Status", s.Status},
		{"StatusMessage", statusMessage(s.Status)},
	}
	if v.sentAt != nil {
		o = append(o, field{"SentAt", *v.sentAt})
	}
	if s.TTL != nil {
		o = append(o, field{"Ttl", *s.TTL})
	}
	for _, f := range []struct {
		k string
		p *string
	}{{"CountryCode", s.CountryCode}, {"Provider", s.Provider}, {"TrackingId", s.TrackingID}, {"MessageType", s.MessageType}, {"CustomData", s.CustomData}} {
		if f.p != nil {
			o = append(o, field{f.k, *f.p})
		}
	}
	o = append(o, field{"RetryCount", s.RetryCount})
	for _, m := range v.extra {
		o = append(o, field{m.key, rawJSON(m.compact())})
	}
	return o
}

func (p Provider) object() object {
	codes := p.SupportedCountryCodes
	if codes == nil {
		codes = []string{}
	}
	return object{
		{"Id", p.ID},
		{"Name", p.Name},
		{"LastSeen", utc(p.LastSeen)},
		{"Status", p.Status},
		{"SupportedCountryCodes", codes},
	}
}

// shape applies ShapeDataFilterAttribute for ?fields=a,b: only the named
// properties (case-insensitive) survive, and Tenant never does.
func shape(v any, fields string) any {
	keep := func(o object) object {
		var out object
		for _, f := range o {
			if strings.EqualFold(f.k, "Tenant") {
				continue
			}
			for _, want := range strings.Split(fields, ",") {
				if strings.EqualFold(strings.TrimSpace(want), f.k) {
					out = append(out, f)
					break
				}
			}
		}
		if out == nil {
			out = object{}
		}
		return out
	}
	switch x := v.(type) {
	case object:
		return keep(x)
	case []object:
		out := make([]object, len(x))
		for i, o := range x {
			out[i] = keep(o)
		}
		return out
	}
	return v
}

const genericError = "An unexpected error occurred. Please try again later."

func writeBody(w http.ResponseWriter, status int, contentType string, v any) {
	var b bytes.Buffer
	writeJSONValue(&b, v)
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeBody(w, status, "application/json; charset=utf-8", v)
}

// writeMessage is NotFound("text") after NotFoundStringToJsonFilter.
func writeMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, object{{"Message", msg}})
}

// writeErrors is HttpGlobalExceptionFilter's JsonErrorResponse.
func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	writeJSON(w, status, object{{"Errors", msgs}})
}

// writeProblem is [ApiController]'s automatic ValidationProblemDetails, the
// one camelCase body of the API.
func writeProblem(w http.ResponseWriter, errs object) {
	writeBody(w, http.StatusBadRequest, "application/problem+json; charset=utf-8", object{
		{"type", "https://tools.ietf.org/html/rfc9110#section-15.5.1"},
		{"title", "One or more validation errors occurred."},
		{"status", http.StatusBadRequest},
		{"errors", errs},
		{"traceId", traceID()},
	})
}

func writeUnsupportedMediaType(w http.ResponseWriter) {
	writeBody(w, http.StatusUnsupportedMediaType, "application/problem+json; charset=utf-8", object{
		{"type", "https://tools.ietf.org/html/rfc9110#section-15.5.16"},
		{"title", "Unsupported Media Type"},
		{"status", http.StatusUnsupportedMediaType},
		{"traceId", traceID()},
	})
}

// traceID imitates a W3C traceparent, as ASP.NET puts in ProblemDetails.
func traceID() string {
	return "00-" + newObjectID() + "00000000-" + newObjectID()[:16] + "-00"
}

// member is one property of a request object, in document order.
type member struct {
	key string
	raw json.RawMessage
}

func (m member) compact() []byte {
	var b bytes.Buffer
	if json.Compact(&b, m.raw) != nil {
		return m.raw
	}
	return b.Bytes()
}
