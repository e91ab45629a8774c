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
