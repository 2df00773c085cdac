// The Runs tab: every run side by side, two runs compared, and the project's compare/curve results.
// Reads GET /history and /history/compare (web/history.py); numbers arrive raw, formatted here.
import { el, enc } from "./dom.js";

async function get(path) {
  const res = await fetch(`/api/v1${path}`);
  const data = await res.json().catch(() => ({ error: { message: `${res.status} ${res.statusText}` } }));
  if (!res.ok) throw new Error(data.error ? data.error.message : `${res.status}`);
  return data;
}

const GROUPS = [["setting", "Settings"], ["accuracy", "Accuracy"], ["size", "Size"], ["time", "Time"]];

function fmt(v, unit) {
  if (v == null) return "–";
  if (typeof v !== "number") return String(v);
  if (unit === "fraction") return `${(100 * v).toFixed(1)}%`;
  if (unit === "bytes") return v >= 1e5 ? `${(v / 1e6).toFixed(2)} MB` : `${(v / 1e3).toFixed(1)} KB`;
  if (unit === "seconds") return `${v.toFixed(v < 10 ? 2 : 1)} s`;
  if (unit === "ms") return `${v.toFixed(2)} ms`;
  return String(v);
}

function fmtDelta(row) {
  const d = row.delta;
  if (d == null) return row.differs ? "changed" : "";
  if (d === 0) return "";
  const sign = d > 0 ? "+" : "−";
  const abs = Math.abs(d);
  let text;
  if (row.unit === "fraction") text = `${sign}${(100 * abs).toFixed(1)} points`;
  else if (row.unit === "bytes" || row.unit === "seconds" || row.unit === "ms") text = `${sign}${fmt(abs, row.unit)}`;
  else text = `${sign}${Number(abs.toPrecision(4))}`;
  if ((row.unit === "bytes" || row.unit === "seconds") && row.a > 0) text += ` (×${(row.b / row.a).toFixed(2)})`;
  return text;
}

const short = (id) => id.slice(4, 8) + "-" + id.slice(9, 15);  // MMDD-HHMMSS: enough to tell runs apart

export async function showRuns(project, box) {
  box.replaceChildren(el("p", { class: "muted" }, "Loading runs…"));
  const h = await get(`/projects/${enc(project)}/history`);
  const parts = [el("h2", {}, `Runs (${h.runs.length})`)];
  if (!h.runs.length) parts.push(el("p", { class: "muted" }, "No runs yet: train the project on the Train tab."));
  else parts.push(sideBySide(h.runs), compareForm(project, h.runs));
  parts.push(experiments(h.experiments));
  box.replaceChildren(...parts);
}

function sideBySide(runs) {
  const keys = new Map();  // key -> item (label, group, unit), in first-seen order
  for (const r of runs) for (const i of [...r.settings, ...r.results]) if (!keys.has(i.key)) keys.set(i.key, i);
  const value = (r, key) => [...r.settings, ...r.results].find((i) => i.key === key);
  const head = el("tr", {}, el("th", {}, "run"), ...runs.map((r) => el("th", { scope: "col", "data-run": r.id },
    r.report ? el("a", { href: r.report, target: "_blank", rel: "noopener", title: `report of ${r.id}` }, short(r.id)) : short(r.id),
    el("br"), el("span", { class: r.state === "done" ? "muted" : "warn" }, r.state))));
  const rows = [head];
  for (const [group, title] of GROUPS) {
    const inGroup = [...keys.values()].filter((i) => i.group === group);
    if (!inGroup.length) continue;
    rows.push(el("tr", { class: "group" }, el("th", { colspan: String(runs.length + 1) }, title)));
    for (const item of inGroup) {
      const vals = runs.map((r) => value(r, item.key));
      const shown = new Set(vals.filter(Boolean).map((i) => JSON.stringify(i.value)));
      const differs = shown.size > 1 || (shown.size === 1 && vals.some((v) => !v) && group === "setting");
      rows.push(el("tr", { class: differs && group === "setting" ? "differs" : "", "data-key": item.key },
        el("th", { scope: "row" }, item.label),
        ...vals.map((v) => el("td", { class: v && typeof v.value === "number" ? "num" : "" }, v ? fmt(v.value, v.unit) : "–"))));
    }
  }
  return el("div", { class: "scroll" }, el("table", { class: "runs", "aria-label": "Runs side by side" }, ...rows));
}

function compareForm(project, runs) {
  const options = () => runs.map((r) => el("option", { value: r.id }, `${r.id} (${r.state})`));
  const a = el("select", { id: "compare-a" }, ...options());
  const b = el("select", { id: "compare-b" }, ...options());
  if (runs.length > 1) { a.value = runs[1].id; b.value = runs[0].id; }  // older as the reference, newer compared
  const only = el("input", { type: "checkbox", id: "compare-only", checked: true });
  const out = el("div", { id: "comparison", "aria-live": "polite" });
  const run = async () => {
    try {
      const c = await get(`/projects/${enc(project)}/history/compare?a=${enc(a.value)}&b=${enc(b.value)}`);
      out.replaceChildren(...comparison(c, only.checked));
    } catch (e) { out.replaceChildren(el("p", { class: "warn" }, e.message)); }
  };
  only.addEventListener("change", () => { if (out.childElementCount) run(); });
  return el("div", { class: "card" }, el("h2", {}, "Compare two runs"),
    el("div", { class: "row" }, el("label", {}, "Run A ", a), el("label", {}, "Run B ", b),
      el("button", { type: "button", class: "primary", onclick: run }, "Compare"),
      el("label", { class: "check" }, only, " only what differs")), out);
}

function comparison(c, onlyDiffering) {
  const summary = el("p", { id: "compare-summary" }, el("b", {}, `${c.differing_settings} setting${c.differing_settings === 1 ? "" : "s"}`),
    ` and ${c.differing_results} result${c.differing_results === 1 ? "" : "s"} differ between A (${c.a.id}) and B (${c.b.id}).`);
  const rows = [el("tr", {}, el("th", {}, ""), el("th", {}, `A · ${short(c.a.id)}`), el("th", {}, `B · ${short(c.b.id)}`), el("th", {}, "B − A"))];
  for (const [group, title] of GROUPS) {
    const inGroup = c.rows.filter((r) => r.group === group && (r.differs || !onlyDiffering));
    if (!inGroup.length) continue;
    rows.push(el("tr", { class: "group" }, el("th", { colspan: "4" }, title)));
    for (const r of inGroup) {
      const cls = (side) => ["num", r.better === side ? "better" : ""].join(" ");
      rows.push(el("tr", { class: r.differs ? "differs" : "", "data-key": r.key },
        el("th", { scope: "row" }, r.label),
        el("td", { class: cls("a") }, fmt(r.a, r.unit)), el("td", { class: cls("b") }, fmt(r.b, r.unit)),
        el("td", { class: "num delta" }, fmtDelta(r))));
    }
  }
  if (rows.length === 1) return [summary, el("p", { class: "muted" }, "The two runs have the same settings and results.")];
  return [summary, el("div", { class: "scroll" }, el("table", { class: "runs", "aria-label": "Comparison" }, ...rows))];
}

function experiments(list) {
  const parts = [el("h2", {}, `Experiments (${list.length})`)];
  if (!list.length) {
    parts.push(el("p", { class: "muted" }, "None yet: ", el("code", {}, "edgemaker compare"), " and ", el("code", {}, "edgemaker curve"),
      " results written under this project's ", el("code", {}, "experiments/<name>/"), " folder are listed here."));
    return el("div", { id: "experiments" }, ...parts);
  }
  parts.push(el("ul", { class: "experiments" }, ...list.map((x) => {
    return el("li", { "data-experiment": x.name },
      x.index ? el("a", { href: x.index, target: "_blank", rel: "noopener" }, x.name) : el("span", {}, x.name),
      ` · ${x.kind}`, x.created ? ` · ${x.created}` : "", x.data ? ` · ${x.data}` : "",
      el("span", { class: "muted" }, " · ", ...x.files.filter((f) => f !== "index.html")
        .flatMap((f, i) => [i ? ", " : "", el("a", { href: x.url + enc(f), target: "_blank", rel: "noopener" }, f)])));
  })));
  return el("div", { id: "experiments" }, ...parts);
}
