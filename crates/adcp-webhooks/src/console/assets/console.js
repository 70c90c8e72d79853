// adcp-webhooks operator console: optional niceties. Every page and action works without it.
// Values from the server are set with textContent, never parsed as HTML.
(function () {
  "use strict";
  function liveTail() {
    var section = document.getElementById("live");
    var rows = document.getElementById("tail-rows");
    if (!section || !rows || !window.EventSource) return;
    var source = new EventSource(section.getAttribute("data-events"));
    source.addEventListener("open", function () {
      section.setAttribute("data-connected", "1");
    });
    source.addEventListener("attempt", function (e) {
      var a = JSON.parse(e.data);
      var tr = document.createElement("tr");
      tr.className = "new";
      tr.setAttribute("data-seq", String(a.seq));
      var cells = [a.time, null, a.destination, String(a.attempt),
        a.status === null ? "\u2014" : String(a.status), a.class, a.latency_ms + " ms"];
      cells.forEach(function (text, i) {
        var td = document.createElement("td");
        if (i === 1) {
          var link = document.createElement("a");
          link.href = a.href;
          link.textContent = String(a.delivery);
          td.appendChild(link);
        } else {
          td.textContent = text;
        }
        tr.appendChild(td);
      });
      rows.insertBefore(tr, rows.firstChild);
      while (rows.rows.length > 100) rows.deleteRow(-1);
    });
  }
  function copyCurl() {
    var pre = document.getElementById("curl");
    if (!pre || !navigator.clipboard) return;
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "Copy curl command";
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(pre.textContent).then(function () {
        button.textContent = "Copied";
      });
    });
    pre.parentNode.insertBefore(button, pre);
  }
  document.addEventListener("DOMContentLoaded", function () {
    liveTail();
    copyCurl();
  });
})();
