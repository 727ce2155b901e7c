package realtime

import (
	"encoding/json"
	"testing"
)

// FuzzIsPing: the socket's frame classifier never panics, and calls a frame a
// ping exactly when it is a JSON object whose "type" is "ping".
func FuzzIsPing(f *testing.F) {
	for _, s := range []string{`{"type":"ping"}`, `{"type":"pong"}`, `{"type":1}`, `[]`, `null`, ``, `{"type":"ping","x":[1,2]}`, `{"TYPE":"ping"}`, "\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := isPing(data)
		var m map[string]json.RawMessage
		want := false
		if json.Unmarshal(data, &m) == nil {
			var typ struct {
				Type string `json:"type"`
			}
			want = json.Unmarshal(data, &typ) == nil && typ.Type == "ping"
		}
		if got != want {
			t.Fatalf("isPing(%q) = %v, want %v", data, got, want)
		}
	})
}
