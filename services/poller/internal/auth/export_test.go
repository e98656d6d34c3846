package auth

import "time"

// SetClock replaces the source's clock (time.Now).
func SetClock(s *Source, now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// NextTry is when the source will next call the provider after a failure.
func NextTry(s *Source) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextTry
}
