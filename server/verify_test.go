package server

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"

	"seatmap/realtime"
)

func TestVerifyShuffle(t *testing.T) {
	seed := []byte("0123456789abcdef0123456789abcdef")
	sum := sha256.Sum256(seed)
	hash := hex.EncodeToString(sum[:])
	order := realtime.ShuffleOrder(seed, []string{"e1", "e2", "e3", "e4", "e5"})
	swapped := append([]string{}, order...)
	swapped[0], swapped[1] = swapped[1], swapped[0]
	tests := []struct {
		name    string
		info    realtime.ShuffleInfo
		wantErr bool
	}{
		{"honest draw verifies", realtime.ShuffleInfo{SeedSHA256: hash, Seed: hex.EncodeToString(seed), Entries: order}, false},
		{"before the sale there is nothing to check", realtime.ShuffleInfo{SeedSHA256: hash}, false},
		{"a reordered line fails", realtime.ShuffleInfo{SeedSHA256: hash, Seed: hex.EncodeToString(seed), Entries: swapped}, true},
		{"another seed fails", realtime.ShuffleInfo{SeedSHA256: hash, Seed: hex.EncodeToString([]byte("other")), Entries: order}, true},
		{"a non-hex seed fails", realtime.ShuffleInfo{SeedSHA256: hash, Seed: "zz", Entries: order}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verifyShuffle(tt.info, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}
