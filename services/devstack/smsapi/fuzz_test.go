package smsapi

import (
	"testing"
)

func FuzzParseNetTime(f *testing.F) {
	for _, s := range []string{"2025-08-27T07:00:00.123Z", "2025-08-27T07:01:02.1234567Z", "2025-08-27T07:00:00",
		"2025-08-27T10:00:00+03:00", "2025-08-27T10:00:00-0", "2025-08-27", "2025-08-27T07:00", "2025-08-27T07:00:00.Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseNetTime(s)
		if !ok {
			return
		}
		// What the server writes it must read back as the same instant.
		back, ok := parseNetTime(n.format())
		if !ok || !back.t.Equal(n.t) {
			t.Fatalf("%q → %q → %v %v", s, n.format(), back.t, ok)
		}
	})
}

func FuzzBindSMS(f *testing.F) {
	for _, s := range []string{
		`{"PhoneNumber":"+40722000111","Message":"m","Provider":"gw","Tenant":"t"}`,
		`{"phoneNumber":"0722000111","message":"m","provider":"gw","Status":"Sent"}`,
		`{"PhoneNumber":"x","Message":"m","Provider":"gw","Ttl":"5","RetryCount":null,"Colour":[1]}`,
		`{"PhoneNumber":"x","Message":"m","Provider":"gw","Timestamp":"2025-08-27T07:00:00.1234567","SentAt":null}`,
		`[]`, `"x"`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, problem := bindSMS(body)
		if problem != nil {
			return
		}
		if in.sms.PhoneNumber == "" || in.sms.Message == "" || in.sms.Provider == nil || *in.sms.Provider == "" {
			t.Fatalf("bound without required fields: %+v", in.sms)
		}
		if in.stringEnum {
			t.Fatal("a string enum must not bind")
		}
	})
}
