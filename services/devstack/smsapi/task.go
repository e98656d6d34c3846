package smsapi

import (
	"context"
	"slices"
	"time"

	"github.com/sensorsreport/smsgw/shared/schema"
)

// taskBatch is how many Entrusted and Pending records one pass looks at,
// with no sort: records beyond it starve until earlier ones change.
const taskBatch = 10

// Run runs the background task like UpdateSmsStatusTask: one pass at once,
// then one every Options.TaskInterval, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.TaskInterval)
	defer t.Stop()
	for {
		s.Tick()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick runs one pass of the background task (contract §3.2).
func (s *Server) Tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, i := range s.firstWithStatus(schema.StatusEntrusted) {
		m := s.sms[i]
		to, retries, by := m.Status, m.RetryCount, ""
		if m.SentAt != nil && !m.SentAt.After(now.Add(-s.opts.TrustTimeout)) {
			to, retries, by = schema.StatusPending, retries+1, "task:trust-timeout"
			if m.Provider != nil {
				if p := slices.IndexFunc(s.providers, func(p Provider) bool { return p.Name == *m.Provider }); p >= 0 {
					s.providers[p].Status = ProviderUnavailable
				}
			}
		}
		// Checked even without a timeout: a third claim fails at the next tick.
		if retries >= s.opts.MaxRetryCount {
			to, by = schema.StatusFailed, "task:max-retries"
		}
		if s.expiry(m).Before(now) {
			to, by = schema.StatusExpired, "task:ttl"
		}
		if to != m.Status {
			s.sms[i].RetryCount = retries
			s.setStatus(i, to, by)
		}
	}
	for _, i := range s.firstWithStatus(schema.StatusPending) {
		if !s.expiry(s.sms[i]).After(now) {
			s.setStatus(i, schema.StatusExpired, "task:ttl")
		}
	}
	s.notify()
}

func (s *Server) expiry(m SMS) time.Time {
	ttl := s.opts.DefaultTTL
	if m.TTL != nil {
		ttl = time.Duration(*m.TTL) * time.Minute
	}
	return m.Timestamp.Add(ttl)
}

func (s *Server) firstWithStatus(st schema.Status) []int {
	var out []int
	for i, m := range s.sms {
		if m.Status == st && len(out) < taskBatch {
			out = append(out, i)
		}
	}
	return out
}
