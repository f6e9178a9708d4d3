// geosolver play: three views over one JSON API on the same origin. The world map is an SVG in the
// equirectangular projection (x = lon + 180, y = 90 - lat in the viewBox), drawn from the vendored
// Natural Earth TopoJSON; wheel zooms, drag pans, a click (no drag) is a guess.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const fmt = (x, d = 0) => Number(x).toLocaleString("en", { maximumFractionDigits: d, minimumFractionDigits: d });
const points = (km) => Math.round(5000 * Math.exp(-km / 1492.7));

// Every string from the API (creators, licences, image ids, place names, error messages) reaches the page
// as a text node or an attribute value, never as HTML: a creator "<img onerror=...>" stays those characters.
// The server's Content-Security-Policy forbids inline script as a second wall.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}
const errorText = (message) => el("span", { class: "error" }, message);
const bold = (text) => el("b", {}, String(text));

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

// ---- the map ---------------------------------------------------------------------------------------
let WORLD = null; // GeoJSON features, decoded once

function ringPaths(ring) {
  // A ring that crosses the antimeridian twice (Russia, Fiji) is unwrapped and drawn twice, shifted by
  // 360 degrees, and clipped to the map; one crossing (Antarctica) runs along the map's edge as it is.
  const jumps = ring.reduce((n, p, i) => n + (i && Math.abs(p[0] - ring[i - 1][0]) > 180 ? 1 : 0), 0);
  const draw = (pts) => "M" + pts.map(([lon, lat]) => `${(lon + 180).toFixed(2)},${(90 - lat).toFixed(2)}`)
    .join("L") + "Z";
  if (jumps === 0 || jumps % 2) return [draw(ring)];
  const unwrapped = [];
  let shift = 0;
  ring.forEach(([lon, lat], i) => {
    if (i) { const d = lon - ring[i - 1][0]; if (d > 180) shift -= 360; else if (d < -180) shift += 360; }
    unwrapped.push([lon + shift, lat]);
  });
  return [draw(unwrapped), draw(unwrapped.map(([x, y]) => [x + 360, y])), draw(unwrapped.map(([x, y]) => [x - 360, y]))];
}

function geometryPath(geometry) {
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates] :
    geometry.type === "MultiPolygon" ? geometry.coordinates : [];
  return polygons.flatMap((rings) => rings.flatMap(ringPaths)).join("");
}

class WorldMap {
  constructor(svg, { onClick } = {}) {
    this.svg = svg;
    this.view = { x: 0, y: 0, w: 360, h: 180 };
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    const clip = `clip-${svg.id}`;
    const svgEl = (tag, attrs) => {
      const node = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      return node;
    };
    const clipPath = svgEl("clipPath", { id: clip });
    clipPath.append(svgEl("rect", { x: 0, y: 0, width: 360, height: 180 }));
    svg.replaceChildren(svgEl("defs", {}));
    svg.firstChild.append(clipPath);
    this.land = this.layer(`url(#${clip})`);
    this.marks = this.layer(null);
    for (const f of WORLD) {
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", geometryPath(f.geometry));
      path.setAttribute("class", "country");
      path.setAttribute("fill-rule", "evenodd");
      const title = document.createElementNS(SVG, "title");
      title.textContent = f.properties.name;
      path.appendChild(title);
      this.land.appendChild(path);
    }
    this.apply();
    this.onClick = onClick;
    svg.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    svg.addEventListener("mousedown", (e) => { this.drag = { x: e.clientX, y: e.clientY, view: { ...this.view }, moved: false }; });
    window.addEventListener("mousemove", (e) => this.move(e));
    window.addEventListener("mouseup", (e) => this.up(e));
  }

  layer(clip) {
    const g = document.createElementNS(SVG, "g");
    if (clip) g.setAttribute("clip-path", clip);
    this.svg.appendChild(g);
    return g;
  }

  apply() {
    const v = this.view;
    this.svg.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
    const perPixel = v.w / (this.svg.clientWidth || 900);
    for (const c of this.marks.querySelectorAll("circle")) c.setAttribute("r", c.dataset.px * perPixel);
  }

  // Client pixel -> {lat, lon}, through the SVG's own transform (zoom and letterboxing included).
  invert(clientX, clientY) {
    const pt = this.svg.createSVGPoint();
    pt.x = clientX; pt.y = clientY;
    const p = pt.matrixTransform(this.svg.getScreenCTM().inverse());
    return { lat: Math.max(-90, Math.min(90, 90 - p.y)), lon: ((p.x % 360) + 360) % 360 - 180 };
  }

  wheel(e) {
    e.preventDefault();
    const factor = e.deltaY < 0 ? 0.8 : 1.25;
    const pt = this.svg.createSVGPoint();
    pt.x = e.clientX; pt.y = e.clientY;
    const p = pt.matrixTransform(this.svg.getScreenCTM().inverse());
    const v = this.view;
    const w = Math.min(360, Math.max(2, v.w * factor)), h = w / 2;
    this.view = { x: p.x - (p.x - v.x) * (w / v.w), y: p.y - (p.y - v.y) * (h / v.h), w, h };
    this.clamp();
  }

  move(e) {
    if (!this.drag) return;
    const dx = e.clientX - this.drag.x, dy = e.clientY - this.drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 4) this.drag.moved = true;
    if (!this.drag.moved) return;
    const perPixel = this.view.w / this.svg.clientWidth;
    this.view = { ...this.drag.view, x: this.drag.view.x - dx * perPixel, y: this.drag.view.y - dy * perPixel };
    this.clamp();
  }

  up(e) {
    const drag = this.drag;
    this.drag = null;
    if (drag && !drag.moved && this.onClick && e.target.closest && e.target.closest("svg") === this.svg) {
      this.onClick(this.invert(e.clientX, e.clientY), e);
    }
  }

  clamp() {
    const v = this.view;
    v.x = Math.min(360 - v.w, Math.max(0, v.x));
    v.y = Math.min(180 - v.h, Math.max(0, v.y));
    this.apply();
  }

  clear() { this.marks.replaceChildren(); }

  marker(lat, lon, cls, title, px = 6) {
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("cx", lon + 180);
    c.setAttribute("cy", 90 - lat);
    c.setAttribute("class", cls);
    c.dataset.px = px;
    c.dataset.lat = lat;
    c.dataset.lon = lon;
    if (title) { const t = document.createElementNS(SVG, "title"); t.textContent = title; c.appendChild(t); }
    this.marks.appendChild(c);
    this.apply();
    return c;
  }

  link(a, b, cls) {
    const l = document.createElementNS(SVG, "line");
    l.setAttribute("x1", a.lon + 180); l.setAttribute("y1", 90 - a.lat);
    l.setAttribute("x2", b.lon + 180); l.setAttribute("y2", 90 - b.lat);
    l.setAttribute("class", `link ${cls}`);
    this.marks.insertBefore(l, this.marks.firstChild);
  }
}

// ---- round mode ------------------------------------------------------------------------------------
const game = { id: null, rounds: 0, round: 0, guess: null, map: null };

async function newGame() {
  const g = await api("/api/games", { method: "POST" });
  Object.assign(game, { id: g.game, rounds: g.rounds, round: 0 });
  document.querySelector("#score-table tbody").replaceChildren();
  $("total-person").textContent = "0";
  $("total-model").textContent = "0";
  $("new-game-button").hidden = true;
  nextRound();
}

function nextRound() {
  game.round += 1;
  game.guess = null;
  game.map.clear();
  $("round-title").textContent = `Round ${game.round} of ${game.rounds}`;
  $("round-photo").src = `/api/games/${game.id}/rounds/${game.round}/image`;
  $("round-attribution").textContent = "";
  $("round-result").textContent = "";
  $("guess-at").textContent = "Click the map where you think the photo was taken.";
  $("guess-button").disabled = true;
  $("guess-button").hidden = false;
  $("next-button").hidden = true;
}

function placeGuess(at) {
  if (!game.id || $("guess-button").hidden) return;
  game.guess = at;
  game.map.clear();
  game.map.marker(at.lat, at.lon, "person", "your guess", 7);
  $("guess-at").textContent = `Your guess: ${fmt(at.lat, 4)}, ${fmt(at.lon, 4)}`;
  $("guess-at").dataset.lat = at.lat;
  $("guess-at").dataset.lon = at.lon;
  $("guess-button").disabled = false;
}

async function submitGuess() {
  $("guess-button").disabled = true;
  let r;
  try {
    r = await api(`/api/games/${game.id}/guess`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...game.guess, round: game.round }), // a second guess of this round gets 409
    });
  } catch (err) { $("round-result").replaceChildren(errorText(err.message)); return; }
  const m = game.map;
  m.clear();
  m.link(r.person, r.truth, "person");
  m.link(r.model, r.truth, "model");
  m.marker(r.truth.lat, r.truth.lon, "truth", "where it was taken", 7);
  m.marker(r.person.lat, r.person.lon, "person", "your guess", 7);
  m.marker(r.model.lat, r.model.lon, "model", `model: ${r.model.place}, ${r.model.country}`, 7);
  $("round-result").dataset.imageId = r.image_id;
  $("round-attribution").textContent = [r.truth.creator && `© ${r.truth.creator}`, r.truth.license].filter(Boolean).join(" · ");
  $("round-result").replaceChildren(
    `Truth ${fmt(r.truth.lat, 3)}, ${fmt(r.truth.lon, 3)} (${r.truth.country || "?"}). `,
    el("span", { class: "person-result" }, "You: ", bold(`${fmt(r.person.km, 1)} km`), ", ",
      bold(r.person.points), " points."), " ",
    el("span", { class: "model-result" }, `Model (${r.model.place}, ${r.model.country}): `,
      bold(`${fmt(r.model.km, 1)} km`), ", ", bold(r.model.points), " points."));
  const cells = [r.round, fmt(r.person.km, 1), r.person.points, fmt(r.model.km, 1), r.model.points];
  document.querySelector("#score-table tbody").appendChild(el("tr", {}, ...cells.map((c) => el("td", {}, String(c)))));
  $("total-person").textContent = r.totals.person;
  $("total-model").textContent = r.totals.model;
  $("guess-button").hidden = true;
  if (r.over) {
    const verdict = r.totals.person > r.totals.model ? "You beat the model" :
      r.totals.person < r.totals.model ? "The model wins" : "A draw";
    $("round-result").append(el("div", { class: "final" },
      `Game over. ${verdict}: ${r.totals.person} to ${r.totals.model}.`));
    $("new-game-button").hidden = false;
  } else {
    $("next-button").hidden = false;
  }
}

// ---- explore mode ----------------------------------------------------------------------------------
let exploreMap = null;

async function explore(file) {
  $("explore-status").textContent = `Locating ${file.name}…`;
  $("candidates").replaceChildren();
  $("neighbours").replaceChildren();
  exploreMap.clear();
  const preview = $("explore-photo");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const form = new FormData();
  form.append("photo", file, file.name);
  let r;
  try {
    r = await api("/api/explore", { method: "POST", body: form });
  } catch (err) { $("explore-status").replaceChildren(errorText(err.message)); return; }
  const place = r.place ? `Nearest place to the best guess: ${r.place.place}, ${r.place.country}.` : "";
  $("explore-status").textContent = `${r.candidates.length} candidates. ${place}`;
  for (const n of r.neighbours) {
    exploreMap.marker(n.lat, n.lon, "neighbour", `reference ${n.image_id} (similarity ${n.similarity})`, 4);
  }
  r.candidates.forEach((c, i) => {
    exploreMap.marker(c.lat, c.lon, "candidate", `#${i + 1} ${c.place}, ${c.country} (score ${c.score})`,
      5 + 7 * c.score);
    const li = document.createElement("li");
    li.textContent = `${fmt(c.lat, 4)}, ${fmt(c.lon, 4)} — ${c.place}, ${c.country} (score ${c.score})`;
    $("candidates").appendChild(li);
  });
  for (const n of r.neighbours) {
    const credit = [n.creator && `© ${n.creator}`, n.license].filter(Boolean).join(" · ");
    const img = el("img", { class: "neighbour-thumb", alt: n.image_id });
    img.src = n.thumb;
    $("neighbours").appendChild(el("figure", {}, img, el("figcaption", {},
      `${n.country || ""} ${fmt(n.lat, 2)}, ${fmt(n.lon, 2)} · sim ${n.similarity}`, el("br"), credit)));
  }
}

// ---- errors view -----------------------------------------------------------------------------------
let errorsMap = null;
const band = (km) => (km < 25 ? 0 : km < 200 ? 1 : km < 750 ? 2 : km < 2500 ? 3 : 4);

async function loadErrors() {
  const q = new URLSearchParams({ comparator: $("comparator").value, country: $("country").value });
  let r;
  try { r = await api(`/api/errors?${q}`); } catch (err) {
    $("errors-summary").replaceChildren(errorText(err.message)); return;
  }
  const option = (value, label, selected) => {
    const o = el("option", { value }, label);
    o.selected = selected;
    return o;
  };
  $("comparator").replaceChildren(...r.comparators.map((c) => option(c, c, c === r.comparator)));
  $("country").replaceChildren(option("", "all", !r.country),
    ...r.countries.map((c) => option(c.country, `${c.country} (${c.n})`, c.country === r.country)));
  // The server's figures: the same function computes eval.json's (evaluation/metrics.py distance_metrics).
  const f = r.figures;
  $("errors-summary").textContent = `${r.points.length} test images, evaluation ${r.evaluation}` + (f ?
    `; median error ${fmt(f.median_km, 2)} km, within 25 km ${f.acc_25km.toFixed(3)}, ` +
    `within 750 km ${f.acc_750km.toFixed(3)}` : "");
  errorsMap.clear();
  for (const p of r.points) {
    const c = errorsMap.marker(p.lat, p.lon, `error e${band(p.error_km)}`, `${p.image_id}: ${fmt(p.error_km, 0)} km`, 4);
    c.addEventListener("click", () => showError(p, c));
  }
}

function showError(p, circle) {
  for (const s of document.querySelectorAll("#errors-map circle.selected")) s.classList.remove("selected");
  circle.classList.add("selected");
  errorsMap.marks.querySelectorAll(".detail").forEach((el) => el.remove());
  errorsMap.marker(p.guess_lat, p.guess_lon, "model detail", "the guess", 6);
  errorsMap.link({ lat: p.lat, lon: p.lon }, { lat: p.guess_lat, lon: p.guess_lon }, "model detail");
  $("error-detail").replaceChildren(bold(p.image_id), el("br"),
    `truth ${fmt(p.lat, 3)}, ${fmt(p.lon, 3)} (${p.country})`, el("br"),
    `guess ${fmt(p.guess_lat, 3)}, ${fmt(p.guess_lon, 3)} (${p.guess_country})`, el("br"),
    "error ", bold(`${fmt(p.error_km, 1)} km`), `, ${fmt(p.points, 0)} points`);
  $("error-photo").src = `/api/test-image/${encodeURIComponent(p.image_id)}`;
  $("error-photo").hidden = false;
}

// ---- start -----------------------------------------------------------------------------------------
function show(view) {
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.view === view);
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${view}`;
  for (const m of [game.map, exploreMap, errorsMap]) if (m) m.apply();
  if (view === "errors" && !errorsMap.loaded) { errorsMap.loaded = true; loadErrors(); }
  history.replaceState(null, "", `#${view}`);
}

async function start() {
  const [info, topo] = await Promise.all([api("/api/info"), api("/static/vendor/countries-50m.json")]);
  WORLD = topojson.feature(topo, topo.objects.countries).features;
  const v = info.versions;
  $("versions").textContent = `model ${v.model} · index ${v.index} · dataset ${v.dataset_name} ${v.dataset} · ` +
    `${info.test_images} test images`;
  game.map = new WorldMap($("play-map"), { onClick: placeGuess });
  exploreMap = new WorldMap($("explore-map"));
  errorsMap = new WorldMap($("errors-map"));
  $("guess-button").addEventListener("click", submitGuess);
  $("next-button").addEventListener("click", nextRound);
  $("new-game-button").addEventListener("click", newGame);
  $("upload").addEventListener("change", (e) => e.target.files[0] && explore(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files[0]) explore(e.dataTransfer.files[0]);
  });
  $("comparator").addEventListener("change", () => { $("country").value = ""; loadErrors(); });
  $("country").addEventListener("change", loadErrors);
  for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => show(t.dataset.view));
  window.addEventListener("resize", () => [game.map, exploreMap, errorsMap].forEach((m) => m.apply()));
  show((location.hash || "#play").slice(1));
  document.body.dataset.ready = "1";
  await newGame();
}

start().catch((err) => { document.body.prepend(el("p", { class: "error" }, err.message)); }); // text, never HTML
