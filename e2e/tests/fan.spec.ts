import { test, expect, Page, Browser } from '@playwright/test';

const staff = { Authorization: 'Bearer e2e-staff-token' };

// createEvent makes a fresh small event through the staff API, so each test
// starts from an untouched map.
async function createEvent(page: Page, sections = 1, rows = 2, perRow = 6): Promise<string> {
  const id = 'fan-' + Math.random().toString(36).slice(2, 10);
  const now = new Date();
  const res = await page.request.post('/api/staff/events', {
    headers: staff,
    data: {
      id, name: 'Fan Test ' + id, venue: 'E2E Arena',
      starts_at: new Date(now.getTime() + 86400e3).toISOString(),
      on_sale_at: new Date(now.getTime() - 60e3).toISOString(),
      sections: Array.from({ length: sections }, (_, i) => ({ name: 'Section ' + 'ABC'[i], price_cents: 5000 - i * 1000, rows, seats_per_row: perRow })),
    },
  });
  expect(res.status()).toBe(201);
  return id;
}

async function openMap(page: Page, event: string) {
  await page.goto('/events/' + event);
  await expect(page.locator('#queue[data-state="admitted"]')).toBeVisible();
  await expect(page.locator('[data-seat="A-1-1"]')).toBeVisible();
}

async function newFan(browser: Browser) {
  const ctx = await browser.newContext();
  return { ctx, page: await ctx.newPage() };
}

test('two fans see each other\'s holds and releases live', async ({ browser }) => {
  const a = await newFan(browser);
  const b = await newFan(browser);
  const event = await createEvent(a.page);
  await openMap(a.page, event);
  await openMap(b.page, event);

  await a.page.locator('[data-seat="A-1-2"]').click();
  await expect(a.page.locator('[data-seat="A-1-2"]')).toHaveAttribute('data-state', 'mine');
  await expect(b.page.locator('[data-seat="A-1-2"]')).toHaveAttribute('data-state', 'held');
  await expect(a.page.getByTestId('hold-timer')).toHaveText(/^[0-9]+:[0-5][0-9]$/);

  await a.page.locator('[data-seat="A-1-2"]').click();
  await expect(a.page.locator('[data-seat="A-1-2"]')).toHaveAttribute('data-state', 'available');
  await expect(b.page.locator('[data-seat="A-1-2"]')).toHaveAttribute('data-state', 'available');
  await a.ctx.close();
  await b.ctx.close();
});

test('a seat can be held with the keyboard', async ({ page }) => {
  const event = await createEvent(page);
  await openMap(page, event);
  const seat = page.locator('[data-seat="A-2-3"]');
  await seat.focus();
  await page.keyboard.press('Enter');
  await expect(seat).toHaveAttribute('data-state', 'mine');
  await expect(seat).toHaveAccessibleName(/Section A, row 2, seat 3, \$50\.00, held by you/);
  await page.locator('[data-seat="A-2-4"]').focus();
  await page.keyboard.press('Space');
  await expect(page.locator('[data-seat="A-2-4"]')).toHaveAttribute('data-state', 'mine');
});

test('a declined card shows the reason, then another card buys the seat', async ({ page, browser }) => {
  const event = await createEvent(page);
  await openMap(page, event);
  await page.locator('[data-seat="A-1-1"]').click();
  await expect(page.locator('[data-seat="A-1-1"]')).toHaveAttribute('data-state', 'mine');
  const form = page.getByTestId('checkout');
  await form.locator('input[name=card]').fill('4000000000000002');
  await form.locator('input[name=email]').fill('fan@example.com');
  await form.getByRole('button', { name: /Pay/ }).click();
  await expect(page.locator('#alert[role=alert]')).toContainText('declined');
  await expect(page.locator('[data-seat="A-1-1"]')).toHaveAttribute('data-state', 'mine');

  const form2 = page.getByTestId('checkout');
  await form2.locator('input[name=card]').fill('4242 4242 4242 4242');
  await form2.locator('input[name=email]').fill('fan@example.com');
  await form2.getByRole('button', { name: /Pay/ }).click();
  const confirmation = page.getByTestId('order-confirmation');
  await expect(confirmation).toBeVisible();
  const orderId = (await page.getByTestId('order-id').textContent())!.trim();
  expect(orderId).toMatch(/^[0-9a-f-]{36}$/);
  await expect(page.locator('[data-seat="A-1-1"]')).toHaveAttribute('data-state', 'sold');

  // A page loaded later shows the seat sold.
  const later = await newFan(browser);
  await openMap(later.page, event);
  await expect(later.page.locator('[data-seat="A-1-1"]')).toHaveAttribute('data-state', 'sold');
  await later.ctx.close();

  await page.goto('/orders/' + orderId);
  await expect(page.getByTestId('order')).toContainText('A-1-1');
});

test('a seat taken by someone else is explained in words', async ({ browser }) => {
  const a = await newFan(browser);
  const b = await newFan(browser);
  const event = await createEvent(a.page);
  await openMap(a.page, event);
  await openMap(b.page, event);
  // b's page still shows the seat available if it clicks before the push:
  // hold it through the API as a, then click on b immediately.
  await a.page.locator('[data-seat="A-1-5"]').click();
  await expect(a.page.locator('[data-seat="A-1-5"]')).toHaveAttribute('data-state', 'mine');
  await expect(b.page.locator('[data-seat="A-1-5"]')).toHaveAttribute('data-state', 'held');
  // Force the request even though the seat now shows held.
  const res = await b.page.request.post(`/events/${event}/seats/A-1-5/hold`, { headers: { 'HX-Request': 'true' } });
  expect(res.status()).toBe(409);
  expect(await res.text()).toContain('taken');
  await a.ctx.close();
  await b.ctx.close();
});
