package ratelimit

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sensorsreport/smsgw/shared/schema"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "6/m": "6/m", " 10/m, 300/h ,1000/d": "10/m,300/h,1000/d", "1/s": "1/s",
	} {
		ws, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q) = %v", in, err)
		}
		var got []string
		for _, w := range ws {
			got = append(got, w.String())
		}
		if strings.Join(got, ",") != want {
			t.Errorf("Parse(%q) = %v, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"6", "6/x", "0/m", "-1/m", "x/m", "6/m,7/m", "100001/d", "6/m,", "/m", "6/ m"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"6/m", "10/m,300/h,1000/d", "", "0/m", "6/m,6/m", "\x00/m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ws, err := Parse(s)
		if err != nil {
			return
		}
		for _, w := range ws {
			if w.Max < 1 || w.Max > maxPerWindow || w.Span <= 0 {
				t.Fatalf("Parse(%q) gave %+v", s, w)
			}
		}
	})
}

// However parts are offered, no sliding window ever holds more than its
// limit, and a part is refused only while a window is full.
func TestNoWindowIsEverExceeded(t *testing.T) {
	ws, _ := Parse("3/s,5/m")
	l, err := Open(t.TempDir(), ws)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	now := time.Unix(1_700_000_000, 0)
	var taken []time.Time
	for range 2000 {
		now = now.Add(time.Duration(r.IntN(4000)) * time.Millisecond)
		limited, until := l.Limited(now)
		ok, err := l.Take(now)
		if err != nil {
			t.Fatal(err)
		}
		if ok == limited {
			t.Fatalf("Take = %v while Limited = %v", ok, limited)
		}
		if !ok {
			if !until.After(now) {
				t.Fatalf("limited until %v, not after now %v", until, now)
			}
			if ok, _ := l.Take(until); !ok {
				t.Fatalf("still limited at the time Limited named")
			}
			now = until
		}
		taken = append(taken, now)
	}
	for i := range taken {
		for _, w := range ws {
			n := 0
			for _, s := range taken[i:] {
				if s.Sub(taken[i]) < w.Span {
					n++
				}
			}
			if n > w.Max {
				t.Fatalf("%d parts within %s of %v, limit %s", n, w.Span, taken[i], w)
			}
		}
	}
}

// The count survives a restart; an unreadable log refuses to start.
func TestLogIsDurable(t *testing.T) {
	dir := t.TempDir()
	ws, _ := Parse("2/m")
	now := time.Now()
	l, _ := Open(dir, ws)
	for range 2 {
		if ok, err := l.Take(now); !ok || err != nil {
			t.Fatalf("Take = %v, %v", ok, err)
		}
	}
	again, err := Open(dir, ws)
	if err != nil {
		t.Fatal(err)
	}
	if limited, _ := again.Limited(now.Add(30 * time.Second)); !limited {
		t.Fatal("a restart forgot the parts already sent")
	}
	if st := again.States(now); len(st) != 1 || st[0] != (schema.RateWindow{Window: "2/m", Used: 2, Max: 2}) {
		t.Fatalf("States = %+v", st)
	}
	if limited, _ := again.Limited(now.Add(time.Minute)); limited {
		t.Fatal("still limited after the window passed")
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, ws); err == nil {
		t.Fatal("opened an unreadable log")
	}
}
