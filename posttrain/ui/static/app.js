// posttrain ui: every page is drawn here from the JSON API; nothing is rendered from raw HTML of the API
// except the report pages, which are the static files `posttrain report` writes, shown in a frame.
"use strict";

const app = document.getElementById("app");
// How often the runs page reads the run directories again (`?poll=MS` for a closer look, 100 at least).
const POLL_MS = Math.max(100, Number(new URLSearchParams(location.search).get("poll")) || 700);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

function curve(points, color, label) {
  const w = 220, h = 60, svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("class", "curve");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  svg.setAttribute("data-points", points.length);
  svg.setAttribute("data-label", label);
  if (points.length) {
    const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const sx = x => 4 + (w - 8) * (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0));
    const sy = y => h - 4 - (h - 8) * (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0));
    const line = document.createElementNS(svgNs, "polyline");
    line.setAttribute("points", points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "));
    line.setAttribute("stroke", color);
    svg.append(line);
    const title = document.createElementNS(svgNs, "title");
    title.textContent = `${label}: last ${ys[ys.length - 1].toFixed(4)} at step ${xs[xs.length - 1]}`;
    svg.append(title);
  }
  return svg;
}

// --- Runs ---------------------------------------------------------------------------------------------------

function stageRow(run, stage) {
  const pct = stage.total ? Math.min(100, (100 * stage.step) / stage.total) : 0;
  const report = stage.status === "completed" && run.status !== "running"
    ? el("a", { href: `/runs/${encodeURIComponent(run.name)}#curves`, class: "report-link" }, "report ↗") : "";
  return el("tr", { class: "stage", "data-stage": stage.name, "data-status": stage.status },
    el("td", {}, stage.name, el("span", { class: "muted" }, ` ${stage.type}`)),
    el("td", {}, el("span", { class: `badge ${stage.status}` }, stage.status)),
    el("td", {}, el("span", { class: "bar" }, el("i", { style: `width:${pct}%` })), " ",
      el("span", { class: "steps" }, stage.total ? `${stage.step} / ${stage.total}` : `${stage.step || ""}`)),
    el("td", { class: "left" }, stage.left_s !== null ? `${duration(stage.left_s)} left` : (stage.seconds ? duration(stage.seconds) : "")),
    el("td", {}, curve(stage.loss, "#4c82e8", "loss")),
    el("td", {}, stage.reward.length ? curve(stage.reward, "#2c9a4a", stage.reward_key) : ""),
    el("td", {}, report, stage.error ? el("span", { class: "error" }, stage.error) : ""));
}

function runCard(run, jobs) {
  const job = jobs.find(j => j.name === run.name && j.state === "running");
  const stop = job ? el("button", { class: "stop", onclick: () => api(`/api/runs/${encodeURIComponent(run.name)}/stop`, {}).catch(showError) }, "Stop (Ctrl-C)") : "";
  const current = run.current ? ` · training ${run.current}` : "";
  return el("div", { class: "card run", "data-run": run.name, "data-status": run.status },
    el("h2", {}, el("a", { href: `/runs/${encodeURIComponent(run.name)}` }, run.name), " ",
      el("span", { class: `badge ${run.status}` }, run.status), el("span", { class: "muted" }, current), " ", stop),
    run.holder ? el("div", { class: "muted" }, `held by PID ${run.holder}`) : "",
    el("table", {}, el("tr", {}, ["stage", "status", "step / total", "time", "loss", "reward", ""].map(h => el("th", {}, h))),
      run.stages.map(s => stageRow(run, s))));
}

function showError(error) {
  const box = document.getElementById("message");
  if (box) { box.className = "error"; box.textContent = error.message; }
}

async function recipePanel() {
  const { recipes, folder } = await api("/api/recipes");
  const select = el("select", { id: "recipe" }, el("option", { value: "" }, "— pick a recipe —"), recipes.map(r => el("option", { value: r }, r)));
  const errors = el("pre", { id: "validation", hidden: "" });
  const start = el("button", { id: "start", disabled: "" }, "Start");
  const message = el("div", { id: "message" });
  select.addEventListener("change", async () => {
    start.disabled = true; message.textContent = "";
    if (!select.value) return;
    const result = await api(`/api/recipes/validate?path=${encodeURIComponent(select.value)}`).catch(e => ({ ok: false, errors: [e.message] }));
    errors.hidden = result.ok;
    errors.textContent = result.errors.join("\n");
    errors.className = result.ok ? "" : "error";
    message.className = result.ok ? "ok" : "error";
    message.textContent = result.ok ? `valid: run ${result.name}` : "invalid recipe (posttrain validate says):";
    start.disabled = !result.ok;
  });
  start.addEventListener("click", async () => {
    try {
      const job = await api("/api/recipes/start", { path: select.value });
      message.className = "ok"; message.textContent = `started run ${job.name} (PID ${job.pid})`;
    } catch (error) { showError(error); }
  });
  return el("div", { class: "card" }, el("h3", {}, "Start a recipe ", el("span", { class: "muted" }, `from ${folder}`)),
    select, " ", start, message, errors);
}

async function runsPage() {
  app.append(await recipePanel());
  const list = el("div", { id: "runs" });
  const jobsBox = el("div", { id: "jobs" });
  app.append(list, jobsBox);
  async function refresh() {
    try {
      const [runs, jobs] = await Promise.all([api("/api/runs"), api("/api/jobs")]);
      list.replaceChildren(...(runs.length ? runs.map(r => runCard(r, jobs)) : [el("p", { class: "muted" }, "No runs yet.")]));
      jobsBox.replaceChildren(...jobs.map(j => el("details", { class: "card job", "data-run": j.name },
        el("summary", {}, `posttrain run ${j.recipe} · PID ${j.pid} · ${j.state}${j.returncode !== null ? ` (exit ${j.returncode})` : ""}`),
        el("pre", {}, j.output))));
    } catch (error) { showError(error); }
    setTimeout(refresh, POLL_MS);
  }
  refresh();
}

// --- Report, board, compare: the static pages in a frame ----------------------------------------------------

function framed(url) {
  return el("iframe", { class: "page", src: url });
}

async function runPage() {
  const name = app.dataset.run;
  const head = el("div", { class: "card" }, el("h2", {}, `Run ${name}`));
  app.append(head);
  try {
    const { url } = await api(`/api/runs/${encodeURIComponent(name)}/report`);
    app.append(framed(url + location.hash));
  } catch (error) { head.append(el("p", { class: "error" }, error.message)); }
}

async function boardPage() {
  const { url } = await api("/api/board");
  app.append(framed(url));
}

async function comparePage() {
  const runs = await api("/api/runs");
  const pick = id => el("select", { id }, runs.map(r => el("option", { value: r.name }, r.name)));
  const a = pick("run-a"), b = pick("run-b");
  if (runs.length > 1) b.selectedIndex = 1;
  const holder = el("div", { id: "compare-page" });
  const message = el("div", { id: "message" });
  // A reply to an earlier click (the one made on load) can arrive after a later one's; only the latest is shown.
  let latest = 0;
  const go = el("button", { id: "compare", onclick: async () => {
    const asked = ++latest;
    message.textContent = "";
    try {
      const { url } = await api(`/api/compare?a=${encodeURIComponent(a.value)}&b=${encodeURIComponent(b.value)}`);
      if (asked === latest) holder.replaceChildren(framed(url));
    }
    catch (error) { if (asked === latest) showError(error); }
  } }, "Compare");
  app.append(el("div", { class: "card" }, "A ", a, " B ", b, " ", go, message), holder);
  if (runs.length > 1) go.click();
}

// --- Chat ---------------------------------------------------------------------------------------------------

async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const kind = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (kind && data) yield [kind, JSON.parse(data)];
    }
  }
}

function chatColumn(index, models, settings) {
  const select = el("select", { id: `model-${index}` }, models.map(m => el("option", { value: m.id }, m.label)));
  const history = el("div", { class: "history" });
  const reply = el("div", { class: "reply", id: `reply-${index}`, "data-state": "idle" });
  const template = el("pre", { class: "template" });
  const prompt = el("pre", { class: "prompt" });
  const used = el("div", { class: "muted settings-used" });
  const turns = [];
  const column = el("div", { class: "card column" }, select, history, reply, used,
    el("details", {}, el("summary", {}, "chat template"), template),
    el("details", {}, el("summary", {}, "prompt as the model sees it"), prompt));
  select.addEventListener("change", () => { turns.length = 0; history.replaceChildren(); reply.textContent = ""; });
  async function ask(text) {
    turns.push({ role: "user", content: text });
    history.append(el("div", { class: "turn" }, el("b", {}, "you"), text));
    reply.textContent = ""; reply.dataset.state = "waiting";
    const response = await fetch("/api/chat", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: select.value, messages: turns, settings: settings() }) });
    if (!response.ok) { reply.dataset.state = "error"; reply.textContent = (await response.json()).error; return; }
    let answer = "";
    for await (const [kind, data] of events(response)) {
      if (kind === "status") reply.dataset.state = data.text.startsWith("loading") ? "loading" : "waiting";
      if (kind === "meta") {
        template.textContent = data.template || "(none)"; prompt.textContent = data.prompt;
        used.textContent = `${data.engine} · ` + Object.entries(data.settings).map(([k, v]) => `${k} ${v}`).join(" · ");
      }
      if (kind === "token") { answer += data.text; reply.textContent = answer; reply.dataset.state = "streaming"; reply.dataset.chunks = String(Number(reply.dataset.chunks || 0) + 1); }
      if (kind === "error") { reply.dataset.state = "error"; reply.textContent = data.error; return; }
      if (kind === "done") reply.dataset.state = "done";
    }
    turns.push({ role: "assistant", content: answer });
    history.append(el("div", { class: "turn" }, el("b", {}, select.selectedOptions[0]?.textContent || "model"), answer));
  }
  return { column, ask, select };
}

async function chatPage() {
  const { models, settings: defaults, idle_unload_s, max_loaded } = await api("/api/models");
  if (!models.length) { app.append(el("p", { class: "muted" }, "No models yet: run a recipe first.")); return; }
  const inputs = Object.fromEntries(Object.entries(defaults).map(([k, v]) =>
    [k, el("input", { type: "number", id: `setting-${k}`, value: v, step: Number.isInteger(v) ? "1" : "0.05" })]));
  const settings = () => Object.fromEntries(Object.entries(inputs).map(([k, input]) => [k, Number(input.value)]));
  const side = el("input", { type: "checkbox", id: "side-by-side", checked: "" });
  const left = chatColumn(0, models, settings), right = chatColumn(1, models, settings);
  right.select.selectedIndex = models.length - 1;
  const text = el("textarea", { id: "prompt", placeholder: "Ask both models the same thing" });
  const send = el("button", { id: "send", onclick: () => {
    const prompt = text.value.trim();
    if (!prompt) return;
    left.ask(prompt).catch(showError);
    if (side.checked) right.ask(prompt).catch(showError);
  } }, "Send");
  side.addEventListener("change", () => { right.column.hidden = !side.checked; });
  app.append(el("div", { class: "card" },
      el("div", {}, el("label", {}, side, " side by side"),
        Object.entries(inputs).map(([k, input]) => el("label", {}, `${k} `, input))),
      el("div", { class: "muted" }, `temperature 0 = greedy · models load on first use; at most ${max_loaded} stay loaded, unloaded after ${idle_unload_s}s unused`),
      text, send, el("div", { id: "message" })),
    el("div", { class: "chat" }, left.column, right.column));
}

const PAGES = { runs: runsPage, run: runPage, board: boardPage, compare: comparePage, chat: chatPage };
PAGES[app.dataset.page]().catch(showError).finally(() => { document.body.dataset.ready = "yes"; });
