// Package upstream adapts the SMS API client to what the dispatcher needs:
// claims turned into dispatch.Claim (an unusable answer included, so it can
// be reported Failed), reports that re-read and re-apply when the API's own
// background task overwrote them, and the one classification of report
// errors into retry, gone and unreportable.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/sensorsreport/smsgw/services/poller/internal/dispatch"
	"github.com/sensorsreport/smsgw/services/poller/internal/smsapi"
	"github.com/sensorsreport/smsgw/shared/schema"
)

// reapply bounds how often one report re-reads and PATCHes again when the
// API's answer does not show the update; after that the dispatcher retries
// the result later with back-off.
const reapply = 3

// API is the SMS API as the dispatcher sees it.
type API struct {
	Client   *smsapi.Client
	Provider string
	Log      *zap.Logger
}

var _ dispatch.Upstream = (*API)(nil)

// Claim takes the next SMS for country cc.
func (a *API) Claim(ctx context.Context, cc string) (*dispatch.Claim, error) {
	s, err := a.Client.Next(ctx, a.Provider, cc)
	if errors.Is(err, smsapi.ErrNoSMS) {
		return nil, nil
	}
	if ce, ok := errors.AsType[*smsapi.ClaimError](err); ok {
		// Entrusted to us upstream but unusable: report it Failed at once.
		return &dispatch.Claim{ID: ce.ID, Tenant: ce.Tenant, Country: cc, Invalid: ce.Err.Error()}, nil
	}
	if err != nil {
		return nil, err
	}
	c := ToClaim(*s, cc)
	return &c, nil
}

// ToClaim converts an SMS as the API sent it.
func ToClaim(s smsapi.SMS, cc string) dispatch.Claim {
	c := dispatch.Claim{
		ID: s.ID, Tenant: s.Tenant, Phone: s.PhoneNumber, Message: s.Message, Country: cc,
		Timestamp: s.Timestamp, RetryCount: s.RetryCount,
	}
	if s.TTL != nil {
		c.TTL = time.Duration(*s.TTL) * time.Minute
	}
	if s.CountryCode != nil && *s.CountryCode != "" {
		c.Country = *s.CountryCode
	}
	return c
}

// Report PATCHes the result. When the answer does not show it (the API's
// background task wrote the record at the same time, contract §3.2), it
// re-reads the record and applies the update again, a bounded number of
// times.
func (a *API) Report(ctx context.Context, r schema.Result) error {
	up := smsapi.Update{Status: r.Status, TrackingID: r.TrackingID()}
	if r.Status == schema.StatusSent {
		up.SentAt = r.SentAt
	}
	var err error
	for i := range reapply {
		if _, err = a.Client.Report(ctx, r.SmsID, r.Tenant, up); !errors.Is(err, smsapi.ErrNotApplied) {
			return err
		}
		cur, _, gerr := a.Client.Get(ctx, r.SmsID, r.Tenant)
		if gerr == nil && cur.Status == r.Status {
			return nil // applied after all
		}
		a.Log.Warn("status update overwritten upstream; applying it again", zap.String("sms", r.SmsID),
			zap.Stringer("status", r.Status), zap.Int("attempt", i+1), zap.Error(err))
	}
	return fmt.Errorf("after %d tries: %w", reapply, err)
}

// Verdict classifies a report error, the one place that decides whether a
// result may ever be given up.
func (a *API) Verdict(err error) dispatch.Verdict {
	switch {
	case errors.Is(err, smsapi.ErrInvalid):
		// Nothing the API will ever accept: no tenant, not an SMS id.
		return dispatch.Unreportable
	case errors.Is(err, smsapi.ErrNotFound):
		// 404 for the SMS's own tenant: it was deleted.
		return dispatch.Gone
	}
	// Network, 5xx, 401/403 (a new token is on its way), a PATCH the API
	// keeps overwriting, anything unexpected: the SMS may still be
	// Entrusted, so the result is kept and tried again.
	return dispatch.Retry
}

// Status reads the SMS's status upstream.
func (a *API) Status(ctx context.Context, tenant, id string) (schema.Status, error) {
	s, _, err := a.Client.Get(ctx, id, tenant)
	if err != nil {
		return 0, err
	}
	return s.Status, nil
}
