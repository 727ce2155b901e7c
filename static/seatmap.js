// seatmap.js — the few things htmx does not do on the fan's event page:
//   - the hold countdown, which follows the server's expiry (data-expires-at),
//     and its spoken warning a minute before;
//   - refreshing the hold panel when the live map shows the fan's holds
//     changed (an expiry, a sale), and the seat list while it is open;
//   - the waiting room's progress bar;
//   - a polling fallback when the WebSocket cannot be used: the JSON queue
//     every 2 s, then a snapshot of the map every 3 s (slower, still correct).
// No inline script, no eval: the page's CSP allows neither.
(function () {
  'use strict';

  var live = document.getElementById('live');
  if (!live) { return; }
  var eventId = live.getAttribute('data-event');
  var pageBase = '/events/' + encodeURIComponent(eventId);
  var queueURL = '/api/events/' + encodeURIComponent(eventId) + '/queue';

  var QUEUE_POLL_MS = 2000;   // waiting room position while polling
  var MAP_POLL_MS = 3000;     // seat map snapshot while polling
  var FIRST_MESSAGE_MS = 5000; // a healthy socket speaks within this after load
  var RECONNECT_MS = 3000;    // ... and within this after a close or error
  var LIST_REFRESH_MS = 1000; // at most one live seat-list reload per this

  function pad(n) { return n < 10 ? '0' + n : '' + n; }
  function byId(id) { return document.getElementById(id); }

  // ---- Hold countdown and its warning --------------------------------------

  var warnedFor = '';

  // tickTimers counts every [data-testid=hold-timer] down from its
  // data-expires-at; at 0 the panel reloads (the holds are gone).
  function tickTimers() {
    var timers = document.querySelectorAll('[data-testid="hold-timer"][data-expires-at]');
    for (var i = 0; i < timers.length; i++) {
      var t = timers[i];
      var at = t.getAttribute('data-expires-at');
      var left = Math.max(0, Math.floor((Date.parse(at) - Date.now()) / 1000));
      var text = Math.floor(left / 60) + ':' + pad(left % 60);
      if (t.textContent !== text) { t.textContent = text; }
      // The server's warning comes at 60 s over the socket; this one (55 s)
      // covers the polling fallback without saying it twice.
      if (left > 0 && left <= 55) { warnExpiring(at); }
      if (left === 0 && !t.hasAttribute('data-expired')) {
        t.setAttribute('data-expired', '');
        refreshPanel();
      }
    }
    if (timers.length === 0) { clearWarning(); }
  }

  // warnExpiring says, once per expiry, that the holds end within a minute —
  // unless the server's hold_expiring message (data-kind=expiring) already did.
  function warnExpiring(at) {
    if (warnedFor === at) { return; }
    warnedFor = at;
    var region = byId('hold-expiring');
    if (!region || region.getAttribute('data-kind') === 'expiring') { return; }
    region.setAttribute('data-kind', 'expiring');
    region.textContent = 'Your seats are held for less than a minute more. Check out soon to keep them, ' +
      'or choose “I need more time” under Your seats.';
  }

  // clearWarning empties the announcement (a warning, or the extension's
  // confirmation) once the fan holds nothing.
  function clearWarning() {
    var region = byId('hold-expiring');
    if (region && region.hasAttribute('data-kind')) {
      region.removeAttribute('data-kind');
      region.textContent = '';
    }
  }

  // ---- Hold panel and seat list --------------------------------------------

  function refreshPanel() {
    var panel = byId('hold-panel');
    if (panel && window.htmx && panel.hasAttribute('hx-get')) { window.htmx.trigger(panel, 'refresh'); }
  }

  // The panel says how many seats it lists; the map says how many are mine.
  // When they differ after a live update, the panel is stale: reload it.
  function checkPanel() {
    var panel = byId('hold-panel');
    var map = byId('seatmap');
    if (!panel || !map || map.hidden || !panel.hasAttribute('hx-get')) { return; }
    var mine = map.querySelectorAll('[data-state="mine"]').length;
    if (String(mine) !== panel.getAttribute('data-count')) { refreshPanel(); }
  }

  function listOpen() {
    var d = byId('seat-list-details');
    return !!(d && d.open);
  }

  // refreshList reloads the open seat list (htmx keeps the focused button
  // focused: the new list has a button with the same id).
  function refreshList() {
    var list = byId('seat-list');
    if (listOpen() && list && window.htmx) { window.htmx.trigger(list, 'refresh'); }
  }

  var listTimer = null;
  function refreshListSoon() {
    if (!listOpen() || listTimer !== null) { return; }
    listTimer = setTimeout(function () { listTimer = null; refreshList(); }, LIST_REFRESH_MS);
  }

  // 'toggle' does not bubble: listen in the capture phase.
  document.addEventListener('toggle', function (e) {
    if (e.target && e.target.id === 'seat-list-details' && e.target.open) { refreshList(); }
  }, true);
  // Seat posts answer with HX-Trigger: seats-changed.
  document.addEventListener('seats-changed', function () { lastLocalChange = Date.now(); refreshList(); });

  // showMap reveals the map and the list once the map has seats.
  function showMap() {
    var map = byId('seatmap');
    if (!map || !map.querySelector('[data-seat]')) { return; }
    map.hidden = false;
    var view = byId('seat-list-view');
    if (view) { view.hidden = false; }
  }

  // ---- Waiting room progress -----------------------------------------------

  // Progress through the line: how far from the first position seen.
  var firstPosition = 0;
  function updateProgress() {
    var bar = document.querySelector('.queue-progress[data-position]');
    if (!bar) { return; }
    var pos = parseInt(bar.getAttribute('data-position'), 10) || 0;
    if (pos > firstPosition) { firstPosition = pos; }
    var done = firstPosition > 1 ? Math.round(100 * (firstPosition - pos) / (firstPosition - 1)) : 100;
    bar.value = done;
    bar.textContent = done + '%';
  }

  // ---- Live socket ---------------------------------------------------------

  var pendingCheck = null;
  document.addEventListener('htmx:wsAfterMessage', function () {
    socketAlive();
    updateProgress();
    showMap();
    // Coalesce bursts of messages into one check.
    if (pendingCheck === null) {
      pendingCheck = setTimeout(function () { pendingCheck = null; checkPanel(); }, 150);
    }
    refreshListSoon();
  });

  // ---- Polling fallback ----------------------------------------------------
  //
  // The socket is healthy when it delivers messages: the server speaks on
  // every connect (queue position or admission). If nothing arrives within
  // FIRST_MESSAGE_MS of loading, or within RECONNECT_MS of a close or error
  // (htmx's ws extension reconnects on its own after abnormal closes), or if
  // the browser has no WebSocket at all, the page polls instead; a message
  // arriving later hands back to the socket.

  var polling = false;
  var joined = false;
  var queueTimer = null;
  var mapTimer = null;
  var watchdog = null;
  var lastLocalChange = 0;

  function expectMessage(ms) {
    if (watchdog !== null) { clearTimeout(watchdog); }
    watchdog = setTimeout(function () { watchdog = null; startPolling(); }, ms);
  }

  function socketAlive() {
    if (watchdog !== null) { clearTimeout(watchdog); watchdog = null; }
    if (polling) { stopPolling(); }
  }

  function startPolling() {
    if (polling) { return; }
    polling = true;
    live.setAttribute('data-transport', 'polling');
    pollQueue();
    queueTimer = setInterval(pollQueue, QUEUE_POLL_MS);
  }

  function stopPolling() {
    polling = false;
    live.removeAttribute('data-transport');
    if (queueTimer !== null) { clearInterval(queueTimer); queueTimer = null; }
    if (mapTimer !== null) { clearInterval(mapTimer); mapTimer = null; }
  }

  function request(method, url, accept) {
    return fetch(url, { method: method, credentials: 'same-origin', headers: { 'Accept': accept } });
  }

  // pollQueue joins once (POST), then reads this fan's place (GET).
  function pollQueue() {
    request(joined ? 'GET' : 'POST', queueURL, 'application/json')
      .then(function (res) { return res.json(); })
      .then(function (q) { joined = true; if (polling) { renderQueue(q); } })
      .catch(function () { /* the next tick tries again */ });
  }

  // el builds an element with attributes and children (strings become text).
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return e;
  }

  function replaceQueue(section) {
    var cur = byId('queue');
    if (cur) { cur.replaceWith(section); }
  }

  function etaWords(s) {
    return s < 60 ? s + ' s' : Math.ceil(s / 60) + ' min';
  }

  // renderQueue draws the JSON queue state as the socket's fragments would.
  function renderQueue(q) {
    var attrs = { id: 'queue', 'class': 'queue card', 'aria-live': 'polite' };
    if (q.state === 'waiting' && q.pre_queue) {
      attrs['data-state'] = 'waiting';
      replaceQueue(el('section', attrs, [
        el('h2', {}, ['Waiting room']),
        el('p', {}, ['You\'re in the pre-queue. When the sale opens you\'ll get a random place in line.']),
        el('p', { 'class': 'muted' }, ['Opens in about ', el('span', { 'data-testid': 'queue-eta' }, [etaWords(q.eta_seconds)]), '.'])
      ]));
    } else if (q.state === 'waiting') {
      attrs['data-state'] = 'waiting';
      var ahead = q.ahead;
      var wait = q.eta_seconds >= 0
        ? ['Estimated wait: ', el('span', { 'data-testid': 'queue-eta' }, [etaWords(q.eta_seconds)]), '.']
        : ['Admission is paused for a moment.'];
      replaceQueue(el('section', attrs, [
        el('h2', {}, ['Waiting room']),
        el('p', { 'class': 'position' }, ['You are number ', el('strong', { 'data-testid': 'queue-position' }, [String(q.position)]), ' in line.']),
        el('p', {}, [el('span', { 'data-testid': 'queue-ahead' }, [String(ahead)]), ahead === 1 ? ' person ahead of you. ' : ' people ahead of you. '].concat(wait)),
        el('progress', { 'class': 'queue-progress', max: '100', 'data-position': String(q.position), 'aria-label': 'Progress through the line' })
      ]));
      updateProgress();
    } else if (q.state === 'admitted') {
      var cur = byId('queue');
      if (!cur || cur.getAttribute('data-state') !== 'admitted') {
        var until = new Date(q.until);
        attrs['class'] = 'queue card admitted';
        attrs['data-state'] = 'admitted';
        replaceQueue(el('section', attrs, [el('p', {}, [
          el('strong', {}, ['It\'s your turn!']), ' Pick your seats below. Your turn lasts until ',
          el('time', { datetime: until.toISOString() }, [until.toISOString().slice(11, 16) + ' UTC']), '.'
        ])]));
      }
      if (queueTimer !== null) { clearInterval(queueTimer); queueTimer = null; }
      if (mapTimer === null) {
        pollMap();
        mapTimer = setInterval(pollMap, MAP_POLL_MS);
      }
    } else {
      var alert = byId('alert');
      if (alert) { alert.textContent = 'You are no longer in line. Reload the page to join again.'; }
      stopPolling();
    }
  }

  // pollMap fetches the map as this fan sees it now and applies it.
  function pollMap() {
    var started = Date.now();
    request('GET', pageBase + '/seatmap', 'text/html')
      .then(function (res) {
        if (res.status === 403) {
          // The turn ended: back to the waiting room.
          if (mapTimer !== null) { clearInterval(mapTimer); mapTimer = null; }
          joined = false;
          if (polling && queueTimer === null) { queueTimer = setInterval(pollQueue, QUEUE_POLL_MS); }
          return null;
        }
        return res.ok ? res.text() : null;
      })
      .then(function (html) {
        // A seat click answered after this snapshot was read is newer: skip it.
        if (html && polling && lastLocalChange < started) { applyMap(html); }
      })
      .catch(function () { /* the next tick tries again */ });
  }

  // applyMap installs a map snapshot: the whole map the first time, then
  // only the seats whose state changed (so focus stays where it is).
  function applyMap(html) {
    var doc = new DOMParser().parseFromString(html, 'text/html');
    var fresh = doc.getElementById('seatmap');
    var cur = byId('seatmap');
    if (!fresh || !cur) { return; }
    fresh.removeAttribute('hx-swap-oob');
    var changed = false;
    if (!cur.querySelector('[data-seat]')) {
      var map = document.importNode(fresh, true);
      cur.replaceWith(map);
      if (window.htmx) { window.htmx.process(map); }
      changed = true;
    } else {
      var seats = fresh.querySelectorAll('[data-seat]');
      for (var i = 0; i < seats.length; i++) {
        var old = byId(seats[i].id);
        if (!old || old.getAttribute('data-state') === seats[i].getAttribute('data-state')) { continue; }
        var seat = document.importNode(seats[i], true);
        var focused = document.activeElement === old;
        old.replaceWith(seat);
        if (window.htmx) { window.htmx.process(seat); }
        if (focused) { seat.focus(); }
        changed = true;
      }
    }
    if (changed) {
      showMap();
      checkPanel();
      refreshListSoon();
    }
  }

  document.addEventListener('htmx:wsClose', function () { expectMessage(RECONNECT_MS); });
  document.addEventListener('htmx:wsError', function () { expectMessage(RECONNECT_MS); });
  if (typeof window.WebSocket !== 'function') {
    startPolling();
  } else {
    expectMessage(FIRST_MESSAGE_MS);
  }

  // ---- Timers ---------------------------------------------------------------

  document.addEventListener('htmx:afterSwap', tickTimers);

  // The hold panel is re-rendered whenever the fan's holds change (a click's
  // answer, a live update, a refresh), possibly while the fan is typing.
  // Remember what was typed into the checkout form and put it back into a
  // re-rendered form, so no swap can wipe it (htmx's hx-preserve lost the
  // inputs when two swaps of the panel raced). A confirmed order clears it.
  var typed = {};
  document.addEventListener('input', function (e) {
    var t = e.target;
    if (t && (t.id === 'card' || t.id === 'email')) { typed[t.id] = t.value; }
  });
  function restoreTyped() {
    if (document.querySelector('[data-testid="order-confirmation"]')) { typed = {}; return; }
    ['card', 'email'].forEach(function (id) {
      var el = document.getElementById(id);
      if (el && !el.value && typed[id]) { el.value = typed[id]; }
    });
  }
  document.addEventListener('htmx:afterSettle', restoreTyped);
  document.addEventListener('htmx:oobAfterSwap', restoreTyped);
  document.addEventListener('htmx:oobAfterSwap', tickTimers);
  setInterval(tickTimers, 1000);
  tickTimers();
})();
