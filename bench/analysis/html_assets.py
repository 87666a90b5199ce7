"""The HTML report's own CSS and script, inlined into report.html (analysis.html_report): no library, no network.

The script only reads the page: it attaches its listeners by class (sortable tables, their filters, the chart's
axis choice and hover label) and never builds markup from the report's data, so a cell or class name cannot
become code.
"""

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#fff;margin:0}
main{max-width:1200px;margin:0 auto;padding:1rem 1.5rem 4rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
code{background:#f3f3f5;padding:0 .25em;border-radius:3px;font-size:.92em;word-break:break-all}
blockquote{border-left:4px solid #e0a800;margin:.5rem 0;padding:.2rem .8rem;background:#fff8e1}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}
.table-block{margin:.8rem 0 1.2rem}.table-scroll{overflow-x:auto;max-height:70vh}
.table-tools{display:flex;flex-wrap:wrap;gap:.6rem;align-items:center;margin-bottom:.3rem;font-size:.9em}
.table-tools input{padding:.2rem .4rem;min-width:14rem}.table-count{color:#666}
table.sortable{border-collapse:collapse;font-size:.88em}
table.sortable th,table.sortable td{border:1px solid #ddd;padding:.2rem .45rem;vertical-align:top}
table.sortable th{background:#f4f5f7;cursor:pointer;position:sticky;top:0;user-select:none;white-space:nowrap}
table.sortable th.num,table.sortable td.num{text-align:right}table.sortable td.num{white-space:nowrap}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
table.sortable tbody tr:nth-child(even){background:#fafafa}table.sortable tbody tr:hover{background:#eef4ff}
td.verdict-better{background:#d9f2dc;color:#14532d}td.verdict-worse{background:#fbdada;color:#7f1d1d}
td.verdict-inconclusive,td.verdict-noise{background:#fff3c4}td.verdict-within-margin{background:#e3eefc}
td.verdict-one-run{color:#777}
.csv{font-size:.9em;color:#444;margin:.2rem 0}
.chart{margin:1rem 0}.chart svg{max-width:100%;height:auto;display:block;margin-top:.4rem}
.chart .note{color:#666;font-size:.85em}
.chart .frame{stroke:#333}.chart .grid{stroke:#e5e5e5}.chart .tick{font-size:11px;fill:#444}
.chart .label{font-size:12px;fill:#222}.chart .front{fill:none;stroke:#d62728;stroke-width:1.5;stroke-dasharray:4 3}
.chart .point{fill:#1f77b4;fill-opacity:.8;stroke:#fff;cursor:pointer}.chart .point:hover{fill:#ff7f0e;r:7}
.chart .chart-hover{font-size:12px;fill:#111;font-weight:600}
details{border:1px solid #ddd;border-radius:4px;margin:.3rem 0;padding:.2rem .6rem}details:target{border-color:#1f77b4}
summary{cursor:pointer;font-family:monospace}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem}
dt{font-weight:600}dd{margin:0}pre{margin:0;white-space:pre-wrap;font-size:.85em;max-height:24rem;overflow:auto}
.curves{display:flex;flex-wrap:wrap;gap:1rem;margin:.6rem 0}
.curve-chart .curve{fill:none;stroke:#1f77b4;stroke-width:2}.curve-chart .curve-point{fill:#1f77b4}
.curve-chart .frame{stroke:#333}.curve-chart .tick{font-size:10px;fill:#444}
.curve-chart .label{font-size:12px;fill:#222}
.examples figure{margin:.4rem 0}.examples img{image-rendering:pixelated;width:100%;max-width:800px}
.note{color:#666}.heat-legend{color:#666}
figure,details,.chart{content-visibility:auto;contain-intrinsic-size:auto 300px}
.heat-scale{display:inline-block;width:5rem;height:.7rem;vertical-align:middle;
background:linear-gradient(90deg,hsl(0,70%,82%),hsl(60,70%,82%),hsl(120,70%,82%))}
"""

SCRIPT = """
(function () {
  "use strict";
  function each(list, fn) { Array.prototype.forEach.call(list, fn); }
  function compare(a, b) {
    if (a !== "" && b !== "" && isFinite(a) && isFinite(b)) { return Number(a) - Number(b); }
    return a.localeCompare(b, undefined, {numeric: true, sensitivity: "base"});
  }
  each(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead.rows[0].cells, body = table.tBodies[0];
    each(heads, function (th, column) {
      th.addEventListener("click", function () {
        var direction = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        each(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", direction > 0 ? "ascending" : "descending");
        // Each row's key read once; numbers compared as numbers; missing values last either way.
        var keyed = Array.prototype.map.call(body.rows, function (row) {
          var value = row.cells[column].getAttribute("data-v");
          return {row: row, value: value, number: value !== "" && isFinite(value) ? Number(value) : null};
        });
        keyed.sort(function (r, s) {
          if (r.value === "" || s.value === "") { return (r.value === "") - (s.value === ""); }
          if (r.number !== null && s.number !== null) { return direction * (r.number - s.number); }
          return direction * compare(r.value, s.value);
        });
        var sorted = document.createDocumentFragment();
        each(keyed, function (item) { sorted.appendChild(item.row); });
        body.appendChild(sorted);
      });
    });
  });
  each(document.querySelectorAll(".table-block"), function (block) {
    var input = block.querySelector(".table-filter"), selects = block.querySelectorAll(".table-select");
    var count = block.querySelector(".table-count"), body = block.querySelector("tbody");
    function apply() {
      var needle = input.value.toLowerCase(), shown = 0;
      each(body.rows, function (row) {
        var keep = row.textContent.toLowerCase().indexOf(needle) >= 0;
        each(selects, function (select) {
          if (!select.value) { return; }
          var facet = select.getAttribute("data-facet");  // an axis of the row's cell, or a shown column
          var value = facet ? row.getAttribute("data-f-" + facet)
                            : row.cells[Number(select.getAttribute("data-col"))].getAttribute("data-v");
          if (value !== select.value) { keep = false; }
        });
        row.hidden = !keep;
        shown += keep ? 1 : 0;
      });
      count.textContent = shown + " of " + body.rows.length + " rows";
    }
    input.addEventListener("input", apply);
    each(selects, function (select) { select.addEventListener("change", apply); });
    apply();
  });
  each(document.querySelectorAll(".chart"), function (chart) {
    var choice = chart.querySelector("select.chart-axis"), hover = chart.querySelector(".chart-hover");
    choice.addEventListener("change", function () {
      each(chart.querySelectorAll(".chart-layer"), function (layer) {
        if (layer.getAttribute("data-axis") === choice.value) { layer.removeAttribute("display"); }
        else { layer.setAttribute("display", "none"); }
      });
      hover.textContent = "";
    });
    each(chart.querySelectorAll(".point"), function (point) {
      point.addEventListener("mouseenter", function () { hover.textContent = point.getAttribute("data-label"); });
    });
  });
  function openDetails() {
    var target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  window.addEventListener("hashchange", openDetails);
  openDetails();
})();
"""
