(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("map-data").textContent);
  var S = data.songs, n = S.id.length;
  var canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
  var wrap = document.getElementById("map-wrap"), tooltip = document.getElementById("tooltip");
  var details = document.getElementById("details"), searchBox = document.getElementById("search");
  var results = document.getElementById("search-results"), status = document.getElementById("search-status");
  var colourOf = S.colour.map(function (c) { return c >= 0 ? data.legend[c].colour : data.other.colour; });
  var order = [];  // grey songs first, so coloured ones are drawn on top
  for (var i = 0; i < n; i++) if (S.colour[i] < 0) order.push(i);
  for (i = 0; i < n; i++) if (S.colour[i] >= 0) order.push(i);
  var lower = S.artist.map(function (a, j) { return (a + " \u2014 " + S.title[j]).toLowerCase(); });
  var view = { cx: 0.5, cy: 0.5, zoom: 1 }, width = 0, height = 0;
  var state = { hovered: -1, selected: -1, highlighted: -1, matches: [] };
  var radius = Math.max(2, Math.min(6, 120 / Math.sqrt(n)));

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function label(j) { return S.artist[j] + " \u2014 " + S.title[j]; }
  var xRange = Math.max(1e-6, Math.max.apply(null, S.x) - Math.min.apply(null, S.x));
  var yRange = Math.max(1e-6, Math.max.apply(null, S.y) - Math.min.apply(null, S.y));
  function scale() { return 0.92 * Math.min(width / xRange, height / yRange) * view.zoom; }
  function screen(j) {
    var s = scale();
    return [(S.x[j] - view.cx) * s + width / 2, (view.cy - S.y[j]) * s + height / 2];
  }
  function resize() {
    var ratio = window.devicePixelRatio || 1, box = canvas.getBoundingClientRect();
    width = box.width; height = box.height;
    canvas.width = Math.max(1, Math.round(width * ratio));
    canvas.height = Math.max(1, Math.round(height * ratio));
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    draw();
  }
  function ring(j, colour, size, lineWidth) {
    var p = screen(j);
    ctx.beginPath(); ctx.arc(p[0], p[1], size, 0, 2 * Math.PI);
    ctx.lineWidth = lineWidth; ctx.strokeStyle = colour; ctx.stroke();
  }
  function draw() {
    ctx.clearRect(0, 0, width, height);
    var r = radius * Math.min(3, Math.sqrt(view.zoom));
    for (var o = 0; o < n; o++) {
      var j = order[o], p = screen(j);
      if (p[0] < -r || p[1] < -r || p[0] > width + r || p[1] > height + r) continue;
      ctx.globalAlpha = S.colour[j] < 0 ? 0.55 : 0.85;
      ctx.fillStyle = colourOf[j];
      ctx.beginPath(); ctx.arc(p[0], p[1], r, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.globalAlpha = 1;
    if (state.selected >= 0) {
      var a = screen(state.selected);
      ctx.strokeStyle = "rgba(0,0,0,0.35)"; ctx.lineWidth = 1;
      S.neighbours[state.selected].forEach(function (m) {
        var b = screen(m);
        ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
        ring(m, "#333", r + 2, 1.5);
      });
    }
    state.matches.slice(0, 200).forEach(function (m) { ring(m, "#f5a800", r + 3, 2); });
    if (state.highlighted >= 0) {
      ring(state.highlighted, "#000", r + 7, 2.5);
      ring(state.highlighted, "#f5a800", r + 4, 2.5);
    }
    if (state.selected >= 0) ring(state.selected, "#d00", r + 4, 2.5);
    if (state.hovered >= 0) ring(state.hovered, "#000", r + 2, 1.5);
  }
  function nearest(x, y) {
    var best = -1, bestD = Math.pow(Math.max(8, radius + 4), 2);
    for (var j = 0; j < n; j++) {
      var p = screen(j), d = (p[0] - x) * (p[0] - x) + (p[1] - y) * (p[1] - y);
      if (d <= bestD) { bestD = d; best = j; }
    }
    return best;
  }
  function tagList(j) {
    var list = el("ul", "tags");
    S.top[j].forEach(function (pair) {
      var item = el("li");
      item.appendChild(el("span", "tag", data.tags[pair[0]]));
      item.appendChild(el("span", "score", pair[1].toFixed(2)));
      list.appendChild(item);
    });
    return list;
  }
  function songButton(j, extra) {
    var button = el("button", "song", label(j));
    button.type = "button";
    button.setAttribute("data-index", String(j));
    button.setAttribute("data-id", S.id[j]);
    button.addEventListener("click", function () { select(j, { centre: true, play: extra !== "noplay" }); });
    return button;
  }
  function showTooltip(j, x, y) {
    tooltip.textContent = "";
    tooltip.appendChild(el("div", "song-title", S.title[j]));
    tooltip.appendChild(el("div", "artist", S.artist[j]));
    tooltip.appendChild(tagList(j));
    tooltip.hidden = false;
    var left = x + 14, top = y + 14;
    if (left + tooltip.offsetWidth > width) left = x - tooltip.offsetWidth - 14;
    if (top + tooltip.offsetHeight > height) top = y - tooltip.offsetHeight - 14;
    tooltip.style.left = Math.max(0, left) + "px";
    tooltip.style.top = Math.max(0, top) + "px";
  }
  function centre(j) {
    view.cx = S.x[j]; view.cy = S.y[j]; view.zoom = Math.max(view.zoom, 3);
  }
  function select(j, options) {
    options = options || {};
    state.selected = j;
    if (options.centre) centre(j);
    details.textContent = "";
    details.setAttribute("data-id", S.id[j]);
    details.appendChild(el("div", "song-title", S.title[j]));
    details.appendChild(el("div", "artist", S.artist[j]));
    details.appendChild(tagList(j));
    var audio = el("audio");
    audio.controls = true;
    audio.preload = "none";
    audio.src = S.audio[j];
    audio.addEventListener("error", function () {
      var note = details.querySelector(".audio-error") ||
        details.insertBefore(el("p", "hint audio-error"), audio.nextSibling);
      note.textContent = "This clip cannot be played here.";
    });
    details.appendChild(audio);
    if (options.play !== false) {
      var playing = audio.play();
      if (playing && playing.catch) playing.catch(function () { /* autoplay refused: the controls remain */ });
    }
    details.appendChild(el("h2", null, "Nearest songs (cosine distance)"));
    var list = el("ol");
    list.id = "neighbours";
    S.neighbours[j].forEach(function (m, rank) {
      var item = el("li");
      item.appendChild(songButton(m));
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("span", "distance", S.distances[j][rank].toFixed(3)));
      list.appendChild(item);
    });
    details.appendChild(list);
    draw();
  }
  function search(text) {
    var query = String(text || "").trim().toLowerCase();
    results.textContent = "";
    state.matches = [];
    state.highlighted = -1;
    if (query) {
      for (var j = 0; j < n; j++) if (lower[j].indexOf(query) >= 0) state.matches.push(j);
      status.textContent = state.matches.length === 1 ? "1 match" : state.matches.length + " matches";
      state.matches.slice(0, 20).forEach(function (m) {
        var item = el("li");
        item.appendChild(songButton(m));
        results.appendChild(item);
      });
      if (state.matches.length) {
        state.highlighted = state.matches[0];
        centre(state.highlighted);
        results.firstChild.classList.add("highlight");
      }
    } else {
      status.textContent = "";
    }
    draw();
    return state.matches.map(function (m) { return S.id[m]; });
  }
  function legend() {
    var box = document.getElementById("legend");
    data.legend.forEach(function (entry) {
      var item = el("li"), swatch = el("span", "swatch");
      swatch.style.background = entry.colour;
      item.appendChild(swatch);
      item.appendChild(el("span", null, entry.tag + " (" + entry.count + ")"));
      box.appendChild(item);
    });
    if (data.other.count) {
      var item = el("li"), swatch = el("span", "swatch");
      swatch.style.background = data.other.colour;
      item.appendChild(swatch);
      item.appendChild(el("span", null, "other (" + data.other.count + ")"));
      box.appendChild(item);
    }
  }

  var drag = null;
  canvas.addEventListener("mousedown", function (e) {
    drag = { x: e.clientX, y: e.clientY, cx: view.cx, cy: view.cy, moved: false };
  });
  window.addEventListener("mouseup", function () {
    canvas.classList.remove("dragging");
    setTimeout(function () { drag = null; }, 0);
  });
  canvas.addEventListener("mousemove", function (e) {
    var box = canvas.getBoundingClientRect(), x = e.clientX - box.left, y = e.clientY - box.top;
    if (drag && (e.buttons & 1)) {
      var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; canvas.classList.add("dragging"); }
      if (drag.moved) {
        view.cx = drag.cx - dx / scale(); view.cy = drag.cy + dy / scale();
        tooltip.hidden = true; draw(); return;
      }
    }
    var j = nearest(x, y);
    if (j !== state.hovered) { state.hovered = j; draw(); }
    if (j >= 0) showTooltip(j, x, y); else tooltip.hidden = true;
  });
  canvas.addEventListener("mouseleave", function () { state.hovered = -1; tooltip.hidden = true; draw(); });
  canvas.addEventListener("click", function (e) {
    if (drag && drag.moved) return;
    var box = canvas.getBoundingClientRect(), j = nearest(e.clientX - box.left, e.clientY - box.top);
    if (j >= 0) select(j, { play: true });
  });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    var box = canvas.getBoundingClientRect(), x = e.clientX - box.left, y = e.clientY - box.top;
    var s = scale(), px = view.cx + (x - width / 2) / s, py = view.cy - (y - height / 2) / s;
    view.zoom = Math.min(200, Math.max(0.5, view.zoom * Math.exp(-e.deltaY * 0.0015)));
    s = scale();
    view.cx = px - (x - width / 2) / s; view.cy = py + (y - height / 2) / s;
    draw();
  }, { passive: false });
  document.getElementById("reset").addEventListener("click", function () {
    view.cx = 0.5; view.cy = 0.5; view.zoom = 1; draw();
  });
  searchBox.addEventListener("input", function () { search(searchBox.value); });
  searchBox.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && state.matches.length) select(state.matches[0], { play: true });
  });
  window.addEventListener("resize", resize);

  legend();
  resize();
  window.tsneMap = {
    data: data, state: state, view: view, select: select, search: search,
    screenPosition: function (j) { return screen(j); },
    indexOf: function (id) { return S.id.indexOf(String(id)); }
  };
  document.body.setAttribute("data-ready", "true");
})();
