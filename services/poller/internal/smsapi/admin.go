package smsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// This file holds the calls the operator commands make (sms list/get/
// create/delete, provider show): the rest of the API, faithful to the same
// contract as the service's calls. Each returns the decoded record and the
// API's own JSON object, which --json prints unchanged.

// ErrWrongRoute is a 404 that no route answered: the API path prefix
// (SMS_API_PREFIX) does not match the deployment.
var ErrWrongRoute = errors.New("no such route: check SMS_API_PREFIX")

// routeMissing tells ASP.NET's status-code page 404 from a controller's.
func routeMissing(err error) error {
	if ae, ok := errors.AsType[*APIError](err); ok && ae.Status == http.StatusNotFound &&
		len(ae.Messages) > 0 && ae.Messages[0] == "The requested resource was not found." {
		return fmt.Errorf("%w: %w", ErrWrongRoute, err)
	}
	return err
}

// Filter selects SMS for List; zero fields do not filter. An empty Tenant
// lists every tenant's SMS (contract §1.5).
type Filter struct {
	Tenant   string
	Status   *schema.Status
	Country  string
	From, To time.Time
	Limit    int // records per request; 0 means the API's default (100)
	Offset   int
}

func (f Filter) query() string {
	q := url.Values{}
	if f.Status != nil {
		q.Set("status", strconv.Itoa(int(*f.Status)))
	}
	if f.Country != "" {
		q.Set("countryCode", strings.ToUpper(f.Country))
	}
	if !f.From.IsZero() {
		q.Set("fromDate", formatTime(f.From))
	}
	if !f.To.IsZero() {
		q.Set("toDate", formatTime(f.To))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Offset > 0 {
		q.Set("offset", strconv.Itoa(f.Offset))
	}
	return q.Encode()
}

// List returns one page: GET {prefix}/sms with the filter. The API answers
// an empty result with 404 "No SMS records found…"; that is an empty page
// here, while a 404 from no route at all is ErrWrongRoute.
func (c *Client) List(ctx context.Context, f Filter) ([]SMS, []json.RawMessage, error) {
	path := c.prefix + "/sms"
	if q := f.query(); q != "" {
		path += "?" + q
	}
	body, err := c.do(ctx, call{endpoint: "list", method: http.MethodGet, path: path, tenant: f.Tenant, idle: noRecords})
	if ae, ok := errors.AsType[*APIError](err); ok && noRecords(ae) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list sms: %w", routeMissing(err))
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, nil, fmt.Errorf("list sms: %w: %w", ErrBadResponse, err)
	}
	list := make([]SMS, len(raw))
	for i, r := range raw {
		s, err := decodeSMS(r)
		if err != nil {
			return nil, nil, fmt.Errorf("list sms: record %d: %w", i, err)
		}
		list[i] = *s
	}
	return list, raw, nil
}

// ErrNotFound is a by-id or by-name lookup the API answered with its own
// "not found" 404 (for SMS: not in that tenant).
var ErrNotFound = errors.New("not found")

func notFound(err error) error {
	if ae, ok := errors.AsType[*APIError](err); ok && ae.Status == http.StatusNotFound {
		if r := routeMissing(err); r != err {
			return r
		}
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// checkByID refuses what the API could only answer with a 500 (§1.4).
func checkByID(id, tenant string) error {
	switch {
	case !isObjectID(id):
		return fmt.Errorf("%w: id %q is not a 24-hex-digit SMS id", ErrInvalid, id)
	case tenant == "":
		return fmt.Errorf("%w: the SMS's tenant is required (NGSILD-Tenant)", ErrInvalid)
	}
	return nil
}

// Get returns SMS id of tenant: GET {prefix}/sms/{id} with NGSILD-Tenant.
func (c *Client) Get(ctx context.Context, id, tenant string) (*SMS, json.RawMessage, error) {
	if err := checkByID(id, tenant); err != nil {
		return nil, nil, fmt.Errorf("get sms: %w", err)
	}
	body, err := c.do(ctx, call{endpoint: "get", method: http.MethodGet, path: c.prefix + "/sms/" + url.PathEscape(id), tenant: tenant})
	if err != nil {
		return nil, nil, fmt.Errorf("get sms %s: %w", id, notFound(err))
	}
	s, err := decodeSMS(body)
	if err != nil {
		return nil, nil, fmt.Errorf("get sms %s: %w", id, err)
	}
	return s, json.RawMessage(bytes.TrimSpace(body)), nil
}

// NewSMS is what Create sends. Provider is required by the API.
type NewSMS struct {
	PhoneNumber string
	Message     string
	Tenant      string
	Provider    string
	TTL         *int // minutes; nil takes the API's default (5)
	CountryCode string
	MessageType string
}

// createBody has only keys the server binds: unknown ones would end up in
// Mongo as extension data (§1.3). Tenant must be present in the body or the
// server answers 500 (§2.5); the stored tenant is the header's.
type createBody struct {
	PhoneNumber string  `json:"PhoneNumber"`
	Message     string  `json:"Message"`
	Tenant      string  `json:"Tenant"`
	Provider    string  `json:"Provider"`
	TTL         *int    `json:"Ttl,omitempty"`
	CountryCode *string `json:"CountryCode,omitempty"`
	MessageType *string `json:"MessageType,omitempty"`
}

// Create queues an SMS: POST {prefix}/sms with NGSILD-Tenant. Not retried:
// a POST whose answer was lost may have created the record.
func (c *Client) Create(ctx context.Context, n NewSMS) (*SMS, json.RawMessage, error) {
	switch {
	case n.Tenant == "":
		return nil, nil, fmt.Errorf("create sms: %w: tenant is required", ErrInvalid)
	case n.Provider == "":
		return nil, nil, fmt.Errorf("create sms: %w: provider is required", ErrInvalid)
	case strings.TrimSpace(n.PhoneNumber) == "":
		return nil, nil, fmt.Errorf("create sms: %w: phone number is required", ErrInvalid)
	case n.TTL != nil && *n.TTL <= 0:
		return nil, nil, fmt.Errorf("create sms: %w: ttl must be a positive number of minutes", ErrInvalid)
	}
	b := createBody{PhoneNumber: n.PhoneNumber, Message: n.Message, Tenant: n.Tenant, Provider: n.Provider, TTL: n.TTL}
	if n.CountryCode != "" {
		cc := strings.ToUpper(n.CountryCode)
		b.CountryCode = &cc
	}
	if n.MessageType != "" {
		b.MessageType = &n.MessageType
	}
	body, err := c.do(ctx, call{endpoint: "create", method: http.MethodPost, path: c.prefix + "/sms", tenant: n.Tenant, body: b, once: true})
	if err != nil {
		return nil, nil, fmt.Errorf("create sms: %w", routeMissing(err))
	}
	s, err := decodeSMS(body)
	if err != nil {
		return nil, nil, fmt.Errorf("create sms: %w", err)
	}
	return s, json.RawMessage(bytes.TrimSpace(body)), nil
}

// Delete removes SMS id of tenant: DELETE {prefix}/sms/{id}, 204.
func (c *Client) Delete(ctx context.Context, id, tenant string) error {
	if err := checkByID(id, tenant); err != nil {
		return fmt.Errorf("delete sms: %w", err)
	}
	if _, err := c.do(ctx, call{endpoint: "delete", method: http.MethodDelete, path: c.prefix + "/sms/" + url.PathEscape(id), tenant: tenant}); err != nil {
		return fmt.Errorf("delete sms %s: %w", id, notFound(err))
	}
	return nil
}

// Provider is the upstream ProviderModel (contract §2.3).
type Provider struct {
	ID                    string    `json:"Id"`
	Name                  string    `json:"Name"`
	LastSeen              time.Time `json:"LastSeen"`
	Status                int       `json:"Status"` // 0 Unavailable, 1 Active
	SupportedCountryCodes []string  `json:"SupportedCountryCodes"`
}

// StatusName renders Status.
func (p Provider) StatusName() string {
	switch p.Status {
	case 0:
		return "Unavailable"
	case 1:
		return "Active"
	}
	return fmt.Sprintf("Status(%d)", p.Status)
}

// UnmarshalJSON accepts the server's dates as SMS does.
func (p *Provider) UnmarshalJSON(b []byte) error {
	type plain Provider
	aux := struct {
		*plain
		LastSeen apiTime `json:"LastSeen"`
	}{plain: (*plain)(p)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	p.LastSeen = time.Time(aux.LastSeen)
	return nil
}

// GetProvider looks a provider up by its exact name: GET
// {prefix}/provider/{name}. ErrNotFound means the API has no such
// provider; ErrWrongRoute that the prefix is wrong.
func (c *Client) GetProvider(ctx context.Context, name string) (*Provider, json.RawMessage, error) {
	if name == "" {
		return nil, nil, fmt.Errorf("get provider: %w: empty name", ErrInvalid)
	}
	body, err := c.do(ctx, call{endpoint: "provider", method: http.MethodGet, path: c.prefix + "/provider/" + url.PathEscape(name)})
	if err != nil {
		return nil, nil, fmt.Errorf("get provider %s: %w", name, notFound(err))
	}
	var p Provider
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' {
		return nil, nil, fmt.Errorf("get provider %s: %w: want a JSON object", name, ErrBadResponse)
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, nil, fmt.Errorf("get provider %s: %w: %w", name, ErrBadResponse, err)
	}
	return &p, json.RawMessage(bytes.TrimSpace(body)), nil
}
