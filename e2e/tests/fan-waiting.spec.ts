import { test, expect } from '@playwright/test';
import { createEvent, setAdmission, newFan, apiFan } from './fan-helpers';

// The waiting room: position, people ahead, ETA, progress, live updates
// without reload, then the map. ADMIT_RATE is process-wide, so the test
// slows its own event through the staff admission control instead.

test('waiting room position moves, then the map appears without a reload', async ({ browser, playwright, baseURL, request }) => {
  const event = await createEvent(request);
  await setAdmission(request, event, { paused: true });

  // Four fans ahead, joined through the JSON API (each its own session).
  const ahead = [];
  for (let i = 1; i <= 4; i++) {
    const fan = await apiFan(playwright, baseURL!);
    const res = await fan.post(`/api/events/${event}/queue`);
    expect(res.status()).toBe(202);
    expect((await res.json()).position).toBe(i);
    ahead.push(fan);
  }

  // Two fans' pages; each records every position it shows.
  const fans = [await newFan(browser), await newFan(browser)];
  for (const f of fans) {
    await f.page.addInitScript(() => {
      const seen: number[] = [];
      (window as any).__positions = seen;
      new MutationObserver(() => {
        const el = document.querySelector('[data-testid="queue-position"]');
        const n = el ? Number(el.textContent) : NaN;
        if (!Number.isNaN(n) && seen[seen.length - 1] !== n) { seen.push(n); }
      }).observe(document, { subtree: true, childList: true, characterData: true });
    });
  }
  const [a, b] = fans;
  await a.page.goto('/events/' + event);
  await expect(a.page.getByTestId('queue-position')).toHaveText('5');
  await b.page.goto('/events/' + event);
  await expect(b.page.getByTestId('queue-position')).toHaveText('6');
  await expect(b.page.getByTestId('queue-ahead')).toHaveText('5');
  await expect(b.page.locator('#queue')).toContainText('Admission is paused');
  await expect(b.page.locator('progress.queue-progress')).toBeVisible();
  await expect(b.page.locator('[data-seat]')).toHaveCount(0);
  await b.page.evaluate(() => { (window as any).__sameDocument = true; });

  // Two fans a second: positions fall, then each page shows the map.
  await setAdmission(request, event, { paused: false, rate: 2 });
  await expect(b.page.getByTestId('queue-eta')).toBeVisible();
  await expect(a.page.locator('#queue[data-state="admitted"]')).toBeVisible({ timeout: 20_000 });
  await expect(b.page.locator('#queue[data-state="admitted"]')).toBeVisible({ timeout: 20_000 });
  for (const f of fans) {
    await expect(f.page.locator('[data-seat="A-1-1"]')).toBeVisible();
    await expect(f.page.locator('#seatmap')).toBeVisible();
  }
  expect(await b.page.evaluate(() => (window as any).__sameDocument)).toBe(true);

  const seen: number[] = await b.page.evaluate(() => (window as any).__positions);
  expect(seen[0]).toBe(6);
  expect(seen.length, `positions shown: ${seen}`).toBeGreaterThan(1);
  for (let i = 1; i < seen.length; i++) {
    expect(seen[i], `positions shown: ${seen}`).toBeLessThan(seen[i - 1]);
  }
  for (const f of fans) { await f.ctx.close(); }
  for (const fan of ahead) { await fan.dispose(); }
});

test('before the sale the pre-queue shows the shuffle seed\'s published hash', async ({ page, request }) => {
  const event = await createEvent(request, { onSaleInMs: 3600e3 });
  await page.goto('/events/' + event);
  await expect(page.locator('#queue[data-state="waiting"]')).toContainText('pre-queue');
  const note = page.getByTestId('shuffle-hash');
  await expect(note).toBeVisible();
  await expect(note.locator('code')).toHaveText(/^[0-9a-f]{64}$/);
  // The same hash the API publishes.
  const shuffle = await (await request.get(`/api/events/${event}/shuffle`)).json();
  expect(JSON.stringify(shuffle)).toContain((await note.locator('code').textContent())!);
  await expect(page.getByTestId('queue-eta')).toHaveText(/^(60|59) min$/);
});
