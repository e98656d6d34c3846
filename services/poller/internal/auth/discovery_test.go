package auth

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

func FuzzParseDiscovery(f *testing.F) {
	f.Add([]byte(`{"issuer":"https://kc.example.net/realms/sr","token_endpoint":"https://kc.example.net/realms/sr/protocol/openid-connect/token"}`))
	f.Add([]byte(`{"token_endpoint":"/relative/token"}`))
	f.Add([]byte(`{"token_endpoint":42}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`<html>502 Bad Gateway</html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := parseDiscovery(body)
		if err != nil {
			return
		}
		u, perr := url.Parse(got)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("accepted token endpoint %q", got)
		}
	})
}

func TestParseDiscovery(t *testing.T) {
	for body, want := range map[string]string{
		`{"token_endpoint":"http://keycloak:8080/realms/sr/protocol/openid-connect/token"}`: "http://keycloak:8080/realms/sr/protocol/openid-connect/token",
		`{"token_endpoint":""}`:             "",
		`{"token_endpoint":"kc/token"}`:     "",
		`{"issuer":"https://kc/realms/sr"}`: "",
		`not json`:                          "",
	} {
		got, err := parseDiscovery([]byte(body))
		if got != want || (want == "") != (err != nil) {
			t.Errorf("parseDiscovery(%s) = %q, %v; want %q", body, got, err, want)
		}
	}
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"openid", "openid profile,email", " , ", `open"id`, "a\\b", "ópenid", "openid,openid"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseScopes(in)
		if err != nil {
			return
		}
		if len(got) == 0 {
			t.Fatal("no scopes and no error")
		}
		again, err := ParseScopes(strings.Join(got, " "))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("%q re-parsed as %q, %v", got, again, err)
		}
		for i, sc := range got {
			if one, err := ParseScopes(sc); err != nil || len(one) != 1 || one[0] != sc || slices.Contains(got[:i], sc) {
				t.Fatalf("scope %q of %q is not a single, unique token", sc, got)
			}
		}
	})
}
