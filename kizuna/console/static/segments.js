// セグメント: the builder made live. Without this file the form still works (every button
// posts and the server re-renders it); with it, rows are added and removed in the page, a
// row's op and value inputs follow its field, and the count follows the conditions
// (POST /console/segments/preview with the same form, debounced). Text from the server is
// put in with textContent only: customer names are the customers' own.
(function () {
  "use strict";
  var form = document.getElementById("segment-builder");
  var specElement = document.getElementById("segment-spec");
  if (!form || !specElement || !window.fetch) return;
  var spec = JSON.parse(specElement.textContent);
  var rows = form.querySelector("[data-rows]");
  var template = document.getElementById("segment-row");
  var live = document.querySelector("[data-live]");
  var countText = live.querySelector("[data-count-text]");
  var problem = live.querySelector("[data-live-problem]");
  var problemText = live.querySelector("[data-live-problem-text]");
  var sample = live.querySelector("[data-sample]");
  var next = 0;
  rows.querySelectorAll("[data-row]").forEach(function (row) {
    next = Math.max(next, parseInt(row.getAttribute("data-index"), 10) + 1);
  });
  live.querySelector("[data-live-hint]").hidden = false;

  function element(tag, attributes, text) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) { node.setAttribute(name, attributes[name]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function input(field, name, value, label, type) {
    var attributes = { type: type || (field.input === "number" ? "number" : "text"), name: name, "aria-label": label };
    if (attributes.type === "number") {
      attributes.min = field.min;
      attributes.step = field.step;
    }
    var node = element("input", attributes);
    node.value = value || "";
    return node;
  }

  function select(name, options, picked, label, multiple) {
    var node = element("select", { name: name, "aria-label": label });
    if (multiple) {
      node.multiple = true;
      node.size = 4;
    }
    options.forEach(function (option) {
      var item = element("option", { value: option[0] }, option[1]);
      item.selected = picked.indexOf(option[0]) >= 0;
      node.appendChild(item);
    });
    return node;
  }

  // The value inputs of a row for its field and op, keeping what was typed where it fits.
  function rebuildValue(row) {
    var index = row.getAttribute("data-index");
    var field = spec.fields[row.querySelector("[data-field]").value];
    var op = row.querySelector("[data-op]").value;
    var box = row.querySelector("[data-value]");
    var old = box.querySelector("[name^=value_]");
    var kept = old && !old.multiple ? [old.value] : [];
    var words = spec.words;
    box.textContent = "";
    if (field.input === "choice") {
      box.appendChild(select("value_" + index, field.choices, kept.length && kept[0] ? kept : [field.choices[0][0]], words.value, op === "in"));
    } else if (op === "between") {
      box.appendChild(input(field, "value_" + index, kept[0], words.value));
      box.appendChild(element("span", { "class": "muted" }, "〜"));
      box.appendChild(input(field, "value2_" + index, "", words.value2));
    } else if (op === "in") {
      var text = input(field, "value_" + index, kept[0], words.value, "text");
      text.placeholder = words.in_help;
      box.appendChild(text);
    } else {
      box.appendChild(input(field, "value_" + index, kept[0], words.value, op === "contains" ? "text" : undefined));
    }
    row.querySelector("[data-within]").hidden = !field.within;
    if (!field.within) row.querySelector("[data-within] input").value = "";
  }

  function rebuildOps(row) {
    var field = spec.fields[row.querySelector("[data-field]").value];
    var ops = row.querySelector("[data-op]");
    var current = ops.value;
    ops.textContent = "";
    field.ops.forEach(function (op) {
      var option = element("option", { value: op }, spec.words.ops[op]);
      option.selected = op === current;
      ops.appendChild(option);
    });
  }

  function renumber() {
    rows.querySelectorAll("[data-row]").forEach(function (row, position) {
      row.querySelector("[data-n]").textContent = spec.words.n.replace("{n}", String(position + 1));
    });
  }

  // The count: one request at a time, the latest form wins.
  var timer = null, pending = false, busy = false;
  function schedule() {
    if (timer) window.clearTimeout(timer);
    timer = window.setTimeout(count, 300);
  }

  function showSample(items) {
    sample.textContent = "";
    if (!items.length) {
      sample.appendChild(element("li", { "class": "muted" }, sample.getAttribute("data-empty")));
      return;
    }
    items.forEach(function (item) {
      var li = element("li");
      li.appendChild(element("a", { href: item.url }, item.name));
      if (item.member) li.appendChild(element("span", { "class": "tag tag-green" }, sample.getAttribute("data-member")));
      sample.appendChild(li);
    });
  }

  function count() {
    if (busy) { pending = true; return; }
    busy = true;
    var body = new URLSearchParams(new FormData(form));
    body.delete("action");
    fetch(form.getAttribute("data-preview"), {
      method: "POST", credentials: "same-origin", body: body,
      headers: { "X-CSRF-Token": form.elements.csrf_token.value },
    }).then(function (response) {
      return response.json().then(function (answer) { return { ok: response.ok, answer: answer }; });
    }).then(function (result) {
      rows.querySelectorAll(".cond-invalid").forEach(function (row) { row.classList.remove("cond-invalid"); });
      rows.querySelectorAll(".cond-problem").forEach(function (node) { node.remove(); });
      if (result.ok) {
        countText.textContent = result.answer.text;
        countText.setAttribute("data-count", String(result.answer.count));
        problem.hidden = true;
        showSample(result.answer.sample);
      } else {
        countText.textContent = "—";
        countText.removeAttribute("data-count");
        problemText.textContent = result.answer.error || "";
        problem.hidden = false;
        sample.textContent = "";  // the last good answer's people are not this rule's
        var bad = result.answer.row !== null && rows.querySelectorAll("[data-row]")[result.answer.row];
        if (bad) bad.classList.add("cond-invalid");
      }
    }).catch(function () {}).then(function () {
      busy = false;
      if (pending) { pending = false; count(); }
    });
  }

  form.addEventListener("change", function (event) {
    var row = event.target.closest("[data-row]");
    if (row && event.target.matches("[data-field]")) {
      rebuildOps(row);
      rebuildValue(row);
    } else if (row && event.target.matches("[data-op]")) {
      rebuildValue(row);
    }
    schedule();
  });
  form.addEventListener("input", function (event) {
    if (event.target.name !== "name") schedule();
  });
  form.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button) return;
    if (button.hasAttribute("data-add")) {
      event.preventDefault();
      var index = String(next++);
      var holder = document.createElement("div");
      holder.appendChild(template.content.cloneNode(true));
      holder.querySelectorAll("[name], [data-index], [value]").forEach(function (node) {
        ["name", "data-index", "value"].forEach(function (attribute) {
          var value = node.getAttribute(attribute);
          if (value && value.indexOf("__N__") >= 0) node.setAttribute(attribute, value.replace("__N__", index));
        });
      });
      var row = holder.querySelector("[data-row]");
      rows.appendChild(row);
      renumber();
      row.querySelector("[data-field]").focus();
      schedule();
    } else if (button.hasAttribute("data-remove")) {
      event.preventDefault();
      var all = rows.querySelectorAll("[data-row]");
      if (all.length > 1) {
        button.closest("[data-row]").remove();
        renumber();
        schedule();
      }
    }
  });
})();
