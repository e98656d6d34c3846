package pdu

import (
	"errors"
	"strings"
	"testing"
)

func TestParseNumber(t *testing.T) {
	tests := []struct {
		raw, region string
		want        string // E.164 digits
	}{
		{"0722 000 111", "RO", "40722000111"},
		{"0722-000-111", "RO", "40722000111"},
		{"(0722) 000.111", "RO", "40722000111"},
		{"0722000111", "ro", "40722000111"},
		{"+40 722 000 111", "RO", "40722000111"},
		{"0040722000111", "RO", "40722000111"},
		{"  +40722000111\t", "", "40722000111"},
		{"0040722000111", "", "40722000111"},
		{"021 315 6000", "RO", "40213156000"}, // Bucharest fixed line
		{"07911 123456", "GB", "447911123456"},
		{"0049 30 901820", "RO", "4930901820"},
		{"+1 650-253-0000", "RO", "16502530000"},
	}
	for _, tt := range tests {
		n, err := ParseNumber(tt.raw, tt.region)
		if err != nil {
			t.Errorf("ParseNumber(%q, %q): %v", tt.raw, tt.region, err)
			continue
		}
		if n.Digits != tt.want || !n.International || n.String() != "+"+tt.want {
			t.Errorf("ParseNumber(%q, %q) = %+v, want +%s", tt.raw, tt.region, n, tt.want)
		}
	}
}

func TestParseNumberRejects(t *testing.T) {
	tests := []struct {
		raw, region, reason string
	}{
		{"", "RO", "no digits"},
		{"+", "RO", "no digits"},
		{"abc", "RO", "only digits"},
		{"0722 ABC 111", "RO", "only digits"},
		{"+40722000111 ext 5", "RO", "only digits"},
		{"++40722000111", "RO", "only digits"},
		{"40+722000111", "RO", "only digits"},
		{"*100#", "RO", "only digits"},
		{"0722０００111", "RO", "only digits"}, // full-width digits
		{"1234567890123456", "RO", "15 digits"},
		{"12", "RO", "too short"},
		{"0722 000", "RO", "not a valid number"},
		{"07", "RO", "too short"},
		{"0722 000 111 222", "RO", "too long"},
		{"+999 722000111", "RO", "country code"},
		{"0722000111", "", "default region"},
		{"0722000111", "XX", "default region"},
		{"+40 100 000 000", "RO", "not a valid number"},
	}
	for _, tt := range tests {
		n, err := ParseNumber(tt.raw, tt.region)
		if !errors.Is(err, ErrInvalidNumber) || n != (Number{}) {
			t.Errorf("ParseNumber(%q, %q) = %+v, %v; want ErrInvalidNumber", tt.raw, tt.region, n, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tt.reason) {
			t.Errorf("ParseNumber(%q): %q does not give the reason %q", tt.raw, msg, tt.reason)
		}
		// Errors get logged; the number must not leak through them.
		if strings.Contains(err.Error(), "722") {
			t.Errorf("ParseNumber(%q): error %q contains the number", tt.raw, err)
		}
	}
}

func TestParsedNumberEncodesInternational(t *testing.T) {
	n, err := ParseNumber("0726 369 867", "RO")
	if err != nil {
		t.Fatal(err)
	}
	parts, err := Encode(n, "hello", nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// §2.11 example 1 without VP.
	if want := "0001000B910427369668F7000005E8329BFD06"; parts[0].Hex != want {
		t.Fatalf("got %s, want %s", parts[0].Hex, want)
	}
}
