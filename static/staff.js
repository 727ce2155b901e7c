// staff.js — the one thing htmx does not do on the staff cockpit: say
// whether the live feed is connected, so staff never trust stale figures.
// htmx's WebSocket extension reconnects by itself; this only reports it.
(function () {
  'use strict';

  function setState(state, text) {
    var el = document.getElementById('live-state');
    if (!el) { return; }
    el.setAttribute('data-state', state);
    el.textContent = text;
  }

  document.addEventListener('htmx:wsOpen', function () { setState('live', 'Live'); });
  document.addEventListener('htmx:wsClose', function () { setState('offline', 'Reconnecting…'); });
  document.addEventListener('htmx:wsError', function () { setState('offline', 'Reconnecting…'); });
  // A push that arrives proves the feed works, whatever was said before.
  document.addEventListener('htmx:wsAfterMessage', function () {
    var el = document.getElementById('live-state');
    if (el && el.getAttribute('data-state') !== 'live') { setState('live', 'Live'); }
  });
})();
