// The edgemaker page: plain ES module, no build step. Every action is one call to the local API.
import { el, enc } from "./dom.js";
import { showRuns } from "./runs.js";
const $ = (sel, root = document) => root.querySelector(sel);
const pct = (x) => `${(100 * x).toFixed(1)}%`;
const mb = (n) => `${(n / 1e6).toFixed(2)} MB`;
const size = (n) => (n >= 1e6 ? mb(n) : `${Math.round(n / 1024)} kB`);

const state = { info: null, project: null, options: null, run: null, events: null, stream: null, audio: null };

// ---- API --------------------------------------------------------------------------------------
async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const res = await fetch(`/api/v1${path}`, init);
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({ error: { message: `${res.status} ${res.statusText}` } }));
  if (!res.ok) throw new Error(data.error ? data.error.message : `${res.status}`);
  return data;
}
let toastTimer;
function toast(message, error = false) {
  const t = $("#toast");
  t.textContent = message;
  t.className = error ? "toast error" : "toast";
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, error ? 9000 : 4000);
}
const guard = (fn) => async (...args) => { try { await fn(...args); } catch (e) { toast(e.message, true); } };

// ---- projects ---------------------------------------------------------------------------------
async function showProjects() {
  stopMedia();
  state.project = null;
  $("#view-project").hidden = true;
  $("#view-projects").hidden = false;
  $("#project-title").textContent = "";
  $("#home-path").textContent = state.info.home || "";
  const { projects } = await api("GET", "/projects");
  const list = $("#project-list");
  list.replaceChildren(...projects.map((p) => el("li", {}, el("button", { type: "button", onclick: () => openProject(p.name) },
    el("strong", {}, p.name), el("br"), el("span", { class: "muted" }, `${p.task === "image" ? "Images" : "Sounds"} · ${p.classes} classes`)))));
  if (!projects.length) list.append(el("li", { class: "muted" }, "No projects yet: create one below."));
}

async function openProject(name) {
  location.hash = `#/p/${enc(name)}`;
  const p = await api("GET", `/projects/${enc(name)}`);
  state.project = p;
  state.options = await api("GET", `/options?task=${p.task}`);
  $("#view-projects").hidden = true;
  $("#view-project").hidden = false;
  $("#project-title").textContent = `${p.name} · ${p.task === "image" ? "images" : "sounds"}`;
  $("#capture-start").textContent = p.task === "image" ? "Start camera" : "Start microphone";
  $("#preview-live").textContent = p.task === "image" ? "Live camera" : "Live microphone";
  fillOptions();
  renderClasses();
  await refreshRuns();
  if (p.active_run) follow(p.active_run.id);
}

async function reloadProject() {
  state.project = await api("GET", `/projects/${enc(state.project.name)}`);
  renderClasses();
}

// ---- data: classes and samples ------------------------------------------------------------------
function sampleUrl(label, file) {
  return `/api/v1/projects/${enc(state.project.name)}/samples/${enc(label)}/${enc(file)}`;
}

function renderClasses() {
  const p = state.project;
  const select = $("#capture-class");
  const chosen = select.value;
  select.replaceChildren(...p.classes.map((c) => el("option", { value: c.name }, c.name)));
  if (p.classes.some((c) => c.name === chosen)) select.value = chosen;
  const box = $("#classes");
  box.replaceChildren(...p.classes.map(classCard));
  if (!p.classes.length) box.append(el("p", { class: "muted" }, "Add a class for each thing to recognise, then add samples to it."));
}

function classCard(c) {
  const accept = state.project.task === "image" ? "image/*" : "audio/*,.wav,.flac,.ogg,.mp3,.aiff";
  const thumbs = el("div", { class: "thumbs", "aria-label": `Samples of ${c.name}` });
  const files = el("input", { type: "file", multiple: true, accept, class: "visually-hidden",
    onchange: guard(async (e) => { await upload(c.name, [...e.target.files]); e.target.value = ""; }) });
  const folder = el("input", { type: "file", multiple: true, webkitdirectory: true, class: "visually-hidden",
    onchange: guard(async (e) => { await upload(c.name, [...e.target.files]); e.target.value = ""; }) });
  const drop = el("div", { class: "drop", tabindex: "0" }, "Drop files or a folder here");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", guard(async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    await upload(c.name, await droppedFiles(e.dataTransfer));
  }));
  const card = el("section", { class: "card class-card", "data-class": c.name, "aria-label": `Class ${c.name}` },
    el("header", {},
      el("h3", {}, c.name), el("span", { class: "count", "aria-label": "samples" }, String(c.count)),
      el("button", { type: "button", onclick: guard(() => renameClass(c.name)), "aria-label": `Rename ${c.name}` }, "Rename"),
      el("button", { type: "button", class: "danger", onclick: guard(() => deleteClass(c.name)), "aria-label": `Delete ${c.name}` }, "Delete")),
    el("div", { class: "row" },
      el("label", { class: "button" }, "Upload files", files),
      el("label", { class: "button" }, "Upload a folder", folder)),
    drop, thumbs);
  loadThumbs(c.name, thumbs);
  return card;
}

async function loadThumbs(label, box) {
  const { samples } = await api("GET", `/projects/${enc(state.project.name)}/classes/${enc(label)}/samples`);
  const shown = samples.slice(-120).reverse();
  box.replaceChildren(...shown.map((s) => {
    const url = sampleUrl(label, s.name);
    const del = el("button", { type: "button", "aria-label": `Delete ${s.name}`, title: "Delete",
      onclick: guard(async () => {
        await api("DELETE", `/projects/${enc(state.project.name)}/samples/${enc(label)}/${enc(s.name)}`);
        await reloadProject();
      }) }, "×");
    if (state.project.task === "image") {
      return el("div", { class: "thumb" }, el("img", { src: url, alt: s.name, loading: "lazy", title: s.name }), del);
    }
    const canvas = el("canvas", { width: "128", height: "64", title: s.name, role: "img", "aria-label": `Waveform of ${s.name}` });
    drawWaveform(url, canvas);
    const play = el("button", { type: "button", class: "play", "aria-label": `Play ${s.name}`, onclick: () => new Audio(url).play() }, "▶");
    return el("div", { class: "thumb" }, canvas, play, del);
  }));
  if (samples.length > shown.length) box.append(el("p", { class: "muted" }, `… and ${samples.length - shown.length} more`));
}

let waveCtx;
async function drawWaveform(url, canvas) {
  try {
    waveCtx = waveCtx || new OfflineAudioContext(1, 1, 16000);
    const buf = await waveCtx.decodeAudioData(await (await fetch(url)).arrayBuffer());
    const data = buf.getChannelData(0);
    const g = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, step = Math.max(1, Math.floor(data.length / w));
    g.fillStyle = "#eef1f4"; g.fillRect(0, 0, w, h);
    g.fillStyle = "#0b62d6";
    for (let x = 0; x < w; x++) {
      let peak = 0;
      for (let i = x * step; i < Math.min(data.length, (x + 1) * step); i++) peak = Math.max(peak, Math.abs(data[i]));
      const y = Math.max(1, peak * h);
      g.fillRect(x, (h - y) / 2, 1, y);
    }
  } catch { /* a clip the browser cannot decode keeps a blank tile; the server has checked it parses */ }
}

async function droppedFiles(dt) {
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...dt.files];
  const out = [];
  async function walk(entry) {
    if (entry.isFile) out.push(await new Promise((ok, bad) => entry.file(ok, bad)));
    else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
        if (!batch.length) break;
        for (const e of batch) await walk(e);
      }
    }
  }
  for (const e of entries) await walk(e);
  return out;
}

async function upload(label, files, quiet = false) {
  let added = 0;
  const rejected = [];
  for (let i = 0; i < files.length; i += 50) {
    const form = new FormData();
    for (const f of files.slice(i, i + 50)) form.append("files", f, f.name);
    try {
      const r = await api("POST", `/projects/${enc(state.project.name)}/classes/${enc(label)}/samples`, form);
      added += r.added.length;
      rejected.push(...r.rejected.map((x) => x.reason));
    } catch (e) { rejected.push(e.message); }
    if (files.length > 50 && !quiet) toast(`uploading… ${Math.min(i + 50, files.length)} of ${files.length}`);
  }
  await reloadProject();
  if (rejected.length) toast(`${added} added; ${rejected.length} rejected: ${rejected[0]}`, true);
  else if (!quiet) toast(`${added} sample${added === 1 ? "" : "s"} added to ${label}`);
}

async function renameClass(name) {
  const next = prompt(`New name for class "${name}"`, name);
  if (!next || next === name) return;
  await api("PATCH", `/projects/${enc(state.project.name)}/classes/${enc(name)}`, { name: next });
  await reloadProject();
}

async function deleteClass(name) {
  if (!confirm(`Delete class "${name}" and all its samples?`)) return;
  await api("DELETE", `/projects/${enc(state.project.name)}/classes/${enc(name)}`);
  await reloadProject();
}

// ---- capture: webcam and microphone -------------------------------------------------------------
function stopMedia() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  if (state.audio) state.audio.ctx.close();
  state.stream = null; state.audio = null;
  previewing = false;
  $("#capture-image").hidden = $("#capture-audio").hidden = true;
  $("#capture-stop").hidden = $("#preview-stop").hidden = true;
  burstStop();
  $("#capture-start").hidden = $("#preview-live").hidden = false;
  $("#preview-video").hidden = true;
}

async function startCamera(video) {
  stopMedia();
  state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  video.srcObject = state.stream;
  await video.play();
}

async function startMicrophone() {
  stopMedia();
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const ctx = new AudioContext();
  await ctx.audioWorklet.addModule("/static/recorder-worklet.js");
  const tap = new AudioWorkletNode(ctx, "tap");
  const mute = ctx.createGain();
  mute.gain.value = 0;
  ctx.createMediaStreamSource(stream).connect(tap).connect(mute).connect(ctx.destination);
  const audio = { ctx, rate: ctx.sampleRate, ring: new Float32Array(ctx.sampleRate * 3), pos: 0, filled: 0, level: 0, listeners: new Set() };
  tap.port.onmessage = (e) => {
    const block = e.data;
    let sum = 0;
    for (let i = 0; i < block.length; i++) {
      sum += block[i] * block[i];
      audio.ring[audio.pos] = block[i];
      audio.pos = (audio.pos + 1) % audio.ring.length;
    }
    audio.filled = Math.min(audio.ring.length, audio.filled + block.length);
    // Meter ballistics: rise at once, fall over ~a quarter second, so a short click stays visible.
    const fall = Math.exp(-block.length / audio.rate / 0.25);
    audio.level = Math.max(Math.min(1, Math.sqrt(sum / block.length) * 4), audio.level * fall);
    $("#level").value = audio.level;
    for (const f of audio.listeners) f(block);
  };
  state.stream = stream;
  state.audio = audio;
}

function lastSeconds(audio, seconds) {
  const n = Math.min(audio.filled, Math.round(seconds * audio.rate));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = audio.ring[(audio.pos - n + i + audio.ring.length) % audio.ring.length];
  return out;
}

function wavBlob(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (o, s) => { for (let i = 0; i < s.length; i++) view.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE"); text(12, "fmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, samples[i])) * 0x7fff, true);
  return new Blob([view], { type: "audio/wav" });
}

function frameBlob(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth || 640;
  canvas.height = video.videoHeight || 480;
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.9));
}

const stamp = () => new Date().toISOString().replace(/[-:.TZ]/g, "").slice(0, 17);

async function snap() {
  const label = $("#capture-class").value;
  if (!label) throw new Error("add a class first");
  const blob = await frameBlob($("#capture-video"));
  await upload(label, [new File([blob], `capture-${stamp()}.jpg`, { type: "image/jpeg" })], true);
}

let burstTimer = null, burstCount = 0;
function burstStart() {
  if (burstTimer || !state.stream) return;
  burstCount = 0;
  $("#burst").classList.add("recording");
  const tick = async () => {
    try { await snap(); burstCount++; $("#burst-count").textContent = `${burstCount} photos`; } catch (e) { toast(e.message, true); burstStop(); return; }
    if (burstTimer) burstTimer = setTimeout(tick, 150);
  };
  burstTimer = setTimeout(tick, 0);
}
function burstStop() {
  if (!burstTimer) return;
  clearTimeout(burstTimer);
  burstTimer = null;
  $("#burst").classList.remove("recording");
}

async function recordClip() {
  const label = $("#capture-class").value;
  if (!label) throw new Error("add a class first");
  const audio = state.audio;
  if (!audio) throw new Error("start the microphone first");
  const seconds = Number($("#clip-seconds").value);
  const want = Math.round(seconds * audio.rate);
  const chunks = [];
  let got = 0;
  const button = $("#record");
  button.disabled = true;
  button.classList.add("recording");
  $("#record-state").textContent = `recording ${seconds} s…`;
  await new Promise((done) => {
    const listen = (block) => {
      chunks.push(block.slice(0, want - got));
      got += Math.min(block.length, want - got);
      if (got >= want) { audio.listeners.delete(listen); done(); }
    };
    audio.listeners.add(listen);
  });
  button.disabled = false;
  button.classList.remove("recording");
  const samples = new Float32Array(want);
  let o = 0;
  for (const c of chunks) { samples.set(c, o); o += c.length; }
  $("#record-state").textContent = "saved";
  await upload(label, [new File([wavBlob(samples, audio.rate)], `rec-${stamp()}.wav`, { type: "audio/wav" })], true);
}

// ---- training -----------------------------------------------------------------------------------
function fillOptions() {
  const o = state.options;
  for (const k of ["epochs", "batch_size", "learning_rate", "dropout"]) $(`#opt-${k}`).value = o.defaults[k];
  $("#opt-augment").value = "";
  $("#opt-fine_tune").value = "";
  $("#opt-device").replaceChildren(el("option", { value: "" }, "any (no size budget)"),
    ...(o.devices || []).map((d) => el("option", { value: d.name, title: d.note },
      `${d.title}: model ≤ ${size(d.max_flash_bytes)} flash, ≤ ${size(d.max_ram_bytes)} RAM`)));
  $("#opt-auto").checked = false;
  $("#opt-auto_minutes").value = o.auto ? o.auto.default_minutes : 10;
  $("#opt-backbone").replaceChildren(el("option", { value: "" }, o.backbones.length > 1 ? "automatic (best on validation)" : "default"),
    ...o.backbones.map((b) => el("option", { value: b.name }, `${b.name} (${(b.parameters / 1e6).toFixed(1)}M)`)));
  $("#formats").replaceChildren(el("legend", {}, "Export formats"), ...o.formats.map((f) =>
    el("label", {}, el("input", { type: "checkbox", value: f, checked: o.default_formats.includes(f) }), ` ${f}`)));
}

function trainRequest() {
  const augment = $("#opt-augment").value;
  const options = augment ? { augment: augment === "on" } : {};
  if ($("#opt-auto").checked) options.auto_minutes = Number($("#opt-auto_minutes").value);
  const fineTune = $("#opt-fine_tune").value;
  if (fineTune) options.fine_tune = fineTune === "auto" ? "auto" : Number(fineTune);
  if ($("#opt-device").value) options.device = $("#opt-device").value;
  for (const k of ["epochs", "batch_size", "learning_rate", "dropout"]) options[k] = Number($(`#opt-${k}`).value);
  if ($("#opt-backbone").value) options.backbone = $("#opt-backbone").value;
  const formats = [...document.querySelectorAll("#formats input:checked")].map((i) => i.value);
  return { options, formats };
}

async function train() {
  const { run } = await api("POST", `/projects/${enc(state.project.name)}/train`, trainRequest());
  follow(run);
}

const chart = { epochs: [] };
function follow(runId) {
  if (state.events) state.events.close();
  state.run = runId;
  chart.epochs = [];
  $("#log").replaceChildren();
  $("#progress-box").hidden = false;
  $("#train").disabled = true;
  $("#cancel").hidden = false;
  $("#train-state").textContent = "training…";
  drawChart();
  const source = new EventSource(`/api/v1/projects/${enc(state.project.name)}/runs/${runId}/events`);
  state.events = source;
  source.onmessage = (m) => {
    const e = JSON.parse(m.data);
    if (e.type === "progress") {
      $("#stage").textContent = `${e.stage}: ${e.done} / ${e.total}`;
      $("#stage-progress").value = e.total ? e.done / e.total : 0;
    } else if (e.type === "epoch") {
      chart.epochs.push(e);
      $("#stage").textContent = `training head (${e.backbone}): epoch ${e.epoch}, val accuracy ${e.val_accuracy == null ? "–" : pct(e.val_accuracy)}`;
      drawChart();
    } else if (e.type === "log") {
      $("#log").append(el("li", {}, e.message));
      $("#log").scrollTop = 1e9;
    }
  };
  source.addEventListener("end", guard(async (m) => {
    source.close();
    state.events = null;
    const status = JSON.parse(m.data);
    $("#train").disabled = false;
    $("#cancel").hidden = true;
    const msg = status.state === "done" ? "done" : status.state === "failed" ? `failed: ${status.error}` : status.state;
    $("#train-state").textContent = msg;
    $("#stage").textContent = msg;
    toast(`training ${msg}`, status.state !== "done");
    await refreshRuns(status.state === "done" ? status.id : undefined);
  }));
}

function drawChart() {
  const c = $("#chart"), g = c.getContext("2d");
  const w = c.width, h = c.height, pad = 30;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#d8dee6"; g.fillStyle = "#5b6675"; g.font = "12px system-ui";
  for (let i = 0; i <= 4; i++) { const y = pad / 2 + (h - pad) * i / 4; g.beginPath(); g.moveTo(pad, y); g.lineTo(w - 8, y); g.stroke(); g.fillText(`${100 - 25 * i}%`, 0, y + 4); }
  const byBackbone = {};
  for (const e of chart.epochs) (byBackbone[e.backbone] = byBackbone[e.backbone] || []).push(e);
  const series = Object.values(byBackbone).at(-1) || [];
  if (!series.length) { g.fillText("accuracy per epoch appears here", pad + 8, h / 2); return; }
  const n = Math.max(10, series.length);
  const line = (key, color, scale = 1) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    series.forEach((e, i) => {
      const v = e[key]; if (v == null) return;
      const x = pad + (w - pad - 8) * i / (n - 1), y = pad / 2 + (h - pad) * (1 - Math.min(1, v * scale));
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke(); g.lineWidth = 1;
  };
  line("train_accuracy", "#8cb8f5"); line("val_accuracy", "#0b62d6"); line("val_loss", "#b42318", 1 / 3);
  g.fillStyle = "#0b62d6"; g.fillText(`${series[0].backbone}: ■ val accuracy`, pad + 8, h - 4);
  g.fillStyle = "#8cb8f5"; g.fillText("■ train accuracy", pad + 230, h - 4);
  g.fillStyle = "#b42318"; g.fillText("■ val loss (÷3)", pad + 360, h - 4);
}

// ---- results and export ---------------------------------------------------------------------------
async function refreshRuns(select) {
  const { runs } = await api("GET", `/projects/${enc(state.project.name)}/runs`);
  const done = runs.filter((r) => r.state === "done");
  const sel = $("#run-select");
  sel.replaceChildren(...done.map((r) => el("option", { value: r.id }, `${r.id}`)));
  if (select) sel.value = select;
  if (done.length) await showRun(sel.value);
  else {
    $("#results").replaceChildren(el("p", { class: "muted" }, "Train the project to see results."));
    $("#exports").replaceChildren(el("p", { class: "muted" }, "Train the project to export models."));
    $("#preview-model").textContent = "Train the project first: the preview runs its int8 model.";
  }
}

function runFile(runId, name) { return `/api/v1/projects/${enc(state.project.name)}/runs/${runId}/files/${enc(name)}`; }

async function showRun(runId) {
  const r = await api("GET", `/projects/${enc(state.project.name)}/runs/${runId}`);
  const m = r.metrics;
  $("#report-link").href = runFile(runId, "report.html");
  const int8 = m.exports.find((e) => e.format === "onnx-int8") || m.exports[0];
  const cards = el("div", { class: "cards" },
    el("div", { class: "card" }, "test accuracy (float)", el("b", {}, pct(m.test.accuracy))),
    int8 ? el("div", { class: "card" }, `${int8.format} accuracy`, el("b", {}, pct(int8.test_accuracy))) : "",
    int8 ? el("div", { class: "card" }, `${int8.format} size`, el("b", {}, mb(int8.size_bytes))) : "",
    el("div", { class: "card" }, "train / val / test", el("b", {}, Object.values(m.splits).join(" / "))),
    el("div", { class: "card" }, "backbone", el("b", {}, m.backbone.input_size ? `${m.backbone.name} @ ${m.backbone.input_size}px` : m.backbone.name)));
  const sel = m.training.head_selection;
  const chosen = el("div", {}, el("h2", {}, "What was chosen"),
    el("p", {}, sel ? sel.summary : "head settings: defaults", ". ",
      `Augmented views used: ${m.training.augmented_views}.`, m.fine_tune ? ` Fine-tune depth: ${m.fine_tune.chosen_k ?? "–"} (asked: ${m.fine_tune.requested}).` : ""));
  if (m.auto) {
    chosen.append(el("p", {}, `Automatic search (${Math.round(m.auto.budget_s / 60)} minute budget, ${m.auto.seconds.toFixed(0)} s): chose `,
      el("b", {}, m.auto.winner), `, ${m.auto.why}.`));
    chosen.append(el("div", { class: "scroll" }, el("table", { "aria-label": "Automatic search candidates" },
      el("tr", {}, ...["candidate", "settings", "val accuracy", "seconds", "predicted int8 size"].map((h) => el("th", {}, h))),
      ...m.auto.candidates.map((c) => el("tr", {}, el("td", {}, c.name), el("td", {}, Object.entries(c.settings).map(([k, v]) => `${k} ${v}`).join(", ")),
        el("td", { class: "num" }, pct(c.val_accuracy)), el("td", { class: "num" }, c.seconds.toFixed(1)), el("td", { class: "num" }, mb(c.predicted.flash_bytes)))),
      ...m.auto.skipped.map((c) => el("tr", {}, el("td", {}, c.name), el("td", { colspan: "4", class: "muted" }, `skipped: ${c.reason}`))))));
  }
  const per = el("table", {}, el("tr", {}, ...["class", "precision", "recall", "F1", "test samples"].map((h) => el("th", {}, h))),
    ...Object.entries(m.per_class).map(([c, v]) => el("tr", {}, el("td", {}, c), el("td", { class: "num" }, v.precision.toFixed(3)),
      el("td", { class: "num" }, v.recall.toFixed(3)), el("td", { class: "num" }, v.f1.toFixed(3)), el("td", { class: "num" }, v.support))));
  const cm = el("table", { "aria-label": "Confusion matrix" }, el("tr", {}, el("th", {}, "true ↓ / predicted →"), ...m.classes.map((c) => el("th", {}, c))),
    ...m.confusion_matrix.map((row, i) => el("tr", {}, el("th", {}, m.classes[i]), ...row.map((v, j) => el("td", { class: "num", style: v && i !== j ? "color:#b42318;font-weight:600" : "" }, v)))));
  const wrong = m.misclassified || [];
  const mis = wrong.length ? el("div", { class: "thumbs wide" }, ...wrong.map((w) => {
    const [label, ...rest] = w.path.split("/");
    const url = sampleUrl(label, rest.join("/"));
    const caption = `${w.label} → ${w.predicted} (${pct(w.confidence)})`;
    const media = state.project.task === "image" ? el("img", { src: url, alt: `${w.path}: ${caption}` })
      : el("button", { type: "button", onclick: () => new Audio(url).play(), "aria-label": `Play ${w.path}` }, "▶ play");
    return el("figure", { class: "thumb", title: w.path }, media, el("figcaption", {}, caption));
  })) : el("p", { class: "muted" }, "No test sample was misclassified.");
  $("#results").replaceChildren(...m.warnings.map((w) => el("p", { class: "warn", role: "alert" }, `⚠ ${w}`)), cards, chosen,
    el("h2", {}, "Per class (test split)"), el("div", { class: "scroll" }, per),
    el("h2", {}, "Confusion matrix"), el("div", { class: "scroll" }, cm),
    el("h2", {}, `Misclassified (${wrong.length})`), mis);
  renderExports(runId, m, r.files);
  const model = m.exports.some((e) => e.format === "onnx-int8") ? "model_int8.onnx" : "model_fp32.onnx";
  $("#preview-model").textContent = `Preview runs ${model} of run ${runId}, the file you download.`;
}

function renderExports(runId, m, files) {
  const rows = m.exports.map((e) => el("tr", {},
    el("td", {}, e.format), el("td", {}, el("a", { href: runFile(runId, e.path), download: e.path }, e.path)),
    el("td", { class: "num" }, mb(e.size_bytes)), el("td", { class: "num" }, pct(e.test_accuracy)),
    el("td", { class: "num" }, `${e.latency_ms.toFixed(1)} ms`), el("td", { class: "num" }, e.peak_ram_bytes ? mb(e.peak_ram_bytes) : "–")));
  const table = el("table", {}, el("tr", {}, ...["format", "file (download)", "size", "test accuracy", "latency", "peak RAM"].map((h) => el("th", {}, h))), ...rows);
  const names = new Set(m.exports.map((e) => e.path));
  const other = files.filter((f) => !names.has(f.name)).map((f) => el("li", {}, el("a", { href: runFile(runId, f.name), download: f.name }, f.name), ` (${mb(f.size_bytes)})`));
  // Code to copy, generated by the server from each file's own metadata (the exact preprocessing).
  const models = ["model_int8.onnx", "model_fp32.onnx"].filter((n) => names.has(n)).slice(0, 1)
    .concat(names.has("model_int8.tflite") ? ["model_int8.tflite"] : []);
  const use = el("div", { id: "snippets" }, el("p", { class: "muted" }, "Loading the code for these files…"));
  $("#exports").replaceChildren(el("p", { class: "muted" }, "Every file below was re-loaded and run on the test split by its own runtime."),
    el("div", { class: "scroll" }, table), el("h2", {}, "Other files"), el("ul", {}, ...other),
    el("h2", {}, "Use it"), use);
  showSnippets(runId, models, use).catch((e) => use.replaceChildren(el("p", { class: "warn" }, `Code snippets unavailable: ${e.message}`)));
}

async function showSnippets(runId, models, box) {
  const shown = new Set();
  const parts = [];
  for (const name of models) {
    const r = await api("GET", `/projects/${enc(state.project.name)}/runs/${runId}/snippets/${enc(name)}`);
    for (const s of r.snippets) {
      const once = s.key === "edgemaker-cli" || s.key === "http-api";  // the same for every file: show it once
      if (once && shown.has(s.key)) continue;
      shown.add(s.key);
      parts.push(el("h3", {}, once ? s.title : `${s.title}: ${name}`), el("pre", { "data-snippet": s.key, "data-file": name }, s.code));
    }
  }
  box.replaceChildren(...parts);
}

// ---- preview --------------------------------------------------------------------------------------
let previewing = false;
function renderBars(result) {
  const entries = Object.entries(result.probabilities).sort((a, b) => a[0].localeCompare(b[0]));
  const best = result.top[0].label;
  $("#bars").replaceChildren(...entries.map(([label, p]) => el("div", { class: `bar${label === best ? " top" : ""}`, "data-label": label },
    el("span", {}, label), el("div", { class: "track", role: "meter", "aria-valuemin": "0", "aria-valuemax": "1", "aria-valuenow": p.toFixed(3), "aria-label": label },
      el("div", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })), el("span", {}, pct(p)))));
}

function predictPath() {
  return state.info.mode === "model" ? "/predict" : `/predict?project_name=${enc(state.project.name)}`;
}

async function classify(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  return api("POST", predictPath(), form);
}

async function classifyFile(file) {
  stopMedia();  // a dropped file replaces the live view; a late live result must not overwrite it
  const result = await classify(file, file.name);
  renderBars(result);
  $("#preview-note").textContent = `${file.name}: ${result.top[0].label} (${pct(result.top[0].probability)})`;
}

async function livePreview() {
  const task = state.info.mode === "model" ? state.info.model.modality : state.project.task;
  if (task === "image") {
    const video = $("#preview-video");
    await startCamera(video);
    video.hidden = false;
  } else await startMicrophone();
  previewing = true;
  $("#preview-live").hidden = true;
  $("#preview-stop").hidden = false;
  let frames = 0;
  const started = performance.now();
  while (previewing) {
    try {
      let result = null;
      if (task === "image") result = await classify(await frameBlob($("#preview-video")), "frame.jpg");
      else {
        await new Promise((ok) => setTimeout(ok, 400));
        if (state.audio && state.audio.filled) result = await classify(wavBlob(lastSeconds(state.audio, 2), state.audio.rate), "live.wav");
      }
      if (!previewing) break;  // stopped while this frame was on its way: drop it
      if (result) renderBars(result);
      frames++;
      $("#preview-note").textContent = `${(frames / ((performance.now() - started) / 1000)).toFixed(1)} predictions/s`;
    } catch (e) { toast(e.message, true); break; }
  }
}

// ---- wiring -----------------------------------------------------------------------------------------
function selectTab(id) {
  for (const t of document.querySelectorAll('[role="tab"]')) {
    const on = t.id === id;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(`#${t.getAttribute("aria-controls")}`).hidden = !on;
  }
}

function wire() {
  $("#home-link").addEventListener("click", guard(async (e) => { e.preventDefault(); location.hash = ""; if (state.info.mode === "projects") await showProjects(); }));
  $("#new-project").addEventListener("submit", guard(async (e) => {
    e.preventDefault();
    const task = new FormData(e.target).get("task");
    const p = await api("POST", "/projects", { name: $("#new-project-name").value, task });
    e.target.reset();
    await openProject(p.name);
  }));
  $("#new-class").addEventListener("submit", guard(async (e) => {
    e.preventDefault();
    const { name } = await api("POST", `/projects/${enc(state.project.name)}/classes`, { name: $("#new-class-name").value });
    $("#new-class-name").value = "";
    await reloadProject();
    $("#capture-class").value = name;
  }));
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((t, i) => {
    t.addEventListener("click", () => selectTab(t.id));
    t.addEventListener("keydown", (e) => {
      const d = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (d) { const next = tabs[(i + d + tabs.length) % tabs.length]; next.focus(); selectTab(next.id); }
    });
  });
  $("#capture-start").addEventListener("click", guard(async () => {
    if (state.project.task === "image") { await startCamera($("#capture-video")); $("#capture-image").hidden = false; }
    else { await startMicrophone(); $("#capture-audio").hidden = false; }
    $("#capture-start").hidden = true;
    $("#capture-stop").hidden = false;
  }));
  $("#capture-stop").addEventListener("click", stopMedia);
  $("#snap").addEventListener("click", guard(async () => { await snap(); toast("photo added"); }));
  const burst = $("#burst");
  burst.addEventListener("pointerdown", (e) => { e.preventDefault(); burstStart(); });
  for (const ev of ["pointerup", "pointerleave", "pointercancel"]) burst.addEventListener(ev, burstStop);
  burst.addEventListener("keydown", (e) => { if ((e.key === " " || e.key === "Enter") && !e.repeat) { e.preventDefault(); burstStart(); } });
  burst.addEventListener("keyup", (e) => { if (e.key === " " || e.key === "Enter") burstStop(); });
  $("#record").addEventListener("click", guard(recordClip));
  $("#train").addEventListener("click", guard(train));
  $("#cancel").addEventListener("click", guard(async () => {
    await api("POST", `/projects/${enc(state.project.name)}/runs/${state.run}/cancel`);
    $("#train-state").textContent = "cancelling…";
  }));
  $("#run-select").addEventListener("change", guard(async (e) => showRun(e.target.value)));
  $("#tab-runs").addEventListener("click", guard(async () => showRuns(state.project.name, $("#runs"))));
  $("#preview-live").addEventListener("click", guard(livePreview));
  $("#preview-stop").addEventListener("click", stopMedia);
  $("#preview-file").addEventListener("change", guard(async (e) => { const f = e.target.files[0]; if (f) await classifyFile(f); e.target.value = ""; }));
  const drop = $("#preview-drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", guard(async (e) => { e.preventDefault(); drop.classList.remove("over"); const f = e.dataTransfer.files[0]; if (f) await classifyFile(f); }));
}

async function start() {
  wire();
  state.info = await api("GET", "/info");
  if (state.info.mode === "model") {  // `edgemaker serve --model`: the preview alone
    $("#view-project").hidden = false;
    $("#project-title").textContent = state.info.model.file;
    for (const t of ["tab-data", "tab-train", "tab-results", "tab-export", "tab-runs"]) $(`#${t}`).hidden = true;
    selectTab("tab-preview");
    $("#preview-live").textContent = state.info.model.modality === "image" ? "Live camera" : "Live microphone";
    $("#preview-model").textContent = `Serving ${state.info.model.file}: ${state.info.model.labels.join(", ")}`;
    return;
  }
  const m = location.hash.match(/^#\/p\/(.+)$/);
  if (m) await openProject(decodeURIComponent(m[1])).catch(async (e) => { toast(e.message, true); await showProjects(); });
  else await showProjects();
}

start().catch((e) => toast(e.message, true));
