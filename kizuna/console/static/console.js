// Kizuna console: a little progressive enhancement. Every page works without it.
(function () {
  "use strict";

  // <form data-confirm="…">: ask before a destructive action.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // <button data-copy="#selector" data-copied="…">: copy the element's text.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    var done = function () {
      var label = button.textContent;
      button.textContent = button.getAttribute("data-copied") || label;
      window.setTimeout(function () { button.textContent = label; }, 1600);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
    } else {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
  });

  // The sidebar scrolls on a short screen: keep the current page's link in sight.
  var current = document.querySelector(".nav .nav-item.active");
  if (current && current.scrollIntoView) current.scrollIntoView({ block: "nearest" });
})();

// The conversation page: the composer and the timeline.
(function () {
  "use strict";

  // A timeline opens at its latest message (again once its images have their size).
  var toEnd = function () {
    document.querySelectorAll("[data-scroll-end]").forEach(function (element) {
      element.scrollTop = element.scrollHeight;
    });
  };
  toEnd();
  window.addEventListener("load", toEnd);

  var text = document.getElementById("reply-text");
  if (!text) return;
  var form = text.form;

  // 返信 / メモ: the placeholder says which.
  form.addEventListener("change", function (event) {
    if (event.target.name !== "mode") return;
    text.placeholder = text.getAttribute(event.target.value === "note" ? "data-placeholder-note" : "data-placeholder-reply");
  });

  // A canned response goes into the text (its {name} already filled), to be read and sent.
  var canned = form.querySelector("[data-canned-target]");
  if (canned) {
    canned.addEventListener("change", function () {
      var option = canned.options[canned.selectedIndex];
      var value = option && option.getAttribute("data-text");
      if (!value) return;
      text.value = text.value.trim() ? text.value.replace(/\s*$/, "\n") + value : value;
      canned.selectedIndex = 0;
      text.focus();
    });
  }

  // Ctrl+Enter (⌘+Enter) sends.
  text.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && text.value.trim()) {
      event.preventDefault();
      if (form.requestSubmit) form.requestSubmit(); else form.submit();
    }
  });
})();

// The till's camera (クーポン利用): small grey frames go to the server, which reads the QR
// code (zxing-cpp); a code found is checked as if typed. No decoder here, no CDN: only
// getUserMedia, a canvas and fetch to this origin (the page's Permissions-Policy allows the
// camera; the other pages' do not).
(function () {
  "use strict";
  var box = document.querySelector("[data-scanner]");
  if (!box || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
  var form = document.getElementById(box.getAttribute("data-form"));
  var view = box.querySelector(".scanner-view");
  var video = box.querySelector("video");
  var failed = box.querySelector("[data-scan-error]");
  var WIDTH = 320, HEIGHT = 240;
  var canvas = document.createElement("canvas");
  canvas.width = WIDTH;
  canvas.height = HEIGHT;
  var stream = null, timer = null, busy = false;
  box.hidden = false;

  function stop() {
    if (timer) window.clearInterval(timer);
    if (stream) stream.getTracks().forEach(function (track) { track.stop(); });
    timer = stream = null;
    view.hidden = true;
  }

  function grey() {
    var context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(video, 0, 0, WIDTH, HEIGHT);
    var rgba = context.getImageData(0, 0, WIDTH, HEIGHT).data;
    var out = new Uint8Array(WIDTH * HEIGHT);
    for (var i = 0, j = 0; j < out.length; i += 4, j += 1) {
      out[j] = (rgba[i] * 77 + rgba[i + 1] * 150 + rgba[i + 2] * 29) >> 8;
    }
    return out;
  }

  function look() {
    if (busy || video.readyState < 2) return;
    busy = true;
    fetch(box.getAttribute("data-scanner") + "?w=" + WIDTH + "&h=" + HEIGHT, {
      method: "POST", credentials: "same-origin", body: grey(),
      headers: { "Content-Type": "application/octet-stream", "X-CSRF-Token": form.elements.csrf_token.value },
    }).then(function (response) { return response.ok ? response.json() : {}; }).then(function (answer) {
      busy = false;
      if (answer.code && stream) {
        stop();
        form.elements.code.value = answer.code;
        form.submit();
      }
    }, function () { busy = false; });
  }

  box.querySelector("[data-scan-start]").addEventListener("click", function () {
    failed.hidden = true;
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (media) {
      stream = media;
      video.srcObject = media;
      view.hidden = false;
      video.play();
      timer = window.setInterval(look, 400);
    }, function () { failed.hidden = false; });
  });
  box.querySelector("[data-scan-stop]").addEventListener("click", stop);
})();
