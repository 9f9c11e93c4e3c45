// The demo page: /v1/model once, then /v1/translate on each submit. Text from the model is
// put in with textContent only (never as HTML). Nothing is fetched from another origin.
"use strict";

const $ = (id) => document.getElementById(id);
let model = null;

// viridis at five stops, interpolated: weight 0 (dark purple) .. 1 (yellow)
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(w) {
  const x = Math.min(Math.max(w, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

function cell(tag, text, cls) {
  const el = document.createElement(tag);
  el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
  if (message) $("result").hidden = true;  // not the last line's result under this line's error
}

// a response's JSON, or null when its body is not JSON (a proxy's error page, uvicorn's own 400)
async function jsonOrNull(response) {
  const text = await response.text();
  try { return JSON.parse(text); } catch { return null; }
}

async function loadModel() {
  const response = await fetch("/v1/model");
  model = await response.json();
  $("languages").textContent = `${model.corpus}: ${model.source_language} → ${model.target_language}`;
  const c = model.checkpoint;
  $("model").textContent = `checkpoint ${c.name} (weights ${c.weights_sha256.slice(0, 12)}), ` +
    `${model.config.model.cell}, ${model.attention ? "Luong attention" : "no attention"}`;
  $("beam").value = model.beam_size;
  $("beam").max = model.limits.max_beam;
  $("nbest").value = Math.min(3, model.beam_size);
  $("attention").checked = model.attention;
  $("attention").disabled = !model.attention;
  $("source").maxLength = model.limits.max_chars;
}

// a piece as a label: whitespace made visible (a space is a piece of its own at character level)
const label = (piece) => (piece.trim() ? piece : piece.replace(/ /g, "␣") || "∅");

function showHeatmap(a) {
  const table = $("heatmap");
  table.replaceChildren();
  if (!a) { $("alignment").hidden = true; return; }
  const head = document.createElement("tr");
  head.append(cell("th", ""));
  for (const piece of a.source) head.append(cell("th", label(piece)));
  const thead = document.createElement("thead");
  thead.append(head);
  const tbody = document.createElement("tbody");
  a.target.forEach((piece, t) => {
    const row = document.createElement("tr");
    row.append(cell("th", label(piece)));
    for (const w of a.weights[t]) {
      const td = document.createElement("td");
      td.style.backgroundColor = viridis(w);
      td.title = w.toFixed(3);
      row.append(td);
    }
    tbody.append(row);
  });
  table.className = a.source.every((p) => p.length <= 1) ? "chars" : "";
  table.append(thead, tbody);
  $("alignment").hidden = false;
}

async function translate(event) {
  event.preventDefault();
  const beam = Number($("beam").value), nbest = Math.min(Number($("nbest").value), beam);
  const body = {text: [$("source").value], beam, nbest, attention: $("attention").checked};
  $("go").disabled = true;
  const start = performance.now();
  try {
    const response = await fetch("/v1/translate", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    const answer = await jsonOrNull(response);
    if (!response.ok || !answer) {
      showError((answer && answer.error) || `HTTP ${response.status} ${response.statusText}`.trim());
      return;
    }
    showError("");
    const t = answer.translations[0];
    $("translation").textContent = t.text;
    $("timing").textContent = `beam ${answer.beam}, ${Math.round(performance.now() - start)} ms`;
    const rows = t.nbest.map((h, i) => {
      const tr = document.createElement("tr");
      tr.append(cell("td", String(i + 1)), cell("td", h.text), cell("td", h.score.toFixed(4), "score"));
      return tr;
    });
    $("nbest-list").tBodies[0].replaceChildren(...rows);
    showHeatmap(t.attention);
    $("result").hidden = false;
  } catch (e) {
    showError(`the server did not answer: ${e}`);
  } finally {
    $("go").disabled = false;
  }
}

$("form").addEventListener("submit", translate);
loadModel().catch((e) => showError(`the server did not answer: ${e}`));
