// 配信: the editor made live, and a campaign's page kept current. Without this file the pages
// still work (the editor's buttons post and the server re-renders it; a reload shows progress).
// Text typed or sent by the server goes in with textContent only.
(function () {
  "use strict";

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // -- the editor: message slots, the LINE-like preview, the estimated audience ---------------
  // The same slots and preview serve the step sequence editor (a form marked data-message-editor,
  // one set of slots per step, no estimate).
  var form = document.getElementById("campaign-editor") || document.querySelector("form[data-message-editor]");
  var wordsElement = document.getElementById("campaign-words");
  if (form && wordsElement && window.fetch) {
    var words = JSON.parse(wordsElement.textContent);
    var PLACEHOLDER = /\{name(?:\|([^{}]{0,20}))?\}/g;

    // One variant's messages (m: A, b: B): its slots, count, add button and preview.
    function Variant(box) {
      this.prefix = box.getAttribute("data-variant");
      this.box = box.querySelector("[data-slots]");
      this.count = box.querySelector("[data-slot-count]");
      this.add = box.querySelector("[data-slot-add]");
      this.preview = document.querySelector('[data-preview-messages="' + this.prefix + '"]');
    }
    Variant.prototype.slots = function () { return Array.prototype.slice.call(this.box.querySelectorAll("[data-slot]")); };
    Variant.prototype.shown = function () { return this.slots().filter(function (slot) { return !slot.hidden; }); };

    // Slots are numbered by their place: visible ones first (m0_, m1_ …), as the server reads them.
    Variant.prototype.renumber = function () {
      var prefix = this.prefix;
      var own = new RegExp("^" + prefix + "\\d+_");  // m0_text, or a step's s2m0_text
      this.slots().forEach(function (slot, position) {
        slot.querySelectorAll("[name]").forEach(function (input) {
          input.name = input.name.replace(own, prefix + position + "_");
        });
        slot.querySelector("[data-msg-slot-n]").textContent = words.n.replace("{n}", String(position + 1));
        slot.querySelector("[data-msg-slot-remove]").value = "remove-" + prefix + "-" + position;
      });
      var count = this.shown().length;
      this.count.value = String(count);
      this.add.disabled = count >= this.slots().length;
      this.slots().forEach(function (slot) { slot.querySelector("[data-msg-slot-remove]").hidden = count <= 1; });
    };

    function kindOf(slot) {
      var checked = slot.querySelector("input[type=radio]:checked");
      return checked ? checked.value : "text";
    }

    // A text with {name} filled as the preview's customer (the filled part marked).
    function textBubble(text) {
      var bubble = element("div", "lp-bubble");
      var last = 0;
      text.replace(PLACEHOLDER, function (match, fallback, offset) {
        bubble.appendChild(document.createTextNode(text.slice(last, offset)));
        bubble.appendChild(element("span", "lp-name", words.name));
        last = offset + match.length;
        return match;
      });
      bubble.appendChild(document.createTextNode(text.slice(last)));
      return bubble;
    }

    Variant.prototype.draw = function () {
      var preview = this.preview;
      if (!preview) return;
      preview.textContent = "";
      var any = false;
      this.shown().forEach(function (slot) {
        var bubble = null;
        var length = slot.querySelector("[data-slot-length]");
        if (kindOf(slot) === "image") {
          length.textContent = "";
          var url = slot.querySelector("input[type=url]").value.trim();
          if (url) {
            bubble = element("div", "lp-bubble lp-image");
            bubble.appendChild(element("span", "", words.image));
            bubble.appendChild(element("code", "", url));
          }
        } else {
          var text = slot.querySelector("textarea").value;
          if (text.trim()) bubble = textBubble(text);
          length.textContent = text ? words.length.replace("{n}", String(text.length)) : "";
        }
        if (!bubble) return;
        any = true;
        var line = element("div", "lp-line");
        line.appendChild(element("span", "lp-avatar", "絆"));
        var column = element("div", "lp-column");
        column.appendChild(bubble);
        line.appendChild(column);
        preview.appendChild(line);
      });
      if (!any) preview.appendChild(element("p", "lp-empty", words.empty));
    };

    var variants = {};
    form.querySelectorAll("[data-variant]").forEach(function (box) {
      var variant = new Variant(box);
      variants[variant.prefix] = variant;
    });
    function variantOf(node) {
      var box = node.closest("[data-variant]");
      return box ? variants[box.getAttribute("data-variant")] : null;
    }

    var split = form.querySelector("[data-split]");
    var splitB = form.querySelector("[data-split-b]");
    function showSplit() {
      var value = parseInt(split.value, 10);
      splitB.textContent = value >= 0 && value <= 100 ? String(100 - value) : "";
    }

    // The estimate: one request at a time, the latest form wins.
    var card = document.querySelector("[data-estimate-card]");
    var estimateCount = card && card.querySelector("[data-estimate-count]");
    var estimateDetail = card && card.querySelector("[data-estimate-detail]");
    var problem = card && card.querySelector("[data-estimate-problem]");
    var problemText = card && card.querySelector("[data-estimate-problem-text]");
    var timer = null, busy = false, again = false;

    function scheduleEstimate() {
      if (timer) window.clearTimeout(timer);
      timer = window.setTimeout(estimate, 250);
    }

    function estimate() {
      if (!card || !form.elements.audience || !form.elements.audience.value) return;
      if (busy) { again = true; return; }
      busy = true;
      var body = new URLSearchParams(new FormData(form));
      body.delete("action");
      fetch(form.getAttribute("data-estimate"), {
        method: "POST", credentials: "same-origin", body: body,
        headers: { "X-CSRF-Token": form.elements.csrf_token.value },
      }).then(function (response) {
        return response.json().then(function (answer) { return { ok: response.ok, answer: answer }; });
      }).then(function (result) {
        if (result.ok) {
          estimateCount.textContent = result.answer.text;
          estimateCount.setAttribute("data-count", String(result.answer.count));
          estimateDetail.textContent = result.answer.detail;
          problem.hidden = true;
        } else {
          estimateCount.textContent = "—";
          estimateCount.removeAttribute("data-count");
          problemText.textContent = result.answer.error || "";
          problem.hidden = false;
        }
      }).catch(function () {}).then(function () {
        busy = false;
        if (again) { again = false; estimate(); }
      });
    }

    form.addEventListener("input", function (event) {
      var variant = variantOf(event.target);
      if (variant) variant.draw();
      if (event.target.matches("[data-holdout]")) scheduleEstimate();
      if (event.target === split) showSplit();
    });
    // The coupon card after the messages: shown with the chosen coupon's title (its code is each customer's own).
    // A select inside a [data-coupon-scope] (a sequence's step) shows the card of that scope only.
    function showCoupon(couponSelect) {
      var option = couponSelect.options[couponSelect.selectedIndex];
      var scope = couponSelect.closest("[data-coupon-scope]") || document;
      scope.querySelectorAll("[data-preview-coupon]").forEach(function (card) {
        card.hidden = !couponSelect.value;
        card.querySelector("[data-preview-coupon-title]").textContent = couponSelect.value ? option.textContent : "";
      });
    }

    form.addEventListener("change", function (event) {
      var variant = variantOf(event.target);
      if (variant) variant.draw();
      if (event.target.matches("[data-coupon]")) showCoupon(event.target);
      if (event.target.matches("[data-audience], [data-cap], [data-holdout]")) scheduleEstimate();
    });
    form.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button) return;
      var variant = variantOf(button);
      if (!variant) return;
      if (button.hasAttribute("data-slot-add")) {
        event.preventDefault();
        var next = variant.slots().filter(function (slot) { return slot.hidden; })[0];
        if (!next) return;
        next.hidden = false;
        variant.renumber();
        next.querySelector("textarea").focus();
        variant.draw();
      } else if (button.hasAttribute("data-msg-slot-remove")) {
        event.preventDefault();
        var slot = button.closest("[data-slot]");
        if (variant.shown().length <= 1) return;
        slot.querySelectorAll("textarea, input[type=url]").forEach(function (input) { input.value = ""; });
        var text = slot.querySelector("input[value=text]");
        if (text) text.checked = true;
        slot.hidden = true;
        variant.box.appendChild(slot);  // hidden slots go last: the visible ones keep m0_, m1_ …
        variant.renumber();
        variant.draw();
      }
    });
    Object.keys(variants).forEach(function (prefix) {
      variants[prefix].renumber();
      variants[prefix].draw();
    });
    form.querySelectorAll("[data-coupon]").forEach(showCoupon);
    estimate();
  }

  // -- a campaign's page: the chart, and progress while it runs -------------------------------
  var chartData = document.getElementById("campaign-chart");
  var canvas = document.querySelector("[data-campaign-chart]");
  var chart = null;
  if (chartData && canvas && window.Chart) {
    var COLORS = { green: "#06a552", red: "#d93c3c", amber: "#d08a1e", gray: "#8795a3" };
    var data = JSON.parse(chartData.textContent);
    Chart.defaults.font.family = '"Noto Sans CJK JP", "Noto Sans JP", "Hiragino Sans", "Yu Gothic UI", "Meiryo", sans-serif';
    Chart.defaults.animation = false;
    chart = new Chart(canvas, {
      type: "bar",
      data: { labels: data.labels, datasets: [{
        label: data.label, data: data.data, borderRadius: 4, maxBarThickness: 56,
        backgroundColor: data.colors.map(function (name) { return (COLORS[name] || COLORS.gray) + "cc"; }),
      }] },
      options: {
        responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { x: { grid: { display: false } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  }

  // The results: purchase and redemption rates (%) of the recipients beside the control group's.
  var resultsData = document.getElementById("campaign-results-chart");
  var resultsCanvas = document.querySelector("[data-results-chart]");
  if (resultsData && resultsCanvas && window.Chart) {
    var TONES = { green: "#06a552", gray: "#8795a3" };
    var results = JSON.parse(resultsData.textContent);
    new Chart(resultsCanvas, {
      type: "bar",
      data: { labels: results.labels, datasets: results.datasets.map(function (set) {
        return { label: set.label, data: set.data, borderRadius: 4, maxBarThickness: 48, backgroundColor: (TONES[set.color] || TONES.gray) + "cc" };
      }) },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { position: "bottom" }, tooltip: { callbacks: { label: function (item) { return item.dataset.label + ": " + item.formattedValue + "%"; } } } },
        scales: { x: { grid: { display: false } }, y: { beginAtZero: true, suggestedMax: 10, ticks: { callback: function (value) { return value + "%"; } } } },
      },
    });
  }

  var progressCard = document.querySelector("[data-progress-url]");
  if (!progressCard || !window.fetch) return;
  var url = progressCard.getAttribute("data-progress-url");
  var bar = progressCard.querySelector("[data-progress]");
  var status = document.querySelector("[data-status-badge]");
  var note = document.querySelector("[data-note]");
  var started = status ? status.className : "";
  var lineDeliveringShown = progressCard.getAttribute("data-line-delivering-shown") === "yes";

  function set(selector, value) {
    document.querySelectorAll(selector).forEach(function (node) { node.textContent = value; });
  }

  function number(value) { return Number(value).toLocaleString("ja-JP"); }

  function poll() {
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (response.redirected || !response.ok) return null;
      return response.json();
    }).then(function (answer) {
      if (!answer) return;
      bar.max = Math.max(answer.targeted, 1);
      bar.value = answer.done;
      set("[data-progress-text]", answer.progress_text);
      set("[data-progress-percent]", answer.percent + "%");
      ["targeted", "sent", "failed", "undetermined", "control", "duplicates_avoided"].forEach(function (key) {
        set('[data-stat="' + key + '"]', number(answer[key]));
      });
      Object.keys(answer.excluded).forEach(function (key) { set('[data-excluded="' + key + '"]', number(answer.excluded[key])); });
      if (status) {
        status.textContent = answer.status_text;
        status.className = "badge camp-status camp-" + answer.status;
      }
      if (note) {
        note.hidden = !answer.note;
        set("[data-note-text]", answer.note || "");
      }
      if (chart) {
        chart.data.datasets[0].data = [answer.sent, answer.failed, answer.undetermined, answer.control];
        chart.update();
      }
      (answer.narrowcasts || []).forEach(function (stage) {  // LINE's stages and counts, as they move
        document.querySelectorAll("[data-narrowcast]").forEach(function (facts) {
          if (facts.getAttribute("data-narrowcast") !== stage.label) return;
          facts.querySelector("[data-narrowcast-state]").textContent = stage.state_text;
          facts.querySelectorAll("[data-narrowcast-count]").forEach(function (cell) {
            var value = stage[cell.getAttribute("data-narrowcast-count")];
            cell.textContent = value === null || value === undefined ? "—" : number(value);
          });
        });
      });
      if ((status && status.className !== started) || answer.line_delivering !== lineDeliveringShown) {
        window.location.reload();  // started, done, paused, cancelled or handed to LINE: the page's parts and buttons follow
      } else if (answer.live) {
        window.setTimeout(poll, 1000);
      }
    }).catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
})();
