/* Draws each figure's chart from the JSON beside it. The table under the chart holds the
   same numbers and is what screen readers and keyboards use; the chart is a picture of it. */
(function () {
  "use strict";
  var palette = ["#1d4f91", "#d4351c", "#00703c", "#6f3996", "#b58840", "#28a197", "#505a5f"];
  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function draw(script) {
    var data = JSON.parse(script.textContent);
    var name = script.id.replace(/-chart-data$/, "");
    var canvas = document.getElementById(name + "-chart");
    if (!canvas || typeof Chart === "undefined") { return; }
    var stacked = data.type === "stacked";
    var line = data.type === "line";
    var datasets = data.datasets.map(function (set, i) {
      var colour = palette[i % palette.length];
      return { label: set.label, data: set.data, backgroundColor: colour, borderColor: colour,
               spanGaps: false, borderWidth: line ? 2 : 0, pointRadius: line ? 2 : 0 };
    });
    new Chart(canvas, {
      type: line ? "line" : "bar",
      data: { labels: data.labels, datasets: datasets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: reduceMotion ? false : { duration: 300 },
        scales: { x: { stacked: stacked }, y: { stacked: stacked, beginAtZero: true } },
        plugins: { legend: { display: datasets.length > 1 } }
      }
    });
  }

  document.querySelectorAll("script.chart-data").forEach(draw);
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });
})();
