// 分析: draws the page's charts with the vendored Chart.js (vendor/chart.umd.min.js) from the
// JSON the server embedded (#analytics-data). No inline script, no CDN: the CSP stays strict.
(function () {
  "use strict";
  var source = document.getElementById("analytics-data");
  if (!source || !window.Chart) return;
  var charts = JSON.parse(source.textContent);
  var COLORS = { green: "#06a552", red: "#d93c3c", blue: "#2f6fd6", amber: "#d08a1e", gray: "#8795a3" };
  var FONT = '"Noto Sans CJK JP", "Noto Sans JP", "Hiragino Sans", "Hiragino Kaku Gothic ProN", "Yu Gothic UI", "Meiryo", sans-serif';
  var locale = document.documentElement.lang === "en" ? "en-US" : "ja-JP";

  Chart.defaults.font.family = FONT;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = "#3d4a57";
  Chart.defaults.animation = false; // figures, not a show: drawn at once (and the same in every screenshot)

  function number(value) {
    return value === null || value === undefined ? "—" : Number(value).toLocaleString(locale);
  }

  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var chart = charts[canvas.getAttribute("data-chart")];
    if (!chart) return;
    var suffix = chart.percent ? "%" : "";
    var datasets = chart.datasets.map(function (set) {
      var color = COLORS[set.color] || COLORS.gray;
      return {
        label: set.label, data: set.data, borderColor: color, backgroundColor: chart.type === "line" ? color + "22" : color + "cc",
        borderWidth: 2, pointRadius: chart.labels.length > 40 ? 0 : 2, fill: chart.type === "line",
        cubicInterpolationMode: "monotone", // smooth, never above 100 % or below 0
        spanGaps: true, borderRadius: chart.type === "bar" ? 4 : 0, maxBarThickness: 36,
      };
    });
    new Chart(canvas, {
      type: chart.type,
      data: { labels: chart.labels, datasets: datasets },
      options: {
        responsive: true, maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { display: datasets.length > 1, position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { label: function (item) {
            return item.dataset.label + ": " + (chart.yen ? "¥" : "") + number(item.parsed.y) + suffix;
          } } },
        },
        scales: {
          x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 10 },
               title: { display: !!chart.x_title, text: chart.x_title || "" } },
          y: { beginAtZero: true, max: chart.percent ? 100 : undefined, ticks: { precision: 0, callback: function (value) {
            return number(value) + suffix;
          } } },
        },
      },
    });
  });
})();
