// Loa console: the live audience count of the broadcast compose form.
//
// Progressive enhancement, nothing more: without this script the form works as
// before (the "Xem trước" button shows the count). While the admin types a tag
// expression (or picks "everyone"), it waits 300 ms after the last key, asks
// GET /admin/broadcasts/audience (the session's tenant, read-only) and shows the
// count, or where the expression goes wrong, next to the field. Served by the
// console itself under `script-src 'self'`: no framework, nothing from elsewhere.
(function () {
  "use strict";
  var tags = document.getElementById("tags");
  var out = document.getElementById("live-audience");
  if (!tags || !out || !tags.form || !window.fetch) {
    return;
  }
  var form = tags.form;
  var radios = form.querySelectorAll("input[name=audience]");
  var timer = null;
  var asked = 0;

  function show(text, isError) {
    out.textContent = text;
    out.className = isError ? "live error" : "live";
  }

  function byTags() {
    var chosen = form.querySelector("input[name=audience]:checked");
    return chosen !== null && chosen.value === "tags";
  }

  function ask() {
    var mine = ++asked;
    var url = "/admin/broadcasts/audience";
    if (byTags()) {
      if (tags.value.trim() === "") {
        show("", false);
        return;
      }
      url += "?tags=" + encodeURIComponent(tags.value);
    }
    show("Đang đếm số người nhận…", false);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json();
      })
      .then(function (answer) {
        if (mine !== asked) {
          return; // An older answer arriving late.
        }
        if (typeof answer.audience === "number") {
          show("Số người nhận hiện tại: " + answer.audience.toLocaleString("vi-VN"), false);
        } else {
          show(answer.error || "", true);
        }
      })
      .catch(function () {
        if (mine === asked) {
          show("", false);
        }
      });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(ask, 300);
  }

  tags.addEventListener("input", later);
  for (var i = 0; i < radios.length; i++) {
    radios[i].addEventListener("change", later);
  }
  ask();
})();
