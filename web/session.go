package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// Cookie names (API.md "Identity").
const (
	fanCookie   = "seatmap_sid"
	staffCookie = "seatmap_staff"
)

// cookieName is the name a cookie is set under: over HTTPS with the
// __Host- prefix, which browsers only accept with Secure, Path=/ and no
// Domain — so no sibling subdomain or plain-HTTP page can plant it.
func cookieName(base string, r *http.Request) string {
	if isHTTPS(r) {
		return "__Host-" + base
	}
	return base
}

// readCookie returns the request's cookie base, preferring the __Host-
// form over HTTPS.
func readCookie(r *http.Request, base string) (*http.Cookie, error) {
	if isHTTPS(r) {
		if c, err := r.Cookie("__Host-" + base); err == nil {
			return c, nil
		}
	}
	return r.Cookie(base)
}

// sessions signs and verifies the fan and staff cookies with HMAC-SHA256.
// A cookie whose signature does not verify is treated as absent.
type sessions struct {
	secret []byte
}

// sign returns value.signature, both base64url.
func (s sessions) sign(purpose, value string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return value + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verify returns the value of a signed token, or "" and false.
func (s sessions) verify(purpose, token string) (string, bool) {
	i := strings.LastIndexByte(token, '.')
	if i <= 0 || len(token) > 512 {
		return "", false
	}
	value := token[:i]
	want := s.sign(purpose, value)
	if !hmac.Equal([]byte(want), []byte(token)) {
		return "", false
	}
	return value, true
}

// newFanID returns a fresh random fan id: 16 bytes, base64url (22 chars).
func newFanID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validFanID reports whether id has the shape newFanID gives.
func validFanID(id string) bool {
	if len(id) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}

// fan returns the request's fan id from its signed cookie, issuing a new
// session cookie when there is none or it does not verify.
func (s sessions) fan(w http.ResponseWriter, r *http.Request) string {
	if c, err := readCookie(r, fanCookie); err == nil {
		if id, ok := s.verify("fan", c.Value); ok && validFanID(id) {
			return id
		}
	}
	id := newFanID()
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName(fanCookie, r),
		Value:    s.sign("fan", id),
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   isHTTPS(r),
		MaxAge:   int((30 * 24 * time.Hour).Seconds()),
	})
	return id
}

// isHTTPS reports whether the client reached us over TLS (directly or via a
// proxy that says so).
func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
