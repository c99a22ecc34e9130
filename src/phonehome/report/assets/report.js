"use strict";
// Progressive enhancement only: every table is complete without this script. It adds a text
// filter above tables marked data-filter and sorting on the headers of tables marked sortable.
// It reads the page's own text and never writes markup: rows are only shown, hidden or moved.
(function () {
  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    var key = cell.getAttribute("data-sort");
    return key !== null ? key : cell.textContent.trim().toLowerCase();
  }

  function compare(a, b) {
    var x = parseFloat(a), y = parseFloat(b);
    if (!isNaN(x) && !isNaN(y) && String(x) === a && String(y) === b) { return x - y; }
    return a < b ? -1 : a > b ? 1 : 0;
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    var body = table.tBodies[0];
    if (!body || !table.tHead) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.classList.add("sortable");
      th.setAttribute("tabindex", "0");
      th.setAttribute("aria-sort", "none");
      function sort() {
        var down = th.getAttribute("aria-sort") === "ascending";
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
          other.setAttribute("aria-sort", "none");
        });
        th.setAttribute("aria-sort", down ? "descending" : "ascending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var c = compare(cellKey(r1, index), cellKey(r2, index));
          return down ? -c : c;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); }
      });
    });
  });

  document.querySelectorAll("table[data-filter]").forEach(function (table) {
    var box = document.createElement("div");
    box.className = "filter";
    var label = document.createElement("label");
    var input = document.createElement("input");
    var count = document.createElement("span");
    input.type = "search";
    input.id = table.id + "-filter";
    label.htmlFor = input.id;
    label.textContent = "Filter rows:";
    count.className = "note";
    count.setAttribute("aria-live", "polite");
    box.appendChild(label);
    box.appendChild(input);
    box.appendChild(count);
    table.parentNode.insertBefore(box, table);
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      var shown = 0, total = 0;
      Array.prototype.forEach.call(table.tBodies, function (body) {
        Array.prototype.forEach.call(body.rows, function (row) {
          var hit = !needle || row.textContent.toLowerCase().indexOf(needle) >= 0;
          row.classList.toggle("hidden", !hit);
          total += 1;
          if (hit) { shown += 1; }
        });
      });
      count.textContent = needle ? shown + " of " + total + " rows" : "";
    });
  });
})();
