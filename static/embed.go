// Package static holds seatmap's browser assets — vendored htmx and its
// WebSocket extension (see vendor/VERSIONS and scripts/vendor-htmx), the
// stylesheet and the small page scripts — embedded in the binary.
package static

import "embed"

// FS is the asset tree, served under /static/.
//
//go:embed vendor/* *.css *.js
var FS embed.FS
