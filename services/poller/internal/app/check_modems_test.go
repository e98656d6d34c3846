package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// check lists every modem the running poller's metrics show.
func TestCheckListsEveryModem(t *testing.T) {
	metrics := `# TYPE sms_poller_modem_ready gauge
sms_poller_modem_ready 1
# TYPE sms_poller_modem_up gauge
sms_poller_modem_up{countries="",modem="pi1",state="ready"} 1
sms_poller_modem_up{countries="MD",modem="pi2",state="silent"} 0
sms_poller_modem_up{countries="RO,MD",modem="pi3",state="conflict"} 0
# TYPE sms_poller_modem_rate_headroom gauge
sms_poller_modem_rate_headroom{modem="pi2",window="6/m"} 2
sms_poller_modem_rate_headroom{modem="pi2",window="300/h"} 120
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(metrics)) }))
	defer srv.Close()
	ready, modems, err := modemReady(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil || !ready {
		t.Fatalf("modemReady = %v, %v", ready, err)
	}
	want := "pi1 ready (any country); pi2 silent (MD; rate limit 2 left of 6/m, 120 left of 300/h); pi3 conflict (RO,MD)"
	if got := strings.Join(modems, "; "); got != want {
		t.Fatalf("modems = %q, want %q", got, want)
	}
}
