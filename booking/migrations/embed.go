// Package migrations holds seatmap's numbered SQL migrations, embedded in the
// binary and applied by booking.Migrate.
package migrations

import "embed"

// FS holds the migration files (goose format: NNNNN_name.sql).
//
//go:embed *.sql
var FS embed.FS
