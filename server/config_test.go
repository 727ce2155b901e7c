package server

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig(t *testing.T) {
	base := map[string]string{
		"DATABASE_URL": "postgres://u@127.0.0.1:5432/db",
		"REDIS_URL":    "redis://127.0.0.1:6379/0",
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring naming the variable; "" = valid
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", env: base, check: func(t *testing.T, c Config) {
			if c.Addr != "127.0.0.1:8080" || c.HoldTTL != 5*time.Minute || c.AdmitRate != 500 || c.AdmitTTL != 10*time.Minute ||
				c.MaxSeatsPerFan != 6 || c.PaymentWindow != 2*time.Minute || c.PushInterval != 100*time.Millisecond || c.PushBudget != 30_000 {
				t.Errorf("defaults wrong: %+v", c)
			}
			if !c.StaffTokenRandom || len(c.StaffToken) < 16 || !c.SessionSecretRandom || len(c.SessionSecret) != 32 {
				t.Errorf("secrets not generated: %+v", c)
			}
		}},
		{name: "overrides", env: with("ADDR", ":9000", "HOLD_TTL", "2s", "ADMIT_RATE", "0", "MAX_SEATS_PER_FAN", "2",
			"PUSH_INTERVAL", "250ms", "PUSH_BUDGET", "0", "ALLOWED_ORIGINS", "a.example, *.b.example", "STAFF_TOKEN", "tok", "SESSION_SECRET", "0123456789abcdef"),
			check: func(t *testing.T, c Config) {
				if c.Addr != ":9000" || c.HoldTTL != 2*time.Second || c.AdmitRate != 0 || c.MaxSeatsPerFan != 2 || c.PushInterval != 250*time.Millisecond || c.PushBudget != 0 {
					t.Errorf("overrides not applied: %+v", c)
				}
				if len(c.AllowedOrigins) != 2 || c.AllowedOrigins[1] != "*.b.example" {
					t.Errorf("origins = %q", c.AllowedOrigins)
				}
				if c.StaffToken != "tok" || c.StaffTokenRandom || c.SessionSecretRandom {
					t.Errorf("secrets: %+v", c)
				}
			}},
		{name: "missing database url names it", env: with("DATABASE_URL", ""), wantErr: "DATABASE_URL"},
		{name: "bad database url names it", env: with("DATABASE_URL", "bad"), wantErr: "DATABASE_URL"},
		{name: "missing redis url names it", env: with("REDIS_URL", ""), wantErr: "REDIS_URL"},
		{name: "bad redis url names it", env: with("REDIS_URL", "http://x"), wantErr: "REDIS_URL"},
		{name: "bad duration names it", env: with("HOLD_TTL", "5 minutes"), wantErr: "HOLD_TTL"},
		{name: "negative duration names it", env: with("PAYMENT_WINDOW", "-1s"), wantErr: "PAYMENT_WINDOW"},
		{name: "bad rate names it", env: with("ADMIT_RATE", "fast"), wantErr: "ADMIT_RATE"},
		{name: "negative rate names it", env: with("ADMIT_RATE", "-5"), wantErr: "ADMIT_RATE"},
		{name: "zero seat limit names it", env: with("MAX_SEATS_PER_FAN", "0"), wantErr: "MAX_SEATS_PER_FAN"},
		{name: "tiny push interval names it", env: with("PUSH_INTERVAL", "1ms"), wantErr: "PUSH_INTERVAL"},
		{name: "negative push budget names it", env: with("PUSH_BUDGET", "-1"), wantErr: "PUSH_BUDGET"},
		{name: "short session secret names it", env: with("SESSION_SECRET", "short"), wantErr: "SESSION_SECRET"},
		{name: "admit ttl names it", env: with("ADMIT_TTL", "x"), wantErr: "ADMIT_TTL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadConfig(env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestRedactHidesPassword(t *testing.T) {
	got := redact("postgres://u:secret@h/db")
	if strings.Contains(got, "secret") {
		t.Fatalf("redact left the password: %s", got)
	}
}
