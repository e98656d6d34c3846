package logging

import (
	"strings"
	"testing"
)

func TestMaskPhone(t *testing.T) {
	for in, want := range map[string]string{
		"+40722000111": "+407*****111",
		"0722000222":   "072****222",
		"12345":        "*****",
		"":             "",
		"+4072":        "*****",
		"not-a-number": "not******ber",
	} {
		if got := MaskPhone(in); got != want {
			t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSecretNeverRendersTheValue(t *testing.T) {
	f := Secret("password", "hunter2")
	if strings.Contains(f.String, "hunter2") {
		t.Fatal("secret leaked")
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	if _, err := New("loud", "json"); err == nil {
		t.Error("accepted LOG_LEVEL=loud")
	}
	if _, err := New("info", "xml"); err == nil {
		t.Error("accepted LOG_FORMAT=xml")
	}
	for _, f := range []string{"json", "console", ""} {
		if _, err := New("debug", f); err != nil {
			t.Errorf("%q: %v", f, err)
		}
	}
}
