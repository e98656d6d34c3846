package app

import (
	"slices"
	"strings"
	"testing"

	"github.com/sensorsreport/smsgw/shared/config"
)

func TestModemCountries(t *testing.T) {
	for raw, want := range map[string][]string{"": nil, " ": nil, "ro": {"RO"}, "RO, md,RO,": {"RO", "MD"}} {
		c, err := config.LoadFrom[Config](map[string]string{"MODEM_COUNTRIES": raw})
		if err != nil {
			t.Fatalf("MODEM_COUNTRIES=%q: %v", raw, err)
		}
		if got, _ := c.CountryCodes(); !slices.Equal(got, want) {
			t.Errorf("MODEM_COUNTRIES=%q: %v, want %v", raw, got, want)
		}
	}
	for _, raw := range []string{"ROU", "R", "RO;MD", "RO,4A", "Romania", "R.", "*"} {
		_, err := config.LoadFrom[Config](map[string]string{"MODEM_COUNTRIES": raw})
		if !config.IsConfig(err) || !strings.Contains(err.Error(), "MODEM_COUNTRIES") || !strings.Contains(err.Error(), "want ") {
			t.Errorf("MODEM_COUNTRIES=%q: %v", raw, err)
		}
	}
}
