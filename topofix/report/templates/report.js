(function () {
  "use strict";
  var table = document.getElementById("scan-table");
  function keyOf(th) { return th.getAttribute("data-key"); }
  function value(row, index, type) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
    if (type === "num") { var x = parseFloat(raw); return isNaN(x) ? null : x; }
    return raw === "" ? null : raw;
  }
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  function sortTable(key, descending) {
    if (!table) return false;
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var index = -1;
    heads.forEach(function (th, i) { if (keyOf(th) === key) index = i; });
    if (index < 0) return false;
    var type = heads[index].getAttribute("data-type");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, index, type), y = value(b, index, type);
      var order = 0;
      if (x === null || y === null) {
        order = x === null && y === null ? 0 : (x === null ? 1 : -1);  // missing values last, both ways
      } else {
        order = type === "num" ? x - y : collator.compare(x, y);
        if (descending) order = -order;
      }
      return order || (+a.getAttribute("data-index") - +b.getAttribute("data-index"));
    });
    rows.forEach(function (row) { body.appendChild(row); });
    heads.forEach(function (th) { th.removeAttribute("aria-sort"); });
    heads[index].setAttribute("aria-sort", descending ? "descending" : "ascending");
    table.setAttribute("data-sort", (descending ? "-" : "") + key);
    return true;
  }
  window.topofixSort = sortTable;
  if (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var button = th.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        sortTable(keyOf(th), th.getAttribute("aria-sort") === "ascending");
      });
    });
  }
  function requested() {
    var match = /[?&]sort=([^&#]*)/.exec(window.location.search) || /[#&]sort=([^&]*)/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }
  var wanted = requested();
  if (wanted) {
    var descending = wanted.charAt(0) === "-";
    sortTable(descending ? wanted.slice(1) : wanted, descending);
  }
  function markImages() {
    var images = Array.prototype.slice.call(document.images);
    var loaded = images.filter(function (im) { return im.complete && im.naturalWidth > 0; }).length;
    document.body.setAttribute("data-images-total", String(images.length));
    document.body.setAttribute("data-images-loaded", String(loaded));
  }
  if (document.readyState === "complete") markImages();
  else window.addEventListener("load", markImages);
})();
