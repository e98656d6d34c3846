package health

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestEndpointsAndProbe(t *testing.T) {
	s := New(zap.NewNop())
	var notReady error = errors.New("modem unplugged")
	s.SetReady(func() error { return notReady })
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if err := Probe(s.Addr(), "/healthz", time.Second); err != nil {
		t.Fatalf("healthz: %v", err)
	}
	err := Probe(s.Addr(), "/readyz", time.Second)
	if err == nil || !strings.Contains(err.Error(), "modem unplugged") {
		t.Fatalf("readyz while not ready: %v", err)
	}
	notReady = nil
	if err := Probe(s.Addr(), "/readyz", time.Second); err != nil {
		t.Fatalf("readyz when ready: %v", err)
	}
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "go_goroutines") {
		t.Fatal("metrics lack the Go collector")
	}
}

func TestProbeUnspecifiedHostMeansLoopback(t *testing.T) {
	s := New(zap.NewNop())
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	_, port, _ := strings.Cut(s.Addr(), ":")
	if err := Probe(":"+port, "/healthz", time.Second); err != nil {
		t.Fatalf("probe of %q: %v", ":"+port, err)
	}
	if err := Probe("nonsense", "/healthz", time.Second); err == nil {
		t.Fatal("bad address accepted")
	}
}
