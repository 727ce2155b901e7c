package server

import (
	"context"
	"io"

	"seatmap/loadtest"
)

func init() {
	commands["loadtest"] = func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
		loadtest.TuneGC(getenv)
		return loadtest.Run(ctx, args, stdout, stderr)
	}
}
