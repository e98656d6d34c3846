package dispatch

import (
	"testing"

	"go.uber.org/zap"
)

// A job is queued for the SMS's own CountryCode when the poller claims that
// country, else for the country it was claimed for: only claimed countries
// have a jobs consumer and a ready modem serving them.
func TestJobRoutedToAClaimedCountry(t *testing.T) {
	d := New(Config{Countries: []string{"RO", "MD"}}, nil, nil)
	for _, tc := range []struct{ country, claimed, want string }{
		{"MD", "MD", "MD"},
		{"md", "MD", "MD"},
		{"RO", "MD", "RO"}, // another claimed country: its own
		{"GB", "MD", "MD"},
		{"", "RO", "RO"},
		{"001", "RO", "RO"},
		{"R.>", "RO", "RO"},
	} {
		if got := d.route(tc.country, tc.claimed, zap.NewNop()); got != tc.want {
			t.Errorf("route(%q, claimed %q) = %q, want %q", tc.country, tc.claimed, got, tc.want)
		}
	}
}
