package harness

import (
	"net/http"
	"testing"
	"time"
)

// APIClockOffset reaches the API stand-in the stack serves.
func TestAPIClockOffset(t *testing.T) {
	const off = -2 * time.Hour
	s, err := Start(t.Context(), Options{Bin: t.TempDir(), Dir: t.TempDir(), NoServices: true, APIClockOffset: off})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get(s.BaseURL + "/api/provider/next/gw/RO")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if want := time.Now().Add(off); err != nil || date.Before(want.Add(-2*time.Second)) || date.After(want.Add(2*time.Second)) {
		t.Fatalf("Date %q (%v), want about %v", resp.Header.Get("Date"), err, want)
	}
}
