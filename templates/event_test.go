package templates

import (
	"bytes"
	"context"
	"html"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/a-h/templ"
)

// mustRenderFan renders c to a string.
func mustRenderFan(t *testing.T, c templ.Component) string {
	t.Helper()
	var b bytes.Buffer
	if err := c.Render(context.Background(), &b); err != nil {
		t.Fatalf("render: %v", err)
	}
	return b.String()
}

// startTags returns the start tags in doc that carry attr="value".
func startTags(doc, attr, value string) []string {
	return regexp.MustCompile(`<[a-z][a-z0-9]*\s[^>]*\b`+regexp.QuoteMeta(attr)+`="`+regexp.QuoteMeta(value)+`"[^>]*>`).FindAllString(doc, -1)
}

// mustTag returns the one start tag in doc that carries attr="value".
func mustTag(t *testing.T, doc, attr, value string) string {
	t.Helper()
	tags := startTags(doc, attr, value)
	if len(tags) != 1 {
		t.Fatalf("want one element with %s=%q, found %d in %s", attr, value, len(tags), doc)
	}
	return tags[0]
}

// attrOf returns the unescaped value of attribute name in a start tag, and
// whether it is present (boolean attributes have value "").
func attrOf(tag, name string) (string, bool) {
	m := regexp.MustCompile(`\s` + regexp.QuoteMeta(name) + `(?:="([^"]*)")?[\s/>]`).FindStringSubmatch(tag)
	if m == nil {
		return "", false
	}
	return html.UnescapeString(m[1]), true
}

// textOf returns the text right after the one start tag with attr="value".
func textOf(t *testing.T, doc, attr, value string) string {
	t.Helper()
	tag := mustTag(t, doc, attr, value)
	rest := doc[strings.Index(doc, tag)+len(tag):]
	return html.UnescapeString(rest[:strings.IndexByte(rest, '<')])
}

func sampleSeat(state string) SeatInfo {
	return SeatInfo{EventID: "gala", ID: "A-2-7", Section: "Floor", Row: "2", Number: 7, PriceCents: 4550, State: state}
}

func TestSeatButtonNamesTheSeatAndItsStateForEachState(t *testing.T) {
	for _, tc := range []struct {
		state, words, post string
		disabled, pressed  bool
	}{
		{state: "available", words: "available", post: "/events/gala/seats/A-2-7/hold"},
		{state: "mine", words: "held by you", post: "/events/gala/seats/A-2-7/release", pressed: true},
		{state: "held", words: "held by another fan", disabled: true},
		{state: "sold", words: "sold", disabled: true},
	} {
		t.Run(tc.state, func(t *testing.T) {
			tag := mustTag(t, mustRenderFan(t, SeatButton(sampleSeat(tc.state), false)), "data-seat", "A-2-7")
			want := map[string]string{
				"data-state": tc.state, "id": "seat-A-2-7", "type": "button",
				"aria-label": "Floor, row 2, seat 7, $45.50, " + tc.words,
			}
			for name, v := range want {
				if got, _ := attrOf(tag, name); got != v {
					t.Errorf("%s = %q, want %q", name, got, v)
				}
			}
			if !strings.HasPrefix(tag, "<button") {
				t.Errorf("seat is not a button: %s", tag)
			}
			post, hasPost := attrOf(tag, "hx-post")
			if post != tc.post || hasPost != (tc.post != "") {
				t.Errorf("hx-post = %q (present %v), want %q", post, hasPost, tc.post)
			}
			if _, ok := attrOf(tag, "aria-disabled"); ok != tc.disabled {
				t.Errorf("aria-disabled present = %v, want %v", ok, tc.disabled)
			}
			if _, ok := attrOf(tag, "aria-pressed"); ok != tc.pressed {
				t.Errorf("aria-pressed present = %v, want %v", ok, tc.pressed)
			}
			if _, ok := attrOf(tag, "hx-swap-oob"); ok {
				t.Error("an in-place seat is marked out of band")
			}
		})
	}
	t.Run("pushed seats swap out of band", func(t *testing.T) {
		tag := mustTag(t, mustRenderFan(t, SeatButton(sampleSeat("held"), true)), "data-seat", "A-2-7")
		if v, ok := attrOf(tag, "hx-swap-oob"); !ok || v != "true" {
			t.Errorf("hx-swap-oob = %q, %v", v, ok)
		}
	})
}

func sampleHolds() HoldsView {
	return HoldsView{
		EventID: "gala", TotalCents: 9100, ExpiresAt: time.Now().Add(4*time.Minute + 30*time.Second),
		IdempotencyKey: "form-abc", ExtendBy: 2 * time.Minute,
		Seats: []SeatInfo{sampleSeat("mine"), {EventID: "gala", ID: "A-2-8", Section: "Floor", Row: "2", Number: 8, PriceCents: 4550, State: "mine"}},
	}
}

func TestHoldPanelWithSeatsHasTimerCheckoutAndExtension(t *testing.T) {
	h := sampleHolds()
	doc := mustRenderFan(t, HoldPanel(h, false))
	timer := mustTag(t, doc, "data-testid", "hold-timer")
	if v, _ := attrOf(timer, "data-expires-at"); v != h.ExpiresAt.UTC().Format(time.RFC3339) {
		t.Errorf("data-expires-at = %q", v)
	}
	if got := textOf(t, doc, "data-testid", "hold-timer"); !regexp.MustCompile(`^4:(29|30)$`).MatchString(got) {
		t.Errorf("timer shows %q, want about 4:30", got)
	}
	form := mustTag(t, doc, "data-testid", "checkout")
	if !strings.HasPrefix(form, "<form") {
		t.Errorf("checkout is not a form: %s", form)
	}
	if v, _ := attrOf(form, "hx-post"); v != "/events/gala/checkout" {
		t.Errorf("checkout posts to %q", v)
	}
	for _, name := range []string{"card", "email"} {
		input := mustTag(t, doc, "name", name)
		if !strings.HasPrefix(input, "<input") {
			t.Errorf("%s is not an input: %s", name, input)
		}
		if _, ok := attrOf(input, "required"); !ok {
			t.Errorf("%s is not required", name)
		}
		if id, _ := attrOf(input, "id"); len(startTags(doc, "for", id)) != 1 {
			t.Errorf("%s has no label", name)
		}
	}
	if v, _ := attrOf(mustTag(t, doc, "name", "idempotency_key"), "value"); v != "form-abc" {
		t.Errorf("idempotency key = %q", v)
	}
	if !strings.Contains(doc, `<button type="submit">Pay $91.00</button>`) {
		t.Error("no submit button with the total")
	}
	if got := textOf(t, doc, "data-testid", "total"); got != "$91.00" {
		t.Errorf("total = %q", got)
	}
	extend := mustTag(t, doc, "data-testid", "extend-hold")
	if v, _ := attrOf(extend, "hx-post"); v != "/events/gala/holds/extend" {
		t.Errorf("extension posts to %q", v)
	}
	if v, _ := attrOf(extend, "aria-describedby"); v != "extend-hint" || !strings.Contains(doc, "Adds 2 minutes to your holds, once.") {
		t.Errorf("extension hint missing (aria-describedby %q)", v)
	}
	if v, _ := attrOf(mustTag(t, doc, "id", "hold-panel"), "data-count"); v != "2" {
		t.Errorf("data-count = %q", v)
	}

	t.Run("a used extension is said, not offered", func(t *testing.T) {
		h := sampleHolds()
		h.ExtensionUsed = true
		doc := mustRenderFan(t, HoldPanel(h, true))
		if len(startTags(doc, "data-testid", "extend-hold")) != 0 {
			t.Error("extension still offered")
		}
		mustTag(t, doc, "data-testid", "extend-used")
		if v, _ := attrOf(mustTag(t, doc, "id", "hold-panel"), "hx-swap-oob"); v != "true" {
			t.Error("pushed panel is not out of band")
		}
	})
	t.Run("an empty panel has no timer and no form", func(t *testing.T) {
		doc := mustRenderFan(t, HoldPanel(HoldsView{EventID: "gala", ExtendBy: time.Minute}, false))
		for _, id := range []string{"hold-timer", "checkout", "extend-hold", "extend-used"} {
			if len(startTags(doc, "data-testid", id)) != 0 {
				t.Errorf("empty panel has %s", id)
			}
		}
	})
}

func TestQueueWaitingShowsPositionAheadAndETA(t *testing.T) {
	doc := mustRenderFan(t, QueueWaiting(42, 41, 90, false))
	for id, want := range map[string]string{"queue-position": "42", "queue-ahead": "41", "queue-eta": "2 min"} {
		if got := textOf(t, doc, "data-testid", id); got != want {
			t.Errorf("%s = %q, want %q", id, got, want)
		}
	}
	q := mustTag(t, doc, "id", "queue")
	for name, want := range map[string]string{"data-state": "waiting", "hx-swap-oob": "true", "aria-live": "polite"} {
		if got, _ := attrOf(q, name); got != want {
			t.Errorf("queue %s = %q, want %q", name, got, want)
		}
	}
	if v, _ := attrOf(mustTag(t, doc, "class", "queue-progress"), "data-position"); v != "42" {
		t.Errorf("progress data-position = %q", v)
	}

	t.Run("paused admission says so instead of an ETA", func(t *testing.T) {
		doc := mustRenderFan(t, QueueWaiting(1, 0, -1, false))
		if got := textOf(t, doc, "data-testid", "queue-position"); got != "1" {
			t.Errorf("position = %q", got)
		}
		if !strings.Contains(doc, "Admission is paused") {
			t.Error("paused admission not explained")
		}
		if len(startTags(doc, "data-testid", "queue-eta")) != 0 {
			t.Error("an ETA shown while paused")
		}
	})
	t.Run("the pre-queue has no position yet", func(t *testing.T) {
		doc := mustRenderFan(t, QueueWaiting(0, 0, 300, true))
		if len(startTags(doc, "data-testid", "queue-position")) != 0 {
			t.Error("pre-queue shows a position")
		}
		if got := textOf(t, doc, "data-testid", "queue-eta"); got != "5 min" {
			t.Errorf("eta = %q", got)
		}
	})
}

func TestEventPageKeepsTheShuffleHashOutsideTheLivePanel(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	v := EventView{ID: "gala", Name: "Gala", Venue: "Hall", StartsAt: time.Now().Add(48 * time.Hour),
		OnSaleAt: time.Now().Add(time.Hour), ShuffleSeedSHA256: hash, Holds: HoldsView{EventID: "gala"}}
	doc := mustRenderFan(t, EventPage(v))
	note := mustTag(t, doc, "data-testid", "shuffle-hash")
	// The socket replaces #queue; the note must not be inside it.
	queue := doc[strings.Index(doc, `id="queue"`):]
	queue = queue[:strings.Index(queue, "</section>")]
	if strings.Contains(queue, "shuffle-hash") {
		t.Error("the shuffle note is inside #queue, which the pre-queue push replaces")
	}
	if !strings.Contains(doc, "<code class=\"hash\">"+hash+"</code>") || !strings.Contains(doc, `href="/api/events/gala/shuffle"`) {
		t.Errorf("note lacks the hash or the way to check it: %s", note)
	}
	for _, want := range []string{`ws-connect="/events/gala/ws"`, `id="hold-expiring"`, `id="alert" role="alert"`,
		`id="seat-list-details"`, `hx-get="/events/gala/seat-list"`, `src="/static/seatmap.js"`} {
		if !strings.Contains(doc, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(doc, "style=") || strings.Contains(doc, "<script>") || strings.Contains(doc, "hx-on") {
		t.Error("the page uses inline styles or scripts, which the CSP forbids")
	}
	onSale := v
	onSale.OnSale = true
	if strings.Contains(mustRenderFan(t, EventPage(onSale)), "shuffle-hash") {
		t.Error("the shuffle note shows after the sale opened")
	}
}

// row builds a row of seats numbered from 1 with the given states.
func row(label string, states ...string) RowView {
	r := RowView{Label: label}
	for i, st := range states {
		n := i + 1
		r.Seats = append(r.Seats, SeatInfo{EventID: "gala", ID: "A-" + label + "-" + strconv.Itoa(n), Section: "Floor", Row: label,
			Number: n, PriceCents: 4000, State: st})
	}
	return r
}

func TestBuildSeatListGroupsConsecutiveSeats(t *testing.T) {
	secs := []SectionView{
		{ID: "A", Name: "Floor", PriceCents: 4000, Rows: []RowView{
			row("1", "available", "available", "sold", "available", "mine", "mine", "available", "held", "available"),
			row("2", "sold", "held"),
		}},
		{ID: "B", Name: "Balcony", PriceCents: 2500, Rows: []RowView{row("1", "available")}},
	}
	v := BuildSeatList("gala", secs)
	if v.Available != 6 || v.Mine != 2 || len(v.Sections) != 2 {
		t.Fatalf("available %d, mine %d, sections %d", v.Available, v.Mine, len(v.Sections))
	}
	a := v.Sections[0]
	if a.Available != 5 || len(a.Rows) != 1 {
		t.Fatalf("section A: available %d, rows %d (a row with nothing to pick is left out)", a.Available, len(a.Rows))
	}
	var got []string
	for _, g := range a.Rows[0].Groups {
		var nums []string
		for _, s := range g.Seats {
			nums = append(nums, strconv.Itoa(s.Number))
		}
		got = append(got, groupLabel(g)+" "+strings.Join(nums, ","))
	}
	want := []string{"2 seats together 1,2", "1 seat on its own 4", "Held by you: 2 seats 5,6", "1 seat on its own 7", "1 seat on its own 9"}
	if !slices.Equal(got, want) {
		t.Errorf("groups = %q, want %q", got, want)
	}
	if v.Sections[1].Available != 1 {
		t.Errorf("section B available = %d", v.Sections[1].Available)
	}
}

func TestSeatListRendersHeadingsGroupsAndListButtons(t *testing.T) {
	secs := []SectionView{
		{ID: "A", Name: "Floor", PriceCents: 4000, Rows: []RowView{row("1", "available", "available", "available", "mine", "sold")}},
		{ID: "B", Name: "Balcony", PriceCents: 2500, Rows: []RowView{row("1", "sold")}},
	}
	doc := mustRenderFan(t, SeatList(BuildSeatList("gala", secs)))
	for _, want := range []string{
		`<h3 id="list-sec-A">Floor, $40.00`, `<h4>Row 1</h4>`, "3 seats together", "(seats 1–3)", "Held by you: 1 seat",
		"No seats left in this section.", "3 seats available.", "You hold 1.",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	if strings.Contains(doc, "data-seat=") {
		t.Error("the list uses data-seat, which must name only the map's seat")
	}
	hold := mustTag(t, doc, "data-list-seat", "A-1-2")
	for name, want := range map[string]string{"hx-post": "/events/gala/seats/A-1-2/hold", "aria-label": "Hold seat 2 (Floor, row 1, $40.00)",
		"data-state": "available", "id": "list-A-1-2", "type": "button"} {
		if got, _ := attrOf(hold, name); got != want {
			t.Errorf("available list seat %s = %q, want %q", name, got, want)
		}
	}
	release := mustTag(t, doc, "data-list-seat", "A-1-4")
	if v, _ := attrOf(release, "hx-post"); v != "/events/gala/seats/A-1-4/release" {
		t.Errorf("own list seat posts to %q", v)
	}
	if v, _ := attrOf(release, "aria-label"); v != "Release seat 4 (Floor, row 1, held by you)" {
		t.Errorf("own list seat is named %q", v)
	}
	if len(startTags(doc, "data-list-seat", "A-1-5")) != 0 {
		t.Error("a sold seat is listed")
	}
	group := mustTag(t, doc, "id", "grp-A-1-1")
	if !strings.HasPrefix(group, "<span") || len(startTags(doc, "aria-labelledby", "grp-A-1-1")) != 1 {
		t.Error("the group's seats are not labelled by the group")
	}
}

func TestHoldAnnouncementsReplaceTheLiveRegion(t *testing.T) {
	at := time.Date(2030, 5, 1, 20, 30, 15, 0, time.UTC)
	warn := mustRenderFan(t, HoldExpiring("A-1-1", at))
	done := mustRenderFan(t, HoldExtended(2*time.Minute, at))
	for doc, kind := range map[string]string{warn: "expiring", done: "extended"} {
		tag := mustTag(t, doc, "id", "hold-expiring")
		for name, want := range map[string]string{"hx-swap-oob": "true", "aria-live": "assertive", "data-kind": kind} {
			if got, _ := attrOf(tag, name); got != want {
				t.Errorf("%s: %s = %q, want %q", kind, name, got, want)
			}
		}
	}
	if !strings.Contains(warn, "20:30:15 UTC") || !strings.Contains(warn, "I need more time") {
		t.Errorf("warning: %s", warn)
	}
	if !strings.Contains(done, "held 2 minutes longer") {
		t.Errorf("confirmation: %s", done)
	}
}
