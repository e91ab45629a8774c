// Kizuna console: live updates. The page listens to /console/live (server-sent events) and,
// when an update concerns what it shows, re-reads itself and swaps the parts marked
// data-region (the inbox list, a conversation's header, timeline and customer panel).
// Updates carry ids only; the page is the truth. Without this script the page still works:
// a reload shows the same.
(function () {
  "use strict";

  var root = document.querySelector("[data-live]");
  if (!root || !window.EventSource || !window.fetch || !window.DOMParser) return;
  var watching = root.getAttribute("data-live"); // "inbox" | "customer"
  var customerId = root.getAttribute("data-customer-id");
  var busy = false;
  var again = false;
  var timer = null;

  function concerns(update) {
    if (update.type === "reload") return true;
    if (watching === "inbox") return update.type === "conversation" || update.type === "message";
    return customerId !== null && String(update.customer_id) === customerId;
  }

  function nearEnd(element) {
    return element.scrollHeight - element.scrollTop - element.clientHeight < 80;
  }

  function holdsFocus(element) {
    var active = document.activeElement;
    return active && active !== document.body && element.contains(active) &&
      /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
  }

  function swap(fresh) {
    var seen = {};
    document.querySelectorAll("[data-key]").forEach(function (row) { seen[row.getAttribute("data-key")] = true; });
    document.querySelectorAll("[data-region]").forEach(function (old) {
      var name = old.getAttribute("data-region");
      var next = fresh.querySelector('[data-region="' + name + '"]');
      if (!next || holdsFocus(old)) return; // never pull a field out from under someone typing
      var open = [];
      old.querySelectorAll("details[open][id]").forEach(function (item) { open.push(item.id); });
      var follow = old.hasAttribute("data-scroll-end") && nearEnd(old);
      var top = old.scrollTop;
      var copy = document.importNode(next, true);
      old.replaceWith(copy);
      open.forEach(function (id) {
        var item = document.getElementById(id);
        if (item) item.open = true;
      });
      if (copy.hasAttribute("data-scroll-end")) {
        copy.scrollTop = follow ? copy.scrollHeight : top;
        if (follow) {
          copy.querySelectorAll("img").forEach(function (image) {
            image.addEventListener("load", function () { copy.scrollTop = copy.scrollHeight; });
          });
        }
      }
    });
    document.querySelectorAll("[data-key]").forEach(function (row) {
      if (!seen[row.getAttribute("data-key")]) row.classList.add("fresh");
    });
    if (fresh.title) document.title = fresh.title;
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Kizuna-Refresh": "1" } })
      .then(function (response) {
        if (response.redirected) { window.location.reload(); return null; } // logged out: the login page
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html) swap(new DOMParser().parseFromString(html, "text/html"));
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  function soon() {
    // A burst of updates (a message, then the conversation it opened) is one re-read.
    if (timer) return;
    timer = window.setTimeout(function () { timer = null; refresh(); }, 120);
  }

  function connect() {
    var source = new EventSource("/console/live");
    var handle = function (event) {
      var update;
      try { update = JSON.parse(event.data); } catch (e) { return; }
      if (concerns(update)) soon();
    };
    ["conversation", "message", "customer", "reload"].forEach(function (type) {
      source.addEventListener(type, handle);
    });
    source.addEventListener("ready", function () {
      document.documentElement.setAttribute("data-live", "connected");
      // Subscribed now: what changed since the page was rendered (or while reconnecting) was
      // not sent to us, so the page is read once more.
      soon();
    });
    source.addEventListener("logout", function () { source.close(); window.location.reload(); });
    source.onerror = function () {
      document.documentElement.setAttribute("data-live", "reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // Not a stream any more (the session ended: the login page): find out, and retry later.
        refresh();
        window.setTimeout(connect, 5000);
      }
    };
  }

  connect();
})();
