package backoff

import (
	"context"
	"testing"
	"time"
)

func TestGrowsWithJitterAndCaps(t *testing.T) {
	b := New(100*time.Millisecond, 400*time.Millisecond)
	bounds := [][2]time.Duration{{50, 100}, {100, 200}, {200, 400}, {200, 400}}
	for i, bd := range bounds {
		d := b.Next()
		if d < bd[0]*time.Millisecond || d > bd[1]*time.Millisecond {
			t.Fatalf("wait %d = %v, want within [%v, %v] ms", i, d, bd[0], bd[1])
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep ignored a cancelled context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep did not report the elapsed wait")
	}
	if New(time.Hour, time.Hour).Wait(ctx) {
		t.Fatal("Wait ignored a cancelled context")
	}
}
