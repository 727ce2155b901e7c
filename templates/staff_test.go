package templates

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/a-h/templ"
)

// mustRenderStaff renders c to a string.
func mustRenderStaff(t *testing.T, c templ.Component) string {
	t.Helper()
	var b bytes.Buffer
	if err := c.Render(context.Background(), &b); err != nil {
		t.Fatalf("render: %v", err)
	}
	return b.String()
}

// staffStat returns the text of the element with data-stat=name, failing
// unless there is exactly one.
func staffStat(t *testing.T, html, name string) string {
	t.Helper()
	m := regexp.MustCompile(`data-stat="`+regexp.QuoteMeta(name)+`"[^>]*>([^<]*)<`).FindAllStringSubmatch(html, -1)
	if len(m) != 1 {
		t.Fatalf("want one [data-stat=%s], found %d", name, len(m))
	}
	return m[0][1]
}

// sampleCockpit is a cockpit mid-sale.
func sampleCockpit() Cockpit {
	now := time.Date(2030, 5, 1, 20, 30, 15, 0, time.UTC)
	v := Cockpit{
		EventID: "gala", Name: "Spring Gala", Venue: "Main Hall", StartsAt: now.Add(48 * time.Hour), UpdatedAt: now,
		Stats: CockpitStats{Sold: 37, Held: 5, Available: 158, QueueLength: 1204, Admitted: 310, AdmitRate: 50,
			AdmitRateMeasured: 48.5, RevenueCents: 123456789, Orders: 12},
		Sections: []CockpitSection{
			{ID: "A", Name: "Floor", PriceCents: 4500, Total: 100, Sold: 30, Held: 5},
			{ID: "B", Name: "Balcony", PriceCents: 2500, Total: 100, Sold: 7},
			{ID: "C", Name: "Box", PriceCents: 9900, Total: 10, Sold: 10},
		},
		Orders: []CockpitOrder{{ID: "0b5e0a3c-1111-4222-8333-444455556666", Status: "confirmed", Seats: []string{"A-1-1", "A-1-2"},
			TotalCents: 9000, CreatedAt: now.Add(-time.Minute)}},
		Audit: []CockpitAudit{{Actor: "staff", Action: "admission", Detail: `{"rate":null,"paused":true}`, CreatedAt: now.Add(-2 * time.Minute)}},
	}
	first := now.Truncate(time.Minute).Add(-59 * time.Minute)
	for i := range 60 {
		v.Stats.SalesPerMinute = append(v.Stats.SalesPerMinute, CockpitMinute{Minute: first.Add(time.Duration(i) * time.Minute)})
	}
	v.Stats.SalesPerMinute[57].Seats = 4
	v.Stats.SalesPerMinute[59].Seats = 12
	return v
}

func TestStaffCockpitRendersEveryFigureAsPlainNumbers(t *testing.T) {
	html := mustRenderStaff(t, StaffCockpit(sampleCockpit()))
	for name, want := range map[string]string{
		"sold": "37", "held": "5", "available": "158", "queue_length": "1204", "admitted": "310",
		"revenue_cents": "123456789", "orders": "12", "admit_rate": "50", "admit_rate_measured": "48.5",
	} {
		if got := staffStat(t, html, name); got != want {
			t.Errorf("[data-stat=%s] = %q, want %q", name, got, want)
		}
	}
	for _, want := range []string{
		`ws-connect="/staff/events/gala/ws"`, `hx-ext="ws"`, `id="cockpit-live"`, `id="audit-log"`, `id="cockpit-stale"`,
		`$1,234,567.89`, `data-testid="conversion">88%<`, `data-paused="false"`, "Admission running",
		`data-action="admission"`, `{&#34;rate&#34;:null,&#34;paused&#34;:true}`,
		`data-order="0b5e0a3c-1111-4222-8333-444455556666"`, "A-1-1, A-1-2", "$90.00",
		`src="/static/vendor/htmx.min.js"`, `src="/static/staff.js"`, `href="/static/staff.css"`,
		`action="/staff/events/gala/admission"`, `hx-post="/staff/events/gala/release"`, `value="50"`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("cockpit lacks %q", want)
		}
	}
	if strings.Contains(html, "style=") || strings.Contains(html, "<script>") || strings.Contains(html, "hx-on") {
		t.Error("cockpit uses inline styles or scripts, which the CSP forbids")
	}
	if strings.Contains(html, `hx-swap-oob`) {
		t.Error("the full page marks elements for out-of-band swaps")
	}
}

func TestStaffCockpitChartHasOneBarPerNonEmptyMinute(t *testing.T) {
	html := mustRenderStaff(t, CockpitLive(sampleCockpit(), false))
	bars := regexp.MustCompile(`<rect class="bar"[^>]*data-seats="(\d+)"[^>]*height="(\d+)"`).FindAllStringSubmatch(html, -1)
	if len(bars) != 2 {
		t.Fatalf("want 2 bars, got %d", len(bars))
	}
	// Scale 15 (12 rounded up to 5s): 12 seats → 112 of 140 units, 4 → 37.
	if bars[0][1] != "4" || bars[0][2] != "37" || bars[1][1] != "12" || bars[1][2] != "112" {
		t.Errorf("bars %v", bars)
	}
	if !strings.Contains(html, "16 seats sold in this period; busiest minute 20:30 UTC with 12; 12 in the current minute.") {
		t.Error("chart lacks its text summary")
	}
}

func TestStaffCockpitHeatMapBucketsSectionFill(t *testing.T) {
	html := mustRenderStaff(t, CockpitLive(sampleCockpit(), false))
	for _, want := range []string{
		`class="heat heat-2" data-section="A" data-sold="30" data-held="5" data-total="100"`,
		`class="heat heat-0" data-section="B"`,
		`class="heat heat-5" data-section="C"`,
		"30 sold · 5 held · 100 seats", `width="30.00"`, `x="30.00" y="0" width="5.00"`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("heat map lacks %q", want)
		}
	}
}

func TestStaffCockpitPushSwapsOutOfBand(t *testing.T) {
	html := mustRenderStaff(t, CockpitPush(sampleCockpit()))
	for _, id := range []string{"cockpit-live", "audit-log", "cockpit-stale"} {
		if !regexp.MustCompile(`id="` + id + `"[^>]*hx-swap-oob="true"`).MatchString(html) {
			t.Errorf("push does not swap #%s out of band", id)
		}
	}
	stale := mustRenderStaff(t, CockpitStale("the service is temporarily unavailable, please retry", true))
	if !strings.Contains(stale, "Figures could not be refreshed: the service is temporarily unavailable") {
		t.Errorf("stale notice: %s", stale)
	}
}

func TestStaffCockpitShowsPausedAdmissionAndEmptyLists(t *testing.T) {
	v := sampleCockpit()
	v.Stats.Paused, v.Stats.Sold, v.Stats.Held = true, 0, 0
	v.Orders, v.Audit = nil, nil
	html := mustRenderStaff(t, StaffCockpit(v))
	for _, want := range []string{"Admission paused", `data-paused="true"`, `data-testid="conversion">–<`,
		`data-testid="no-orders"`, `data-testid="no-audit"`} {
		if !strings.Contains(html, want) {
			t.Errorf("cockpit lacks %q", want)
		}
	}
}

func TestStaffLoginShowsTheErrorInAnAlert(t *testing.T) {
	html := mustRenderStaff(t, StaffLogin(StaffLoginView{Next: "/staff/events/gala", Error: "That is not the staff token."}))
	for _, want := range []string{`name="password"`, `type="password"`, `value="/staff/events/gala"`,
		`role="alert" data-testid="login-error">That is not the staff token.<`} {
		if !strings.Contains(html, want) {
			t.Errorf("login lacks %q", want)
		}
	}
	if strings.Contains(mustRenderStaff(t, StaffLogin(StaffLoginView{Next: "/staff"})), `role="alert"`) {
		t.Error("login without an error shows an alert")
	}
}

func TestStaffHomeLinksEachEvent(t *testing.T) {
	html := mustRenderStaff(t, StaffHome([]StaffEventRow{{ID: "gala", Name: "Spring Gala", Total: 200, Sold: 37, Available: 163}}))
	for _, want := range []string{`href="/staff/events/gala"`, `data-col="sold">37<`, `data-col="available">163<`, `action="/staff/logout"`} {
		if !strings.Contains(html, want) {
			t.Errorf("staff home lacks %q", want)
		}
	}
}

func TestStaffMoney(t *testing.T) {
	for cents, want := range map[int64]string{0: "$0.00", 5: "$0.05", 123456: "$1,234.56", 100000000: "$1,000,000.00", -250: "-$2.50"} {
		if got := staffMoney(cents); got != want {
			t.Errorf("staffMoney(%d) = %q, want %q", cents, got, want)
		}
	}
}
