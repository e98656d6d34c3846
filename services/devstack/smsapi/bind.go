package smsapi

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// jsonContent reports whether MVC's System.Text.Json input formatter would
// accept the request's Content-Type; otherwise MVC answers 415.
func jsonContent(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" ||
		(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// parseMembers splits a JSON document into the members of its top-level
// object, in order. isObject is false for valid JSON of another kind.
func parseMembers(body []byte) (members []member, isObject, valid bool) {
	if !json.Valid(body) {
		return nil, false, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, _ := dec.Token(); tok != json.Delim('{') {
		return nil, false, true
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false, false
		}
		members = append(members, member{key: tok.(string), raw: raw})
	}
	return members, true, true
}

func jsonKind(raw json.RawMessage) byte {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return 0
	}
	switch t[0] {
	case '"', 'n', 't', 'f', '{', '[':
		return t[0]
	}
	return '0'
}

// asString reads a string property; JSON null gives nil.
func asString(raw json.RawMessage) (*string, bool) {
	switch jsonKind(raw) {
	case 'n':
		return nil, true
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return &s, true
	}
	return nil, false
}

// asInt32 reads an Int32 the way STJ does: an integer literal, or with the
// web defaults' AllowReadingFromString (quoted) when quoted is set.
func asInt32(raw json.RawMessage, quoted bool) (v int, null, ok bool) {
	text := string(bytes.TrimSpace(raw))
	switch jsonKind(raw) {
	case 'n':
		return 0, true, true
	case '"':
		if !quoted || json.Unmarshal(raw, &text) != nil {
			return 0, false, false
		}
	case '0':
	default:
		return 0, false, false
	}
	n, err := strconv.ParseInt(text, 10, 32)
	if err != nil {
		return 0, false, false
	}
	return int(n), false, true
}

// asTime reads a DateTime; JSON null gives null.
func asTime(raw json.RawMessage) (t netTime, null, ok bool) {
	switch jsonKind(raw) {
	case 'n':
		return netTime{}, true, true
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return netTime{}, false, false
		}
		t, ok := parseNetTime(s)
		return t, false, ok
	}
	return netTime{}, false, false
}

// smsProps are SmsModel's properties in declaration order.
var smsProps = []string{"Id", "PhoneNumber", "Message", "Timestamp", "Tenant", "Status", "StatusMessage",
	"SentAt", "Ttl", "CountryCode", "Provider", "TrackingId", "MessageType", "CustomData", "RetryCount"}

// canonical matches a request key case-insensitively, as model binding does.
func canonical(key string, props []string) (string, bool) {
	for _, p := range props {
		if strings.EqualFold(p, key) {
			return p, true
		}
	}
	return "", false
}

// smsInput is a POST or PUT body after model binding.
type smsInput struct {
	sms        SMS
	ts         *netTime // nil: UtcNow at deserialization
	sentAt     *netTime
	ttlSet     bool
	bodyTenant bool // the body carried a non-empty Tenant (POST needs it)
	extra      []member
	stringEnum bool
}

// conversionError is STJ's JsonException as ValidationProblemDetails.
func conversionError(param, key, typ string) object {
	return object{
		{"$." + key, []string{"The JSON value could not be converted to " + typ + ". Path: $." + key + "."}},
		{param, []string{"The " + param + " field is required."}},
	}
}

// bindSMS binds an SmsModel body. A non-nil problem is the 400 MVC sends
// before the action runs.
func bindSMS(body []byte) (in smsInput, problem object) {
	members, isObject, valid := parseMembers(body)
	if !isObject {
		msg := "The JSON value could not be converted to SensorsReport.SMS.API.Models.SmsModel. Path: $."
		if !valid {
			msg = "The input is not valid JSON. Path: $."
		}
		return in, object{{"$", []string{msg}}, {"sms", []string{"The sms field is required."}}}
	}
	var phone, text, provider *string
	for _, m := range members {
		prop, known := canonical(m.key, smsProps)
		if !known {
			in.extra = append(in.extra, m)
			continue
		}
		ok := true
		switch prop {
		case "Id":
			var p *string
			if p, ok = asString(m.raw); ok && p != nil {
				in.sms.ID = *p
			}
		case "PhoneNumber":
			phone, ok = asString(m.raw)
		case "Message":
			text, ok = asString(m.raw)
		case "Tenant":
			var p *string
			p, ok = asString(m.raw)
			in.bodyTenant = ok && p != nil && *p != ""
		case "Provider":
			provider, ok = asString(m.raw)
		case "CountryCode":
			in.sms.CountryCode, ok = asString(m.raw)
		case "TrackingId":
			in.sms.TrackingID, ok = asString(m.raw)
		case "MessageType":
			in.sms.MessageType, ok = asString(m.raw)
		case "CustomData":
			in.sms.CustomData, ok = asString(m.raw)
		case "StatusMessage":
			// Read-only: STJ skips it.
		case "Status":
			if jsonKind(m.raw) == '"' {
				in.stringEnum = true
				return in, conversionError("sms", m.key, "SensorsReport.SMS.API.Models.SmsStatusEnum")
			}
			var v int
			var null bool
			v, null, ok = asInt32(m.raw, false)
			ok = ok && !null
			in.sms.Status = schema.Status(v)
		case "RetryCount":
			var null bool
			in.sms.RetryCount, null, ok = asInt32(m.raw, true)
			ok = ok && !null
		case "Ttl":
			v, null, okInt := asInt32(m.raw, true)
			ok, in.ttlSet, in.sms.TTL = okInt, true, nil
			if !null {
				in.sms.TTL = &v
			}
		case "Timestamp":
			t, null, okT := asTime(m.raw)
			ok = okT && !null
			in.ts = &t
		case "SentAt":
			t, null, okT := asTime(m.raw)
			ok, in.sentAt = okT, nil
			if !null {
				in.sentAt = &t
			}
		}
		if !ok {
			return in, conversionError("sms", m.key, "SensorsReport.SMS.API.Models.SmsModel")
		}
	}
	for _, req := range []struct {
		name string
		v    *string
	}{{"PhoneNumber", phone}, {"Message", text}, {"Provider", provider}} {
		if req.v == nil || *req.v == "" {
			problem = append(problem, field{req.name, []string{"The " + req.name + " field is required."}})
		}
	}
	if problem != nil {
		return in, problem
	}
	in.sms.PhoneNumber, in.sms.Message, in.sms.Provider = *phone, *text, provider
	return in, nil
}

var providerProps = []string{"Id", "Name", "LastSeen", "Status", "SupportedCountryCodes"}

// providerInput is a register body after model binding.
type providerInput struct {
	name    string
	codes   []string
	unknown []string
}

// bindProvider binds a ProviderModel body. Id, LastSeen and Status are
// converted (so a string enum still fails) and then ignored: the server
// sets them.
func bindProvider(body []byte) (in providerInput, problem object) {
	members, isObject, _ := parseMembers(body)
	if !isObject {
		return in, object{{"$", []string{"The JSON value could not be converted to SensorsReport.SMS.API.Models.ProviderModel. Path: $."}},
			{"provider", []string{"The provider field is required."}}}
	}
	var name *string
	codesNull := false
	for _, m := range members {
		prop, known := canonical(m.key, providerProps)
		if !known {
			in.unknown = append(in.unknown, m.key)
			continue
		}
		ok := true
		switch prop {
		case "Id":
			_, ok = asString(m.raw)
		case "Name":
			name, ok = asString(m.raw)
		case "LastSeen":
			_, _, ok = asTime(m.raw)
		case "Status":
			_, _, ok = asInt32(m.raw, false)
		case "SupportedCountryCodes":
			var codes []*string
			ok = jsonKind(m.raw) == 'n' || (jsonKind(m.raw) == '[' && json.Unmarshal(m.raw, &codes) == nil)
			codesNull = jsonKind(m.raw) == 'n'
			in.codes = []string{}
			for _, c := range codes {
				if c != nil {
					in.codes = append(in.codes, *c)
				}
			}
		}
		if !ok {
			return in, conversionError("provider", m.key, "SensorsReport.SMS.API.Models.ProviderModel")
		}
	}
	if name == nil || *name == "" {
		problem = append(problem, field{"Name", []string{"The Name field is required."}})
	}
	if codesNull {
		problem = append(problem, field{"SupportedCountryCodes", []string{"The SupportedCountryCodes field is required."}})
	}
	if problem != nil {
		return in, problem
	}
	in.name = *name
	if in.codes == nil {
		in.codes = []string{}
	}
	return in, nil
}
