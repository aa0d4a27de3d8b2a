// distill view: one page, five tabs, state in the URL hash (#samples?status=rejected&reason=dedup_exact).
// Every list is a page fetched from /api/...; nothing is rendered as HTML from the run's text (model
// output goes in through textContent), so a trace holding markup shows as text.
"use strict";

const main = document.getElementById("main");
let overview = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(path, params) {
  const query = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== "" && v !== undefined));
  const response = await fetch(`/api/${path}?${query}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function state() {
  const [tab, query] = location.hash.replace(/^#/, "").split("?");
  return { tab: tab || "overview", params: Object.fromEntries(new URLSearchParams(query || "")) };
}

function go(tab, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== undefined));
  location.hash = `${tab}${query.toString() ? "?" + query : ""}`;
}

function table(header, rows, numeric) {
  return el("table", {}, el("tr", {}, header.map((h) => el("th", {}, h))),
    rows.map((row) => el("tr", {}, row.map((cell, i) =>
      el("td", { class: numeric && numeric.includes(i) ? "num" : null }, cell)))));
}

function pager(page, params, tab) {
  const offset = page.offset, shown = page.items.length, limit = Number(params.limit || 20);
  return el("div", { class: "pager" },
    el("button", { disabled: offset === 0, onclick: () => go(tab, { ...params, offset: Math.max(0, offset - limit) }) }, "‹ previous"),
    el("span", { class: "muted", id: "count" }, page.total ? `${offset + 1}–${offset + shown} of ${page.total}` : "nothing matches"),
    el("button", { disabled: offset + shown >= page.total, onclick: () => go(tab, { ...params, offset: offset + limit }) }, "next ›"));
}

function searchBox(params, tab, placeholder) {
  return el("input", { type: "search", placeholder, value: params.q || "",
    onchange: (e) => go(tab, { ...params, q: e.target.value, offset: 0 }) });
}

function select(options, value, onchange) {
  return el("select", { onchange: (e) => onchange(e.target.value) },
    options.map(([v, label]) => el("option", { value: v, selected: v === value }, label)));
}

const SHORT = 600;  // characters: a text this short is shown open, a longer one behind its summary

function block(label, text, open) {
  if (!text) return null;
  return el("details", { open: open || text.length < SHORT }, el("summary", {}, label), el("pre", {}, text));
}

// The think block and the answer when the trace has both; else the completion as written.
function traceBlocks(s) {
  return s.answer ? [block("reasoning", s.reasoning, false), block("answer", s.answer, true)]
    : [block("completion", s.completion, false)];
}

// ------------------------------------------------------------------------------------------ overview
function renderOverview(o) {
  const c = o.counts;
  const stats = [["problems", o.problems], ["samples", c.samples || 0]];
  if (o.filtered) stats.push(["kept", c.kept || 0], ["rejected", c.rejected || 0],
    ["keep rate", c.samples ? `${(100 * (c.kept || 0) / c.samples).toFixed(1)}%` : "-"]);
  const parts = [
    o.description ? el("p", {}, o.description) : null,
    el("div", { class: "cards" }, stats.map(([k, v]) => el("div", { class: "stat" }, el("b", {}, v), k))),
    el("h2", {}, "Stages"),
    table(["stage", "status", "seconds", "key"], o.stages.map((s) => [s.stage, s.status, s.seconds ?? "", s.key]), [2]),
  ];
  if (o.funnel) parts.push(el("h2", {}, "Filter funnel"), el("p", { class: "muted" }, "Each reject counted at its first failed check."),
    table(["step", "removed", "remaining"], o.funnel.map((r) => [r.stage, r.removed ?? "", r.remaining]), [1, 2]));
  const reasons = Object.entries(o.reasons);
  if (reasons.length) parts.push(el("h2", {}, "Reject reasons (every failing check)"),
    table(["check", "samples"], reasons.map(([name, count]) => [
      el("a", { class: "link", onclick: () => go("samples", { status: "rejected", reason: name }) }, name), count]), [1]));
  if (o.eval) parts.push(el("h2", {}, `Evaluation (k=${o.eval.k})`), table(o.eval.header, o.eval.rows),
    el("p", {}, el("a", { class: "link", onclick: () => go("eval", {}) }, "answers side by side →")));
  if (o.kd) parts.push(el("h2", {}, "On-policy distillation"),
    el("p", {}, el("a", { class: "link", onclick: () => go("kd", {}) }, "where the student disagrees with the teacher, token by token →")));
  if (o.plots.length) parts.push(el("h2", {}, "Plots"), el("div", { class: "plots" }, o.plots.map((p) =>
    el("figure", {}, el("img", { src: `/run/${encodeURI(p)}`, alt: p }), el("figcaption", {}, p)))));
  main.replaceChildren(...parts.filter(Boolean));
}

// ------------------------------------------------------------------------------------------ problems
async function renderProblems(params) {
  const page = await api("problems", { limit: 50, ...params });
  main.replaceChildren(
    el("div", { class: "controls" }, searchBox(params, "problems", "search problems"),
      el("label", {}, el("input", { type: "checkbox", checked: params.only === "none_kept",
        onchange: (e) => go("problems", { ...params, only: e.target.checked ? "none_kept" : "", offset: 0 }) }),
        " only problems with no kept sample")),
    pager(page, { limit: 50, ...params }, "problems"),
    table(["id", "problem", "gold", "kept / samples"], page.items.map((p) => [p.id, p.problem, p.answer ?? "",
      el("a", { class: "link", onclick: () => go("samples", { problem: p.id }) }, `${p.kept} / ${p.samples}`)]), [3]));
}

// ------------------------------------------------------------------------------------------- samples
function sampleCard(s) {
  const status = s.kept === true ? "kept" : s.kept === false ? "rejected" : "unfiltered";
  return el("div", { class: `card ${status}` },
    el("h3", {}, `${s.problem_id} #${s.sample}`,
      el("span", { class: `badge ${status === "kept" ? "good" : status === "rejected" ? "bad" : "plain"}` }, status),
      el("span", { class: "badge plain" }, `${s.completion_tokens} tokens`),
      s.finish_reason ? el("span", { class: "badge plain" }, `finish: ${s.finish_reason}`) : null,
      s.gold !== null && s.gold !== undefined ? el("span", { class: "badge plain" }, `gold: ${s.gold}`) : null),
    (s.reasons || []).map((r) => el("div", { class: "reason" }, el("b", {}, r.check), ": ", r.detail)),
    s.problem ? el("div", { class: "problem" }, s.problem) : null,
    traceBlocks(s));
}

async function renderSamples(params) {
  const page = await api("samples", { limit: 20, ...params });
  const reasons = Object.keys(overview.reasons);
  main.replaceChildren(
    el("div", { class: "controls" },
      select([["all", "all samples"], ["kept", "kept"], ["rejected", "rejected"]], params.status || "all",
        (v) => go("samples", { ...params, status: v, offset: 0 })),
      select([["", "any reason"], ...reasons.map((r) => [r, `${r} (${overview.reasons[r]})`])], params.reason || "",
        (v) => go("samples", { ...params, reason: v, offset: 0 })),
      searchBox(params, "samples", "search the traces"),
      params.problem ? el("span", { class: "badge plain" }, `problem ${params.problem} `,
        el("a", { class: "link", onclick: () => go("samples", { ...params, problem: "", offset: 0 }) }, "×")) : null),
    pager(page, { limit: 20, ...params }, "samples"),
    el("div", { id: "samples" }, page.items.map(sampleCard)));
}

// ---------------------------------------------------------------------------------------------- eval
function modelColumn(label, result) {
  const samples = result.samples || [];
  const head = result.n ? `${result.correct}/${result.n} correct, vote ${result.cons_answer ?? "none"}` : "no result";
  return el("div", { class: "model" }, el("h4", {}, label, " ", el("span", { class: "muted" }, head)),
    samples.map((s) => el("div", { class: "sample" },
      el("span", { class: `badge ${s.passed ? "good" : "bad"}` }, s.passed ? "✓ correct" : "✗ wrong"), " ",
      el("span", { class: "muted" }, `#${s.sample} · answer ${s.extracted ?? "none"} · ${s.completion_tokens} tokens · ${s.finish_reason}`),
      traceBlocks(s))));
}

async function renderEval(params) {
  if (!overview.eval) { main.replaceChildren(el("p", {}, "This run has no evaluation yet.")); return; }
  const page = await api("eval", { limit: 10, ...params });
  main.replaceChildren(
    el("div", { class: "controls" },
      select(page.benchmarks.map((b) => [b, b]), page.bench, (v) => go("eval", { ...params, bench: v, offset: 0 })),
      select([["all", "every problem"], ["differ", "models differ"], ["improved", `${page.models.at(-1)} better`],
        ["regressed", `${page.models.at(-1)} worse`]], params.show || "all", (v) => go("eval", { ...params, show: v, offset: 0 })),
      searchBox(params, "eval", "search problems")),
    pager(page, { limit: 10, ...params }, "eval"),
    el("div", { id: "eval" }, page.items.map((p) => el("div", { class: "card" },
      el("h3", {}, p.id, el("span", { class: "badge plain" }, `gold: ${p.answer ?? "?"}`)),
      el("div", { class: "problem" }, p.problem),
      el("div", { class: "side", style: `grid-template-columns: repeat(${page.models.length}, 1fr)` },
        page.models.map((m) => modelColumn(m, p.models[m])))))));
}

// ------------------------------------------------------------------------------------------------ kd
// Every token of a few fixed answers, coloured by log p_teacher - log p_student on one diverging scale for
// all columns (so before and after compare): red where the student wrote a token the teacher finds less
// likely (what on-policy distillation pushes down), blue where the teacher finds it likelier.
const PHASE_NAMES = {
  before: "before: the initial student's answer",
  after: "after: the same tokens, trained student",
  after_sample: "after: the trained student's own answer",
};
const RED = [178, 24, 43], BLUE = [33, 102, 172];

function niceCeil(x) {
  if (!(x > 0)) return 0.1;
  const power = 10 ** Math.floor(Math.log10(x));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= x);
}

// The scale: the 95th percentile of |difference| over every token shown, rounded up; beyond it, full colour.
function scaleOf(items) {
  const sizes = items.flatMap((s) => Object.values(s.phases).flatMap((p) => p.disagreement || [])).map(Math.abs);
  sizes.sort((a, b) => a - b);
  return niceCeil(sizes.length ? sizes[Math.floor(0.95 * (sizes.length - 1))] : 0);
}

function colour(value, scale) {
  const t = Math.max(-1, Math.min(1, value / scale));
  const [r, g, b] = (t < 0 ? RED : BLUE).map((c) => Math.round(255 + (c - 255) * Math.abs(t)));
  return `rgb(${r}, ${g}, ${b})`;
}

const signed = (x, digits) => (x >= 0 ? "+" : "") + x.toFixed(digits ?? 3);

function legend(scale) {
  const stops = [-1, -0.5, 0, 0.5, 1];
  return el("div", { class: "legend", id: "kd-legend" },
    el("span", { class: "muted" }, "log p_teacher − log p_student (nats):"),
    el("div", { class: "legend-scale" },
      el("div", { class: "legend-bar", style: `background: linear-gradient(to right, ${colour(-scale, scale)}, #fff, ${colour(scale, scale)})` }),
      el("div", { class: "legend-ticks" }, stops.map((s) => el("span", {}, signed(s * scale, 2))))),
    el("span", { class: "muted" }, "red: the student wrote a token the teacher finds less likely; blue: the teacher finds it likelier; hover a token for its values"));
}

function tokenSpan(phase, i, scale) {
  const gap = phase.disagreement[i], text = phase.tokens[i];
  const title = `${JSON.stringify(text)}\nlog p_teacher − log p_student = ${signed(gap)}\n` +
    `teacher ${phase.teacher_logprobs[i].toFixed(3)} · student ${phase.student_logprobs[i].toFixed(3)}` +
    (phase.kl ? ` · KL(s‖t) here ${phase.kl[i].toFixed(4)}` : "");
  const strong = Math.abs(gap) > 0.6 * scale;
  // A newline is shown as ↵ before the break, so a token that is only whitespace still has a colour to see.
  return el("span", { class: `tok${strong ? " strong" : ""}`, style: `background: ${colour(gap, scale)}`, title,
    "data-gap": gap.toFixed(4) }, text.replace(/\n/g, "↵\n"));
}

function phaseColumn(name, phase, scale) {
  if (!phase) return el("div", { class: "model" }, el("h4", {}, PHASE_NAMES[name] || name), el("p", { class: "muted" }, "not recorded"));
  return el("div", { class: "model" },
    el("h4", {}, PHASE_NAMES[name] || name, " ", el("span", { class: "muted" },
      `mean ${signed(phase.mean)} · |mean| ${phase.mean_abs.toFixed(3)}` +
      (phase.mean_kl !== undefined ? ` · KL ${phase.mean_kl.toFixed(4)}` : "") + ` · ${phase.tokens.length} tokens`)),
    el("div", { class: "tokens", "data-phase": name }, phase.tokens.map((_, i) => tokenSpan(phase, i, scale))));
}

async function renderKD() {
  const page = await api("kd");
  const scale = scaleOf(page.items);
  const phases = page.order.filter((p) => page.phases[p]);
  main.replaceChildren(
    el("p", {}, "A few fixed answers of the student, written greedily at the start of training, each token coloured by ",
      "how much likelier the teacher finds it than the student does. After training the trained student scores the same ",
      "tokens again, and writes an answer of its own."),
    el("h2", {}, "Mean per phase"),
    table(["phase", "samples", "tokens", "mean log p_t − log p_s", "mean |log p_t − log p_s|", "mean KL(student ‖ teacher)"],
      phases.map((p) => { const s = page.phases[p]; return [PHASE_NAMES[p] || p, s.samples, s.tokens, signed(s.mean),
        s.mean_abs.toFixed(3), s.mean_kl.toFixed(4)]; }), [1, 2, 3, 4, 5]),
    legend(scale),
    el("div", { id: "kd" }, page.items.map((s) => el("div", { class: "card" },
      el("h3", {}, `${s.problem_id} #${s.sample}`),
      el("div", { class: "problem" }, s.problem),
      el("div", { class: "side", style: `grid-template-columns: repeat(${page.order.length}, 1fr)` },
        page.order.map((p) => phaseColumn(p, s.phases[p], scale)))))));
}

// -------------------------------------------------------------------------------------------- router
async function render() {
  const { tab, params } = state();
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab));
  try {
    if (!overview) {
      overview = await api("overview");
      document.getElementById("run-name").textContent = `distill view: ${overview.name}`;
      document.title = `distill view: ${overview.name}`;
      document.querySelector('nav a[data-tab="kd"]').hidden = !overview.kd;
    }
    if (tab === "problems") await renderProblems(params);
    else if (tab === "samples") await renderSamples(params);
    else if (tab === "eval") await renderEval(params);
    else if (tab === "kd") await renderKD();
    else renderOverview(overview);
    document.body.dataset.rendered = tab;  // for the headless-browser test: the tab is on screen
  } catch (error) {
    main.replaceChildren(el("p", { class: "error" }, `error: ${error.message}`));
  }
}

window.addEventListener("hashchange", render);
render();
