package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"seatmap/booking"
)

const usage = `seatmap — a real-time ticket drop server

usage:
  seatmap serve    [--addr ADDR] [--no-migrate] [--no-workers] [--pprof]
  seatmap migrate
  seatmap seed     --event ID --name NAME --sections N --rows R --seats-per-row S
                   [--price-cents P] [--on-sale-at RFC3339] [--starts-at RFC3339] [--venue V]
  seatmap verify-shuffle --event ID [--url BASE]
  seatmap loadtest --help

Configuration is read from the environment (DATABASE_URL, REDIS_URL, ...);
see README.md.
`

// Run is the whole seatmap program: main only calls it. args[0] is the
// program name; getenv reads the environment; ctx is cancelled on SIGINT or
// SIGTERM. It returns nil for a clean exit.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch cmd, rest := args[1], args[2:]; cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout, stderr)
	case "seed":
		return runSeed(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		if extra, ok := commands[cmd]; ok {
			return extra(ctx, rest, getenv, stdout, stderr)
		}
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// commands holds the commands registered by other files of this package
// (loadtest, verify-shuffle) so Run's switch stays short.
var commands = map[string]func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error{}

// databaseOnly loads just what migrate and seed need: a valid DATABASE_URL.
func databaseOnly(getenv func(string) string) (string, error) {
	u := strings.TrimSpace(getenv("DATABASE_URL"))
	c := Config{DatabaseURL: u, RedisURL: "redis://unused:1", Addr: "x", HoldTTL: time.Minute, PushInterval: time.Second}
	if err := c.Validate(); err != nil {
		return "", err
	}
	return u, nil
}

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	url, err := databaseOnly(getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	applied, err := booking.Migrate(ctx, url)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	fmt.Fprintf(stdout, "migrations applied: %d\n", len(applied))
	return nil
}

func runSeed(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("event", "", "event id ([A-Za-z0-9_-], required)")
	name := fs.String("name", "", "event name (required)")
	venue := fs.String("venue", "Seatmap Arena", "venue name")
	sections := fs.Int("sections", 3, "number of sections (A, B, C, ...)")
	rows := fs.Int("rows", 10, "rows per section")
	perRow := fs.Int("seats-per-row", 20, "seats per row")
	price := fs.Int64("price-cents", 5000, "price of section A in cents; each further section costs a quarter less, down to a quarter")
	onSale := fs.String("on-sale-at", "", "when the sale opens (RFC 3339; default now)")
	startsAt := fs.String("starts-at", "", "when the event starts (RFC 3339; default 30 days after the sale opens)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" || *name == "" {
		return errors.New("seed: --event and --name are required")
	}
	ne := booking.NewEvent{ID: *id, Name: *name, Venue: *venue, OnSaleAt: time.Now().UTC().Truncate(time.Second)}
	if *onSale != "" {
		t, err := time.Parse(time.RFC3339, *onSale)
		if err != nil {
			return fmt.Errorf("seed: --on-sale-at: %w", err)
		}
		ne.OnSaleAt = t
	}
	ne.StartsAt = ne.OnSaleAt.Add(30 * 24 * time.Hour)
	if *startsAt != "" {
		t, err := time.Parse(time.RFC3339, *startsAt)
		if err != nil {
			return fmt.Errorf("seed: --starts-at: %w", err)
		}
		ne.StartsAt = t
	}
	for i := 0; i < *sections; i++ {
		p := *price - int64(i)*(*price/4)
		if p < *price/4 {
			p = *price / 4
		}
		ne.Sections = append(ne.Sections, booking.NewSection{
			Name: "Section " + string(rune('A'+i)), PriceCents: p, Rows: *rows, SeatsPerRow: *perRow,
		})
	}
	if err := ne.Validate(); err != nil {
		return fmt.Errorf("seed: %s", booking.ErrorMessage(err))
	}
	url, err := databaseOnly(getenv)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := booking.Migrate(cctx, url); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	db, err := booking.OpenDB(cctx, url, 4)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer db.Close()
	svc := booking.NewService(db, nil, nil, booking.Config{}, nil, nil)
	ev, err := svc.CreateEvent(ctx, ne)
	if booking.ErrorCode(err) == booking.ECodeEventExists {
		return fmt.Errorf("%s: %s", booking.ECodeEventExists, booking.ErrorMessage(err))
	}
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fmt.Fprintf(stdout, "created event %s (%q): %d seats in %d sections, on sale %s\n",
		ev.ID, ev.Name, ev.SeatsTotal, len(ev.Sections), ev.OnSaleAt.Format(time.RFC3339))
	return nil
}
