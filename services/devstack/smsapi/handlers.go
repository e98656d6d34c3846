package smsapi

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// bodyProblem answers what MVC checks before any action runs: the media
// type and a non-empty body.
func (c *call) bodyProblem() bool {
	if !jsonContent(c.r) {
		c.mistake("request body without a JSON Content-Type")
		writeUnsupportedMediaType(c.w)
		return true
	}
	if len(strings.TrimSpace(string(c.body))) == 0 {
		writeProblem(c.w, object{{"", []string{"A non-empty request body is required."}}})
		return true
	}
	return false
}

// legacyTenant400 is the pre-c1cd56f TenantRetriever, which threw on a
// missing header in every SmsController action.
func (c *call) legacyTenant400() bool {
	if c.s.opts.LegacyTenant400 && c.tenant == "" {
		writeErrors(c.w, http.StatusBadRequest, "Tenant header is missing.")
		return true
	}
	return false
}

// byID mirrors the tenant-scoped repository lookup of the by-id actions:
// an empty tenant throws ArgumentException and a malformed id
// FormatException (both 500), a record of another tenant is not found.
func (c *call) byID(id, notFound string) (int, bool) {
	if c.tenant == "" {
		c.mistake("no NGSILD-Tenant or Fiware-Service header on a by-id call")
	}
	if !isObjectID(id) {
		c.mistake("id %q is not an ObjectId", id)
	}
	if c.legacyTenant400() {
		return -1, false
	}
	if c.tenant == "" || !isObjectID(id) {
		writeErrors(c.w, http.StatusInternalServerError, genericError)
		return -1, false
	}
	i := c.s.index(id)
	if i < 0 || c.s.sms[i].Tenant != c.tenant {
		writeMessage(c.w, http.StatusNotFound, notFound)
		return -1, false
	}
	return i, true
}

func (c *call) location(path string) {
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	c.w.Header().Set("Location", scheme+"://"+c.r.Host+c.s.prefix+path)
}

func (c *call) register() {
	if c.bodyProblem() {
		return
	}
	in, problem := bindProvider(c.body)
	if problem != nil {
		writeProblem(c.w, problem)
		return
	}
	for _, k := range in.unknown {
		c.mistake("unknown register field %q ignored", k)
	}
	now := c.s.now100()
	var resp Provider
	if i := slices.IndexFunc(c.s.providers, func(p Provider) bool { return p.Name == in.name }); i >= 0 {
		// FindOneAndUpdate hands back the document as it was; the submitted
		// country codes are dropped.
		resp = c.s.providers[i]
		c.s.providers[i].LastSeen = now.Truncate(time.Millisecond)
		c.s.providers[i].Status = ProviderActive
	} else {
		resp = Provider{ID: newObjectID(), Name: in.name, LastSeen: now, Status: ProviderActive, SupportedCountryCodes: in.codes}
		stored := resp
		stored.LastSeen = now.Truncate(time.Millisecond)
		c.s.providers = append(c.s.providers, stored)
	}
	c.location("/Provider/" + in.name)
	c.result(http.StatusCreated, resp.object())
}

func (c *call) getProvider(name string) {
	i := slices.IndexFunc(c.s.providers, func(p Provider) bool { return p.Name == name })
	if i < 0 {
		writeMessage(c.w, http.StatusNotFound, "Provider with Name '"+name+"' not found.")
		return
	}
	c.result(http.StatusOK, c.s.providers[i].object())
}

var providerStatusNames = []string{"Unavailable", "Active"}

func (c *call) providerByStatus(raw string) {
	var st ProviderStatus
	if n, err := strconv.Atoi(raw); err == nil {
		if n < 0 || n >= len(providerStatusNames) {
			writeJSON(c.w, http.StatusBadRequest, "Invalid provider status '"+raw+"'.")
			return
		}
		st = ProviderStatus(n)
	} else if i := slices.IndexFunc(providerStatusNames, func(n string) bool { return strings.EqualFold(n, raw) }); i >= 0 {
		st = ProviderStatus(i)
	} else {
		writeProblem(c.w, object{{"status", []string{"The value '" + raw + "' is not valid."}}})
		return
	}
	i := slices.IndexFunc(c.s.providers, func(p Provider) bool { return p.Status == st })
	if i < 0 {
		writeMessage(c.w, http.StatusNotFound, "Provider with status '"+providerStatusNames[st]+"' not found.")
		return
	}
	c.result(http.StatusOK, c.s.providers[i].object())
}

// touchProvider is UpdateLastSeenAsync, run by every next call: it
// auto-creates an unknown provider with no country codes.
func (c *call) touchProvider(name string) Provider {
	now := c.s.now100().Truncate(time.Millisecond)
	if i := slices.IndexFunc(c.s.providers, func(p Provider) bool { return p.Name == name }); i >= 0 {
		c.s.providers[i].LastSeen = now
		c.s.providers[i].Status = ProviderActive
		return c.s.providers[i]
	}
	p := Provider{ID: newObjectID(), Name: name, LastSeen: now, Status: ProviderActive, SupportedCountryCodes: []string{}}
	c.s.providers = append(c.s.providers, p)
	return p
}

// next is GetNextAsync: cross-tenant, destructive, first match in natural
// order (contract §3.1).
func (c *call) next(provider, cc string, byCountry bool) {
	if c.r.URL.Query().Has("fields") {
		c.mistake("?fields= on next drops Tenant, which every later by-id call needs")
	}
	p := c.touchProvider(provider)
	codes := p.SupportedCountryCodes
	if byCountry {
		codes = []string{cc}
	} else if len(codes) == 0 {
		c.mistake("next/{provider} for %q, which has no country codes: SMS without a Provider (alarms) are never returned", provider)
	}
	i := slices.IndexFunc(c.s.sms, func(m SMS) bool {
		if m.Status != schema.StatusPending {
			return false
		}
		named := m.Provider != nil && *m.Provider == provider
		if len(codes) == 0 {
			return named
		}
		return m.CountryCode != nil && slices.Contains(codes, *m.CountryCode) && (named || m.Provider == nil)
	})
	if i < 0 {
		if byCountry {
			writeMessage(c.w, http.StatusNotFound, "No SMS records found with country code '"+cc+"'.")
		} else {
			writeMessage(c.w, http.StatusNotFound, "No SMS records found with provider '"+provider+"'.")
		}
		return
	}
	now := c.s.now100()
	stored := now.Truncate(time.Millisecond)
	c.s.setStatus(i, schema.StatusEntrusted, "next:"+provider)
	c.s.sms[i].SentAt = &stored
	c.s.sms[i].RetryCount++
	// The response is the in-memory object: SentAt keeps 7 digits while the
	// stored copy has milliseconds.
	v := storedView(c.s.sms[i])
	exact := utc(now)
	v.sentAt = &exact
	c.result(http.StatusOK, v.object())
}

var smsStatusNames = []string{"Pending", "Entrusted", "Sent", "Failed", "Expired", "Error", "Unknown"}

func (c *call) list() {
	if c.legacyTenant400() {
		return
	}
	q := c.r.URL.Query()
	limit, offset := 100, 0
	var problem object
	for _, p := range []struct {
		name string
		dst  *int
	}{{"limit", &limit}, {"offset", &offset}} {
		if raw := q.Get(p.name); raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil {
				problem = append(problem, field{p.name, []string{"The value '" + raw + "' is not valid."}})
			}
			*p.dst = n
		}
	}
	status := schema.Status(-1)
	if raw := q.Get("status"); raw != "" {
		if n, err := strconv.Atoi(raw); err == nil && n >= 0 && n < len(smsStatusNames) {
			status = schema.Status(n)
		} else if i := slices.IndexFunc(smsStatusNames, func(n string) bool { return strings.EqualFold(n, raw) }); i >= 0 {
			status = schema.Status(i)
		} else {
			problem = append(problem, field{"status", []string{"The value '" + raw + "' is not valid."}})
		}
	}
	if problem != nil {
		writeProblem(c.w, problem)
		return
	}
	// Unparsable dates are silently ignored, as DateTime.TryParse is.
	from, hasFrom := parseNetTime(q.Get("fromDate"))
	to, hasTo := parseNetTime(q.Get("toDate"))
	cc := q.Get("countryCode")
	var out []object
	for _, m := range c.s.sms {
		switch {
		case c.tenant != "" && m.Tenant != c.tenant,
			status >= 0 && m.Status != status,
			cc != "" && (m.CountryCode == nil || *m.CountryCode != cc),
			hasFrom && m.Timestamp.Before(from.t),
			hasTo && m.Timestamp.After(to.t):
			continue
		}
		out = append(out, storedView(m).object())
	}
	out = out[min(max(offset, 0), len(out)):]
	if limit > 0 && limit < len(out) {
		out = out[:limit]
	}
	if len(out) == 0 {
		writeMessage(c.w, http.StatusNotFound, "No SMS records found for the specified criteria.")
		return
	}
	c.result(http.StatusOK, out)
}

// bindBody runs model binding for POST and PUT bodies.
func (c *call) bindBody() (smsInput, bool) {
	if c.bodyProblem() {
		return smsInput{}, false
	}
	in, problem := bindSMS(c.body)
	if in.stringEnum {
		c.mistake("Status sent as a string; enums are integers on the wire")
	}
	if problem != nil {
		writeProblem(c.w, problem)
		return in, false
	}
	for _, m := range in.extra {
		c.mistake("unknown field %q is kept as extension data", m.key)
	}
	return in, true
}

func (c *call) create() {
	in, ok := c.bindBody()
	if !ok || c.legacyTenant400() {
		return
	}
	if c.tenant == "" {
		c.mistake("POST without a tenant header stores an SMS with an empty tenant, unreachable by id")
	}
	if !in.bodyTenant {
		// SmsRepository checks the body's Tenant before overwriting it.
		c.mistake("POST body without a Tenant property")
		writeErrors(c.w, http.StatusInternalServerError, genericError)
		return
	}
	m := in.sms
	m.ID, m.Tenant = newObjectID(), c.tenant
	ts := utc(c.s.now100())
	if in.ts != nil {
		ts = *in.ts
	}
	m.Timestamp = ts.stored()
	if !in.ttlSet {
		five := 5
		m.TTL = &five
	}
	if in.sentAt != nil {
		t := in.sentAt.stored()
		m.SentAt = &t
	}
	if m.CountryCode == nil || *m.CountryCode == "" {
		cc := countryCode(m.PhoneNumber)
		m.CountryCode = &cc
	}
	c.s.sms = append(c.s.sms, m)
	c.s.history[m.ID] = append(c.s.history[m.ID], Transition{At: time.Now(), From: m.Status, To: m.Status, By: "post"})
	c.location("/Sms/" + m.ID)
	// The body is the in-memory object: dates as parsed, extension data echoed.
	c.result(http.StatusCreated, smsView{sms: m, ts: ts, sentAt: in.sentAt, extra: in.extra}.object())
}

func (c *call) get(id string) {
	if i, ok := c.byID(id, "SMS with ID "+id+" not found."); ok {
		c.result(http.StatusOK, storedView(c.s.sms[i]).object())
	}
}

// update is SmsRepository.UpdateAsync: it $sets this subset and nothing
// else, so Timestamp, Ttl and Tenant never change after creation.
func (c *call) update(i int, m SMS, by string) {
	cur := &c.s.sms[i]
	cur.PhoneNumber, cur.Message = m.PhoneNumber, m.Message
	cur.SentAt, cur.Provider, cur.TrackingID = m.SentAt, m.Provider, m.TrackingID
	cur.MessageType, cur.CustomData, cur.RetryCount = m.MessageType, m.CustomData, m.RetryCount
	cur.CountryCode = m.CountryCode
	if cur.CountryCode == nil || *cur.CountryCode == "" {
		cc := countryCode(cur.PhoneNumber)
		cur.CountryCode = &cc
	}
	c.s.setStatus(i, m.Status, by)
}

func (c *call) put(id string) {
	c.mistake("PUT resets every omitted field; update with PATCH")
	in, ok := c.bindBody()
	if !ok {
		return
	}
	i, ok := c.byID(id, "SMS with ID "+id+" not found.")
	if !ok {
		return
	}
	m := in.sms
	if in.sentAt != nil {
		t := in.sentAt.stored()
		m.SentAt = &t
	}
	c.update(i, m, "put")
	c.result(http.StatusOK, storedView(c.s.sms[i]).object())
}

// patchable are the [AllowPatch] properties, looked up by exact name.
var patchable = []string{"PhoneNumber", "Message", "Status", "SentAt", "Ttl", "CountryCode", "Provider",
	"TrackingId", "MessageType", "CustomData", "RetryCount"}

// patch is RestHelpers.PatchModel followed by UpdateAsync (contract §2.6).
func (c *call) patch(id string) {
	if c.bodyProblem() {
		return
	}
	members, isObject, valid := parseMembers(c.body)
	if !valid {
		writeProblem(c.w, object{{"$", []string{"The input is not valid JSON. Path: $."}}, {"patchDocument", []string{"The patchDocument field is required."}}})
		return
	}
	if !isObject {
		writeJSON(c.w, http.StatusBadRequest, "Patch document must be a JSON object.")
		return
	}
	values := map[string]member{} // JsonElement.TryGetProperty finds the last duplicate
	for _, m := range members {
		if slices.Contains(patchable, m.key) {
			values[m.key] = m
			continue
		}
		if p, ok := canonical(m.key, patchable); ok {
			c.mistake("PATCH key %q ignored: keys are case-sensitive, use %q", m.key, p)
		} else if p, ok := canonical(m.key, smsProps); ok {
			c.mistake("PATCH key %q ignored: %s is not patchable", m.key, p)
		} else {
			c.mistake("PATCH key %q ignored: unknown property", m.key)
		}
	}
	i, ok := c.byID(id, "SMS with ID "+id+" not found.")
	if !ok {
		return
	}
	m := c.s.sms[i]
	for _, prop := range patchable {
		v, present := values[prop]
		if !present {
			continue
		}
		// JsonElement.Deserialize with default options: no quoted numbers,
		// no string enums; any JsonException is a 500.
		ok := true
		switch prop {
		case "Status":
			if jsonKind(v.raw) == '"' {
				c.mistake("Status sent as a string; enums are integers on the wire")
				ok = false
				break
			}
			n, null, okInt := asInt32(v.raw, false)
			ok = okInt
			if null {
				c.mistake("PATCH Status null is skipped")
			} else if ok {
				m.Status = schema.Status(n)
				if m.Status == schema.StatusEntrusted {
					c.mistake("PATCH to Entrusted: next already entrusts the SMS")
				}
			}
		case "RetryCount":
			n, null, okInt := asInt32(v.raw, false)
			ok = okInt
			if null {
				c.mistake("PATCH RetryCount null is skipped")
			} else if ok {
				m.RetryCount = n
			}
		case "Ttl":
			_, _, ok = asInt32(v.raw, false)
			c.mistake("PATCH Ttl is accepted but never stored")
		case "SentAt":
			t, null, okT := asTime(v.raw)
			ok = okT
			if null {
				m.SentAt = nil
			} else if ok {
				st := t.stored()
				m.SentAt = &st
			}
		default:
			var p *string
			p, ok = asString(v.raw)
			if ok {
				switch prop {
				case "PhoneNumber":
					m.PhoneNumber = deref(p)
				case "Message":
					m.Message = deref(p)
				case "CountryCode":
					m.CountryCode = p
				case "Provider":
					m.Provider = p
				case "TrackingId":
					m.TrackingID = p
				case "MessageType":
					m.MessageType = p
				case "CustomData":
					m.CustomData = p
				}
			}
		}
		if !ok {
			writeErrors(c.w, http.StatusInternalServerError, genericError)
			return
		}
	}
	c.update(i, m, "patch")
	c.result(http.StatusOK, storedView(c.s.sms[i]).object())
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (c *call) delete(id string) {
	i, ok := c.byID(id, "SMS with ID "+id+" not found or could not be deleted.")
	if !ok {
		return
	}
	c.s.sms = slices.Delete(c.s.sms, i, i+1)
	c.w.WriteHeader(http.StatusNoContent)
}
