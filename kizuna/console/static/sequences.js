// ステップ配信: the editor's timeline follows the delays as they are typed (「3日後」 beside each step,
// the wait drawn between steps), as the server draws it on a re-render. The message slots and the
// LINE-like previews are campaigns.js's. Text goes in with textContent only.
(function () {
  "use strict";
  var form = document.getElementById("sequence-editor");
  var wordsElement = document.getElementById("sequence-words");
  if (!form || !wordsElement) return;
  var words = JSON.parse(wordsElement.textContent);

  function whole(input) {
    var value = input ? parseInt(input.value, 10) : 0;
    return isNaN(value) || value < 0 ? 0 : value;
  }

  function when(minutes) {
    var days = Math.floor(minutes / 1440), hours = Math.floor((minutes % 1440) / 60);
    if (!days && !hours) return minutes ? words.minutes.replace("{n}", minutes) : words.at_once;
    if (days && hours) return words.days_hours.replace("{days}", days).replace("{hours}", hours);
    return days ? words.days.replace("{n}", days) : words.hours.replace("{n}", hours);
  }

  function redraw() {
    var at = 0, offsets = [];
    form.querySelectorAll("[data-step]").forEach(function (step, index) {
      var minutes = whole(step.querySelector("input[name$=_days]")) * 1440 + whole(step.querySelector("input[name$=_hours]")) * 60 +
        whole(step.querySelector("input[name$=_minutes]"));
      var from = step.querySelector("select[name$=_from]");
      at = index === 0 || (from && from.value === "enrolment") ? minutes : at + minutes;
      offsets.push(at);
      step.querySelector("[data-step-when]").textContent = when(at);
    });
    form.querySelectorAll("[data-step-gap]").forEach(function (gap) {
      var index = parseInt(gap.getAttribute("data-step-gap"), 10);
      gap.querySelector("span").textContent = when(Math.max(offsets[index] - offsets[index - 1], 0));
    });
  }

  form.addEventListener("input", function (event) {
    if (event.target.matches("input[name$=_days], input[name$=_hours], input[name$=_minutes]")) redraw();
  });
  form.addEventListener("change", function (event) {
    if (event.target.matches("select[name$=_from]")) redraw();
  });
})();
