import { expect, Page, Browser, APIRequestContext, PlaywrightWorkerArgs } from '@playwright/test';

// Shared by the fans' specs: events made through the staff API (a fresh id
// per test, so every test starts from an untouched map), fans as browser
// contexts or as API clients with their own session cookies.

export const staff = { Authorization: 'Bearer e2e-staff-token' };

export interface EventOptions {
  sections?: number;
  rows?: number;
  perRow?: number;
  // When the sale opens, relative to now (default: a minute ago).
  onSaleInMs?: number;
  name?: string;
}

// createEvent makes a fresh event: sections A, B, C… ("Section A" at $50,
// each next one $10 cheaper), rows × perRow seats each.
export async function createEvent(request: APIRequestContext, o: EventOptions = {}): Promise<string> {
  const { sections = 1, rows = 2, perRow = 6, onSaleInMs = -60e3 } = o;
  const id = 'fan-' + Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
  const now = Date.now();
  const res = await request.post('/api/staff/events', {
    headers: staff,
    data: {
      id, name: o.name ?? 'Fan Test ' + id, venue: 'E2E Arena',
      starts_at: new Date(now + 86400e3).toISOString(),
      on_sale_at: new Date(now + onSaleInMs).toISOString(),
      sections: Array.from({ length: sections }, (_, i) => ({
        name: 'Section ' + 'ABCDEFGH'[i], price_cents: 5000 - i * 1000, rows, seats_per_row: perRow,
      })),
    },
  });
  expect(res.status(), await res.text()).toBe(201);
  return id;
}

// setAdmission pauses or resumes an event's admission, or sets its rate.
export async function setAdmission(request: APIRequestContext, event: string, body: { paused?: boolean; rate?: number }) {
  const res = await request.post(`/api/staff/events/${event}/admission`, { headers: staff, data: body });
  expect(res.status(), await res.text()).toBe(200);
}

// openMap opens the event page and waits for the live map.
export async function openMap(page: Page, event: string) {
  await page.goto('/events/' + event);
  await expect(page.locator('#queue[data-state="admitted"]')).toBeVisible();
  await expect(page.locator('[data-seat="A-1-1"]')).toBeVisible();
}

export async function newFan(browser: Browser, viewport?: { width: number; height: number }) {
  const ctx = await browser.newContext(viewport ? { viewport } : {});
  return { ctx, page: await ctx.newPage() };
}

// apiFan is a fan with its own cookie jar, talking to the JSON API.
export async function apiFan(playwright: PlaywrightWorkerArgs['playwright'], baseURL: string): Promise<APIRequestContext> {
  return playwright.request.newContext({ baseURL });
}

// admit makes an API fan join the waiting room until admitted.
export async function admit(fan: APIRequestContext, event: string) {
  await expect.poll(async () => {
    const res = await fan.post(`/api/events/${event}/queue`);
    return (await res.json()).state;
  }, { timeout: 20_000 }).toBe('admitted');
}

// hold holds seats for an (admitted) API fan.
export async function hold(fan: APIRequestContext, event: string, seats: string[]) {
  const res = await fan.post(`/api/events/${event}/holds`, { data: { seats } });
  expect(res.status(), await res.text()).toBe(201);
}

// buy holds seats for an API fan and checks out with the approving card.
export async function buy(fan: APIRequestContext, event: string, seats: string[]) {
  await hold(fan, event, seats);
  const res = await fan.post(`/api/events/${event}/checkout`, {
    headers: { 'Idempotency-Key': 'e2e-' + Math.random().toString(36).slice(2) },
    data: { card: '4242424242424242', email: 'fan@example.com' },
  });
  expect(res.status(), await res.text()).toBe(201);
}

// tabTo presses Tab until the focused element matches selector (keyboard
// only: no clicks, no programmatic focus) and returns how many presses it
// took.
export async function tabTo(page: Page, selector: string, max = 80): Promise<number> {
  for (let i = 1; i <= max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(s => !!document.activeElement && document.activeElement.matches(s), selector)) {
      return i;
    }
  }
  throw new Error(`Tab never reached ${selector} in ${max} presses`);
}
