// Command seatmap is a real-time ticket-drop server: `seatmap serve`,
// `seatmap migrate`, `seatmap seed`, `seatmap loadtest`. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"seatmap/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "seatmap:", err)
		os.Exit(1)
	}
}
