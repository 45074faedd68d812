// herald report pages: bar widths from data-share, and the per-minute chart (uPlot) from
// the JSON the page carries. No request leaves the page.
(function () {
  "use strict";
  document.querySelectorAll("[data-share]").forEach(function (el) {
    var share = Number(el.getAttribute("data-share"));
    el.style.width = (isFinite(share) ? Math.max(0, Math.min(100, share)) : 0) + "%";
  });
  var box = document.getElementById("series-chart");
  var src = document.getElementById("series-data");
  if (!box || !src || typeof uPlot === "undefined") return;
  var d = JSON.parse(src.textContent);
  if (!d.t || d.t.length === 0) {
    box.textContent = "Nothing sent yet.";
    box.style.minHeight = "0";
    return;
  }
  function size() {
    var w = box.clientWidth || 300;
    return { width: w, height: w < 500 ? 200 : 260 };
  }
  var line = function (label, color) {
    return { label: label, stroke: color, width: 2, points: { show: true, size: 5 } };
  };
  var s = size();
  var plot = new uPlot({
    width: s.width,
    height: s.height,
    scales: { x: { time: true } },
    tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
    series: [{}, line("Sent", "#2563eb"), line("Delivered", "#16a34a"),
      line("Opened", "#d97706"), line("Clicked", "#9333ea")],
    axes: [{}, { size: 50 }],
  }, [d.t, d.sent, d.delivered, d.opened, d.clicked], box);
  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () { plot.setSize(size()); }, 100);
  });
})();
