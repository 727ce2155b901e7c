import { test, expect, Page, Browser, BrowserContext, APIRequestContext } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';

// The staff side: login, the event list, the live cockpit and its controls.
// The server runs with STAFF_TOKEN=e2e-staff-token (start-server.sh).
const token = 'e2e-staff-token';
const bearer = { Authorization: `Bearer ${token}` };

// createEvent makes a fresh event through the staff API: section A "Floor"
// (2 rows × 5 at $40) and section B "Balcony" (1 row × 5 at $25), on sale.
async function createEvent(request: APIRequestContext): Promise<string> {
  const id = 'staff-' + Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
  const now = Date.now();
  const res = await request.post('/api/staff/events', {
    headers: bearer,
    data: {
      id, name: 'Staff Test ' + id, venue: 'Cockpit Hall',
      starts_at: new Date(now + 86400e3).toISOString(),
      on_sale_at: new Date(now - 60e3).toISOString(),
      sections: [
        { name: 'Floor', price_cents: 4000, rows: 2, seats_per_row: 5 },
        { name: 'Balcony', price_cents: 2500, rows: 1, seats_per_row: 5 },
      ],
    },
  });
  expect(res.status(), await res.text()).toBe(201);
  return id;
}

// login logs the page in through the form and lands on next.
async function login(page: Page, next = '/staff') {
  await page.goto('/staff/login?next=' + encodeURIComponent(next));
  await page.getByLabel('Staff token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page).toHaveURL(next);
}

// Staff logins are rate limited per address (5 a minute), so the cockpit
// tests share one login: staffSession logs in once and the tests open
// browser contexts with its cookies.
type StorageState = Awaited<ReturnType<BrowserContext['storageState']>>;
let staffState: StorageState | undefined;

async function staffSession(browser: Browser): Promise<BrowserContext> {
  if (!staffState) {
    const ctx = await browser.newContext();
    await login(await ctx.newPage());
    staffState = await ctx.storageState();
    await ctx.close();
  }
  return browser.newContext({ storageState: staffState });
}

// openCockpit opens an event's cockpit as logged-in staff and waits for its
// live feed.
async function openCockpit(browser: Browser, event: string): Promise<Page> {
  const page = await (await staffSession(browser)).newPage();
  await page.goto('/staff/events/' + event);
  await expect(page.getByRole('heading', { name: 'Staff Test ' + event })).toBeVisible();
  await expect(page.getByTestId('live-state')).toHaveText('Live');
  return page;
}

// admit makes the fan (an API client with its own cookies) join the waiting
// room until admitted.
async function admit(fan: APIRequestContext, event: string) {
  await expect.poll(async () => {
    const res = await fan.post(`/api/events/${event}/queue`);
    return (await res.json()).state;
  }, { timeout: 20_000 }).toBe('admitted');
}

// expectNoSeriousA11yIssues runs axe-core on the page.
async function expectNoSeriousA11yIssues(page: Page) {
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter(v => v.impact === 'serious' || v.impact === 'critical');
  expect(serious.map(v => `${v.id}: ${v.help} (${v.nodes.map(n => n.target.join(' ')).join(', ')})`)).toEqual([]);
}

test('staff pages redirect strangers to the login', async ({ page }) => {
  await page.goto('/staff');
  await expect(page).toHaveURL('/staff/login?next=%2Fstaff');
  await expect(page.locator('input[name="password"]')).toBeVisible();

  await page.goto('/staff/events/e2e-home');
  await expect(page).toHaveURL('/staff/login?next=%2Fstaff%2Fevents%2Fe2e-home');

  const res = await page.request.get('/api/staff/events/e2e-home/stats');
  expect(res.status()).toBe(401);
});

test('a wrong token is refused; the right one leads to the events and the cockpit figures', async ({ page }) => {
  // The pages must work under the strict CSP: no inline scripts or styles.
  const cspErrors: string[] = [];
  page.on('console', msg => { if (/Content.Security.Policy/i.test(msg.text())) cspErrors.push(msg.text()); });
  await page.goto('/staff/login');
  await expectNoSeriousA11yIssues(page);
  await page.getByLabel('Staff token').fill('not-the-token');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByRole('alert')).toContainText('not the staff token');

  await page.getByLabel('Staff token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page).toHaveURL('/staff');
  await expect(page.getByRole('heading', { name: 'Events' })).toBeVisible();

  await page.getByRole('link', { name: 'E2E Home Concert' }).click();
  await expect(page).toHaveURL('/staff/events/e2e-home');
  await expect(page.getByRole('heading', { name: 'E2E Home Concert' })).toBeVisible();
  for (const stat of ['sold', 'held', 'available', 'queue_length', 'admitted', 'revenue_cents']) {
    await expect(page.locator(`[data-stat="${stat}"]`)).toHaveText(/^\d+$/);
  }
  await expect(page.getByTestId('sales-chart')).toBeVisible();
  await expect(page.getByTestId('heatmap').locator('[data-section]')).toHaveCount(2);
  await expect(page.getByTestId('live-state')).toHaveText('Live');
  await expectNoSeriousA11yIssues(page);
  // A control answered over htmx swaps its fragments without breaking the CSP.
  await page.getByRole('button', { name: 'Resume admission' }).click();
  await expect(page.getByTestId('control-result')).toContainText('Admission running');
  expect(cspErrors).toEqual([]);

  await page.getByTestId('staff-logout').click();
  await expect(page).toHaveURL('/staff/login');
  await page.goto('/staff');
  await expect(page).toHaveURL(/\/staff\/login/);
});

test('staff see a fan\'s holds and sale change the figures live', async ({ browser, request }) => {
  const event = await createEvent(request);
  const page = await openCockpit(browser, event);
  await expect(page.locator('[data-stat="held"]')).toHaveText('0');
  await expect(page.locator('[data-stat="sold"]')).toHaveText('0');
  await expect(page.locator('[data-stat="available"]')).toHaveText('15');

  // The `request` fixture is the fan: its own cookies, so its own session.
  await admit(request, event);
  await expect(page.locator('[data-stat="admitted"]')).toHaveText('1');
  const hold = await request.post(`/api/events/${event}/holds`, { data: { seats: ['A-1-1', 'A-1-2'] } });
  expect(hold.status(), await hold.text()).toBe(201);
  await expect(page.locator('[data-stat="held"]')).toHaveText('2');
  await expect(page.locator('[data-stat="available"]')).toHaveText('13');
  await expect(page.locator('[data-section="A"]')).toContainText('0 sold · 2 held · 10 seats');

  const checkout = await request.post(`/api/events/${event}/checkout`, {
    headers: { 'Idempotency-Key': 'staff-e2e-' + event },
    data: { card: '4242424242424242', email: 'fan@example.com' },
  });
  expect(checkout.status(), await checkout.text()).toBe(201);
  const order = await checkout.json();
  await expect(page.locator('[data-stat="sold"]')).toHaveText('2');
  await expect(page.locator('[data-stat="held"]')).toHaveText('0');
  await expect(page.locator('[data-stat="orders"]')).toHaveText('1');
  await expect(page.locator('[data-stat="revenue_cents"]')).toHaveText('8000');
  await expect(page.getByTestId('revenue')).toHaveText('$80.00');
  await expect(page.getByTestId('conversion')).toHaveText('100%');
  await expect(page.locator(`[data-order="${order.order_id}"]`)).toContainText('A-1-1, A-1-2');
  await expect(page.locator('[data-section="A"]')).toContainText('2 sold · 0 held · 10 seats');
  await expect(page.getByTestId('sales-chart').locator('rect.bar')).toHaveCount(1);
  await page.context().close();
});

test('pause, resume and rate controls apply and appear in the audit log', async ({ browser, request }) => {
  const event = await createEvent(request);
  const page = await openCockpit(browser, event);
  // Creating the event through the API is the first audited action.
  await expect(page.getByTestId('audit-log').locator('li[data-action="create_event"]')).toHaveCount(1);

  await page.getByRole('button', { name: 'Pause admission' }).click();
  await expect(page.getByTestId('control-result')).toContainText('Admission paused');
  await expect(page.getByTestId('admission-state')).toContainText('Admission paused');
  const audit = page.getByTestId('audit-log').locator('li[data-action="admission"]');
  await expect(audit).toHaveCount(1);
  await expect(audit.first()).toContainText('"paused":true');

  await page.getByRole('button', { name: 'Resume admission' }).click();
  await expect(page.getByTestId('admission-state')).toContainText('Admission running');
  await expect(audit).toHaveCount(2);
  await expect(audit.first()).toContainText('"paused":false');

  await page.getByLabel('Admission rate (fans per second)').fill('250');
  await page.getByRole('button', { name: 'Set rate' }).click();
  await expect(page.locator('[data-stat="admit_rate"]')).toHaveText('250');
  await expect(audit).toHaveCount(3);
  await expect(audit.first()).toContainText('"rate":250');

  const stats = await (await request.get(`/api/staff/events/${event}/stats`, { headers: bearer })).json();
  expect(stats.paused).toBe(false);
  expect(stats.admit_rate).toBe(250);

  // A refused value says why, in words, and changes nothing.
  await page.getByLabel('Admission rate (fans per second)').fill('2000000');
  await page.getByLabel('Admission rate (fans per second)').evaluate(el => el.removeAttribute('max'));
  await page.getByRole('button', { name: 'Set rate' }).click();
  await expect(page.locator('#control-result [role="alert"]')).toContainText('between 0 and');
  await expect(audit).toHaveCount(3);
  await page.context().close();
});

test('staff release a stuck hold and the seat is free again', async ({ browser, request }) => {
  const event = await createEvent(request);
  const page = await openCockpit(browser, event);
  await admit(request, event);
  const hold = await request.post(`/api/events/${event}/holds`, { data: { seats: ['B-1-3'] } });
  expect(hold.status(), await hold.text()).toBe(201);
  await expect(page.locator('[data-stat="held"]')).toHaveText('1');

  await page.getByLabel(/Release a stuck hold/).fill('B-1-3');
  await page.getByRole('button', { name: 'Release hold' }).click();
  await expect(page.getByTestId('control-result')).toContainText('Released the hold on seat B-1-3');
  await expect(page.locator('[data-stat="held"]')).toHaveText('0');
  await expect(page.getByTestId('audit-log').locator('li[data-action="release_hold"]')).toContainText('B-1-3');

  const mine = await (await request.get(`/api/events/${event}/holds`)).json();
  expect(mine.seats).toEqual([]);

  // Releasing it again is refused in words.
  await page.getByLabel(/Release a stuck hold/).fill('B-1-3');
  await page.getByRole('button', { name: 'Release hold' }).click();
  await expect(page.locator('#control-result [role="alert"]')).toContainText('not held');
  await page.context().close();
});
