package booking_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"seatmap/booking"
	"seatmap/internal/testenv"
)

// TestOpenDBPoolSize: the caller's size applies unless the connection string
// sets pool_max_conns, in URL or key=value form.
func TestOpenDBPoolSize(t *testing.T) {
	url := testenv.DatabaseURL(t)
	c, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	kv := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.Host, c.Port, c.User, c.Database)
	if c.Password != "" {
		kv += " password=" + c.Password
	}
	for _, tc := range []struct {
		name     string
		url      string
		maxConns int32
		want     int32
	}{
		{"the caller's size", url, booking.DefaultPoolSize, booking.DefaultPoolSize},
		{"another caller's size", url, 3, 3},
		{"the URL's size wins", testenv.WithQuery(url, "pool_max_conns=5"), booking.DefaultPoolSize, 5},
		{"the key=value form's size wins", kv + " pool_max_conns=6", booking.DefaultPoolSize, 6},
		{"key=value without a size", kv, 7, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := booking.OpenDB(ctxT(t), tc.url, tc.maxConns)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if got := db.Config().MaxConns; got != tc.want {
				t.Errorf("MaxConns = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestPoolSettingsDoNotReachPostgres: the migration's single connection
// accepts a DATABASE_URL with pool settings (Postgres refuses them as
// unknown parameters if they are passed on). The relay's is tested by
// startRelay, which gives it such a URL.
func TestPoolSettingsDoNotReachPostgres(t *testing.T) {
	if _, err := booking.Migrate(ctxT(t), withPoolSettings(testenv.DatabaseURL(t))); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
}

// withPoolSettings is url with pgxpool's settings added, as an operator may
// write DATABASE_URL.
func withPoolSettings(url string) string {
	return testenv.WithQuery(url, "pool_max_conns=5&pool_min_conns=1")
}
