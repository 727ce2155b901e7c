package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"seatmap/realtime"
)

func init() { commands["verify-shuffle"] = runVerifyShuffle }

// runVerifyShuffle recomputes an event's pre-queue order from its published
// shuffle (GET /api/events/{event}/shuffle): the seed must hash to the hash
// published before the sale, and sorting the entries by HMAC(seed, entry)
// must give the published order. Anyone can run it against any server.
func runVerifyShuffle(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify-shuffle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", "http://127.0.0.1:8080", "server base URL")
	event := fs.String("event", "", "event id (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *event == "" {
		return errors.New("verify-shuffle: --event is required")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *base+"/api/events/"+url.PathEscape(*event)+"/shuffle", nil)
	if err != nil {
		return fmt.Errorf("verify-shuffle: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("verify-shuffle: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("verify-shuffle: server answered %s", resp.Status)
	}
	var info realtime.ShuffleInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&info); err != nil {
		return fmt.Errorf("verify-shuffle: decode: %w", err)
	}
	return verifyShuffle(info, stdout)
}

// verifyShuffle checks a published shuffle and reports on stdout.
func verifyShuffle(info realtime.ShuffleInfo, stdout io.Writer) error {
	if info.Seed == "" {
		fmt.Fprintf(stdout, "sale not open yet: seed SHA-256 is %s; run again after the sale opens\n", info.SeedSHA256)
		return nil
	}
	seed, err := hex.DecodeString(info.Seed)
	if err != nil {
		return fmt.Errorf("verify-shuffle: seed is not hex: %w", err)
	}
	sum := sha256.Sum256(seed)
	if hex.EncodeToString(sum[:]) != info.SeedSHA256 {
		return fmt.Errorf("verify-shuffle: FAILED: the revealed seed does not hash to the published %s", info.SeedSHA256)
	}
	if got := realtime.ShuffleOrder(seed, info.Entries); !slices.Equal(got, info.Entries) {
		return errors.New("verify-shuffle: FAILED: the published order is not the order the seed gives")
	}
	fmt.Fprintf(stdout, "verified: seed matches its published SHA-256 and the %d pre-queue entries are in the order HMAC-SHA256(seed, entry) gives\n", len(info.Entries))
	return nil
}
