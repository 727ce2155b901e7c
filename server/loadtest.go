package server

import (
	"context"
	"io"

	"seatmap/loadtest"
)

func init() {
	commands["loadtest"] = func(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
		return loadtest.Run(ctx, args, stdout, stderr)
	}
}
