package loadtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// msgType is the "type" of a server → client WebSocket message (API.md
// "Real-time channel").
type msgType uint8

const (
	msgUnknown msgType = iota
	msgQueue
	msgAdmitted
	msgSnapshot
	msgSeats
	msgHoldExpiring
	msgError
	msgPong
)

var msgTypeNames = map[string]msgType{
	"queue": msgQueue, "admitted": msgAdmitted, "snapshot": msgSnapshot, "seats": msgSeats,
	"hold_expiring": msgHoldExpiring, "error": msgError, "pong": msgPong,
}

// Seat states as a fan's live map stores them, one byte per seat.
const (
	stUnknown uint8 = iota
	stAvailable
	stHeld
	stSold
)

// stateOf maps a wire state ("available", "held", "sold") to its byte.
func stateOf(b []byte) uint8 {
	switch string(b) {
	case "available":
		return stAvailable
	case "held":
		return stHeld
	case "sold":
		return stSold
	}
	return stUnknown
}

// stateName is the wire name of a state byte.
func stateName(s uint8) string {
	switch s {
	case stAvailable:
		return "available"
	case stHeld:
		return "held"
	case stSold:
		return "sold"
	}
	return "unknown"
}

// header is what a message carries besides its seat lists.
type header struct {
	typ      msgType
	seq      uint64
	hasSeq   bool
	position int64
	code     string // error messages only
}

// visitor receives the seat lists of a message while it is parsed, so that
// a 10,000-seat snapshot updates a fan's map without building a Go map.
// The byte slices alias the frame and are valid only during the call.
type visitor interface {
	// snapshotBegin is called when a snapshot's "seats" object starts.
	snapshotBegin()
	snapshotSeat(id []byte, state uint8)
	snapshotMine(id []byte)
	change(id []byte, state uint8, mine bool)
}

// errFrame is returned for a frame that is not one JSON object of the
// shapes API.md describes.
var errFrame = errors.New("malformed frame")

// maxDepth bounds the nesting of values skipped by the parser.
const maxDepth = 32

// parseMessage parses one server → client frame. Keys may come in any
// order; unknown keys are skipped. Seat lists are reported to v (which may
// be nil) as they are read: a frame that turns out malformed half-way may
// already have reported some seats.
func parseMessage(b []byte, v visitor) (header, error) {
	var h header
	p := parser{b: b}
	p.ws()
	if !p.eat('{') {
		return h, p.fail("object")
	}
	p.ws()
	if p.eat('}') {
		return h, p.end()
	}
	for {
		p.ws()
		key, err := p.str()
		if err != nil {
			return h, err
		}
		p.ws()
		if !p.eat(':') {
			return h, p.fail("':'")
		}
		p.ws()
		switch string(key) {
		case "type":
			s, err := p.str()
			if err != nil {
				return h, err
			}
			h.typ = msgTypeNames[string(s)]
		case "seq":
			n, err := p.uint()
			if err != nil {
				return h, err
			}
			h.seq, h.hasSeq = n, true
		case "position":
			n, err := p.uint()
			if err != nil {
				return h, err
			}
			h.position = int64(n)
		case "code":
			s, err := p.str()
			if err != nil {
				return h, err
			}
			h.code = string(s)
		case "seats":
			if p.peek() == '{' {
				err = p.snapshotSeats(v)
			} else {
				err = p.skip(0)
			}
		case "mine":
			if p.peek() == '[' {
				err = p.mineList(v)
			} else {
				err = p.skip(0)
			}
		case "changes":
			err = p.changes(v)
		default:
			err = p.skip(0)
		}
		if err != nil {
			return h, err
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			return h, p.end()
		}
		return h, p.fail("',' or '}'")
	}
}

// parser is a small JSON reader specialised for seatmap's frames.
type parser struct {
	b []byte
	i int
	// scratch holds a decoded string that had escapes.
	scratch []byte
}

func (p *parser) fail(want string) error {
	if p.i >= len(p.b) {
		return fmt.Errorf("%w: want %s at end of input", errFrame, want)
	}
	return fmt.Errorf("%w: want %s at offset %d", errFrame, want, p.i)
}

func (p *parser) end() error {
	p.ws()
	if p.i != len(p.b) {
		return p.fail("end of frame")
	}
	return nil
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string and returns its decoded bytes. Without escapes the
// result aliases the input; with escapes it is decoded by encoding/json into
// p.scratch (valid until the next call).
func (p *parser) str() ([]byte, error) {
	if !p.eat('"') {
		return nil, p.fail("string")
	}
	start := p.i
	escaped := false
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			if !escaped {
				return p.b[start : p.i-1], nil
			}
			var s string
			if err := json.Unmarshal(p.b[start-1:p.i], &s); err != nil {
				return nil, fmt.Errorf("%w: bad string at offset %d", errFrame, start)
			}
			p.scratch = append(p.scratch[:0], s...)
			return p.scratch, nil
		case c == '\\':
			escaped = true
			p.i += 2
		case c < 0x20:
			return nil, fmt.Errorf("%w: control character in string at offset %d", errFrame, p.i)
		default:
			p.i++
		}
	}
	return nil, p.fail("closing '\"'")
}

// uint reads a non-negative integer.
func (p *parser) uint() (uint64, error) {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == start {
		return 0, p.fail("number")
	}
	if p.b[start] == '0' && p.i-start > 1 {
		return 0, fmt.Errorf("%w: number with a leading zero at offset %d", errFrame, start)
	}
	n, err := strconv.ParseUint(string(p.b[start:p.i]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: number at offset %d: %v", errFrame, start, err)
	}
	return n, nil
}

func (p *parser) lit(word string) bool {
	if len(p.b)-p.i >= len(word) && string(p.b[p.i:p.i+len(word)]) == word {
		p.i += len(word)
		return true
	}
	return false
}

// skip skips any JSON value.
func (p *parser) skip(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested deeper than %d", errFrame, maxDepth)
	}
	switch c := p.peek(); {
	case c == '"':
		_, err := p.str()
		return err
	case c == '{' || c == '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		p.i++
		p.ws()
		if p.eat(closing) {
			return nil
		}
		for {
			p.ws()
			if c == '{' {
				if _, err := p.str(); err != nil {
					return err
				}
				p.ws()
				if !p.eat(':') {
					return p.fail("':'")
				}
				p.ws()
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			p.ws()
			if p.eat(',') {
				continue
			}
			if p.eat(closing) {
				return nil
			}
			return p.fail("',' or closing bracket")
		}
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.i
		for p.i < len(p.b) && isNumberByte(p.b[p.i]) {
			p.i++
		}
		if !json.Valid(p.b[start:p.i]) { // JSON's number grammar: no 007, +1, .5
			return fmt.Errorf("%w: number at offset %d", errFrame, start)
		}
		return nil
	case p.lit("true"), p.lit("false"), p.lit("null"):
		return nil
	default:
		return p.fail("value")
	}
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// snapshotSeats reads {"seat":"state",...}.
func (p *parser) snapshotSeats(v visitor) error {
	p.i++ // '{'
	if v != nil {
		v.snapshotBegin()
	}
	p.ws()
	if p.eat('}') {
		return nil
	}
	var id []byte
	for {
		p.ws()
		k, err := p.str()
		if err != nil {
			return err
		}
		id = append(id[:0], k...) // k may live in scratch, which the value reuses
		p.ws()
		if !p.eat(':') {
			return p.fail("':'")
		}
		p.ws()
		s, err := p.str()
		if err != nil {
			return err
		}
		if v != nil {
			v.snapshotSeat(id, stateOf(s))
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			return nil
		}
		return p.fail("',' or '}'")
	}
}

// mineList reads ["seat",...].
func (p *parser) mineList(v visitor) error {
	p.i++ // '['
	p.ws()
	if p.eat(']') {
		return nil
	}
	for {
		p.ws()
		s, err := p.str()
		if err != nil {
			return err
		}
		if v != nil {
			v.snapshotMine(s)
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat(']') {
			return nil
		}
		return p.fail("',' or ']'")
	}
}

// changes reads [{"seat":S,"state":X,"mine":B},...] (or null).
func (p *parser) changes(v visitor) error {
	if p.lit("null") {
		return nil
	}
	if !p.eat('[') {
		return p.fail("'['")
	}
	p.ws()
	if p.eat(']') {
		return nil
	}
	var id []byte
	for {
		p.ws()
		if !p.eat('{') {
			return p.fail("'{'")
		}
		id = id[:0]
		var state uint8
		mine, haveSeat := false, false
		p.ws()
		if !p.eat('}') {
			for {
				p.ws()
				k, err := p.str()
				if err != nil {
					return err
				}
				p.ws()
				if !p.eat(':') {
					return p.fail("':'")
				}
				p.ws()
				switch string(k) {
				case "seat":
					s, err := p.str()
					if err != nil {
						return err
					}
					id = append(id, s...)
					haveSeat = true
				case "state":
					s, err := p.str()
					if err != nil {
						return err
					}
					state = stateOf(s)
				case "mine":
					switch {
					case p.lit("true"):
						mine = true
					case p.lit("false"):
						mine = false
					default:
						return p.fail("boolean")
					}
				default:
					if err := p.skip(1); err != nil {
						return err
					}
				}
				p.ws()
				if p.eat(',') {
					continue
				}
				if p.eat('}') {
					break
				}
				return p.fail("',' or '}'")
			}
		}
		if !haveSeat {
			return fmt.Errorf("%w: change without a seat at offset %d", errFrame, p.i)
		}
		if v != nil {
			v.change(id, state, mine)
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat(']') {
			return nil
		}
		return p.fail("',' or ']'")
	}
}
