// The playground page: plain JavaScript, no build step, no dependencies.
"use strict";

const CATEGORY_ITEMS = 8; // candidates from the chosen query category
const OTHER_ITEMS = 4; // and from the others, as a search would retrieve (fits one screen)
const $ = (id) => document.getElementById(id);
let options = null;

function headers() {
  const key = sessionStorage.getItem("ranklab-api-key");
  const sent = { "content-type": "application/json" };
  if (key) sent["x-api-key"] = key;
  return sent;
}

async function call(path, body) {
  const init = body === undefined ? { headers: headers() } : { method: "POST", headers: headers(), body: JSON.stringify(body) };
  const response = await fetch(path, init);
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401) {
    $("key_label").hidden = false;
    throw new Error("The service wants an API key: type it in the API key field, then try again.");
  }
  if (!response.ok) throw new Error(`${path} answered ${response.status}: ${JSON.stringify(answer)}`);
  return answer;
}

function fill(select, values, label = (v) => v) {
  select.replaceChildren(...values.map((v) => new Option(label(v), typeof v === "object" ? v.value : v)));
}

function modelChoices(opts) {
  const choices = [];
  const champion = opts.champion ? opts.champion.version : null;
  for (const v of opts.versions) {
    if (v.version === champion) continue;
    const aliases = v.aliases.filter((a) => a !== "champion");
    const ref = aliases.includes("challenger") ? "alias:challenger" : `version:${v.version}`;
    const name = aliases.length ? `${aliases.join(", ")} (v${v.version})` : `v${v.version}`;
    choices.push({ value: ref, label: `vs ${name}`, challenger: aliases.includes("challenger") });
  }
  choices.sort((a, b) => b.challenger - a.challenger); // the challenger first, then newest
  return choices;
}

async function load() {
  options = await call("api/options");
  const c = options.contexts;
  fill($("user"), options.users.map((u) => ({ value: u.user_id, label: u.label })), (u) => u.label);
  fill($("device"), c.device);
  fill($("region"), c.region);
  fill($("query_category"), c.query_category);
  const against = modelChoices(options);
  fill($("against"), against, (m) => m.label);
  $("compare").disabled = against.length === 0;
  $("against").hidden = against.length === 0;
  if (against.length === 0) $("compare").title = "only one model is registered: run `make run` again for a second";
  const champion = options.champion;
  const experiment = options.experiment === "none" ? "no experiment" : `experiment: ${options.experiment}`;
  $("service").textContent = champion ? `champion v${champion.version} · ${experiment}` : "no champion: popularity fallback";
}

function candidates() {
  const category = $("query_category").value;
  const matching = options.items.filter((i) => i.category === category).slice(0, CATEGORY_ITEMS);
  const others = options.items.filter((i) => i.category !== category).slice(0, OTHER_ITEMS);
  const ids = [...matching, ...others].map((i) => i.item_id);
  if ($("new_item").checked) ids.push(options.new_item_id);
  return ids;
}

function request() {
  return {
    user_id: Number($("user").value),
    context: { device: $("device").value, region: $("region").value, query_category: $("query_category").value },
    candidates: candidates(),
  };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function chip(text, kind = "", testid = null) {
  return el("span", { class: `chip ${kind}`, ...(testid ? { "data-testid": testid } : {}) }, text);
}

// One model's answer: header (model, served_by, cold start, arm), then the ranked list.
function column(answer, title, reference) {
  const fallback = answer.served_by.startsWith("fallback:");
  const cold = answer.cold_start;
  const chips = [
    chip(`served_by: ${answer.served_by}`, fallback ? "warn" : "good", "served_by"),
    chip(`${answer.model_name} ${/^\d+$/.test(answer.model_version) ? "v" : ""}${answer.model_version}`, "", "model_version"),
  ];
  if (answer.experiment_arm) chips.push(chip(`experiment ${answer.experiment}: arm ${answer.experiment_arm}`, "", "arm"));
  else if (answer.experiment_arm !== undefined) chips.push(chip("no experiment running", "", "arm"));
  if (cold === null) chips.push(chip("cold start: unknown (store not read)", "warn", "cold_start"));
  else {
    if (cold.user) chips.push(chip("new user: default features", "cold", "cold_start"));
    if (cold.items.length) chips.push(chip(`${cold.items.length} new item(s)`, "cold", "cold_items"));
  }
  const head = el("div", { class: "head" }, el("h2", {}, title), el("div", { class: "chips" }, ...chips));
  const parts = [head];
  if (fallback) {
    const reason = answer.served_by.slice("fallback:".length);
    parts.push(el("div", { class: "banner", "data-testid": "fallback" }, `Fallback: ranked by ${answer.model_name} because of ${reason.replaceAll("_", " ")}`));
  }
  if (answer.unavailable) parts.push(el("div", { class: "banner" }, `This model is not loaded: ${answer.unavailable}`));
  parts.push(rankedList(answer, cold, reference));
  return el("article", { class: `column${fallback ? " fallback" : ""}`, "data-testid": "column" }, ...parts);
}

function rankedList(answer, cold, reference) {
  const scores = answer.items.map((i) => i.score);
  const [low, high] = [Math.min(...scores), Math.max(...scores)];
  const byId = new Map(options.items.map((i) => [i.item_id, i]));
  const coldItems = new Set(cold ? cold.items : []);
  const before = reference ? new Map(reference.items.map((i, at) => [i.item_id, at])) : null;
  const category = $("query_category").value;
  const rows = answer.items.map((ranked, at) => {
    const item = byId.get(ranked.item_id);
    const about = item ? `${item.category} · ${item.price.toFixed(2)}` : "not in the catalogue sample";
    const isNew = coldItems.has(ranked.item_id) || ranked.item_id === options.new_item_id;
    const tag = isNew ? el("small", { class: "match" }, "new item: no stored features") : el("small", { class: item && item.category === category ? "match" : "" }, about);
    const width = high > low ? (100 * (ranked.score - low)) / (high - low) : 100;
    let moved = null;
    if (before && before.has(ranked.item_id)) {
      const delta = before.get(ranked.item_id) - at;
      if (delta !== 0) moved = el("span", { class: `moved ${delta > 0 ? "up" : "down"}` }, delta > 0 ? `▲${delta}` : `▼${-delta}`);
    }
    return el(
      "li",
      { "data-testid": "ranked-item" },
      el("span", { class: "pos" }, `${at + 1}`),
      el("span", { class: "item" }, `#${ranked.item_id}`, moved, tag),
      el("span", { class: "bar" }, el("span", { style: `width:${width.toFixed(1)}%` })),
      el("span", { class: "score" }, ranked.score.toFixed(3)),
    );
  });
  return el("ol", {}, ...rows);
}

function show(message, isError = false) {
  const box = $("message");
  box.hidden = !message;
  box.textContent = message || "";
  box.className = `message${isError ? " error" : ""}`;
}

async function busy(work) {
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  show("");
  try {
    await work();
  } catch (error) {
    show(error.message, true);
  } finally {
    for (const b of document.querySelectorAll("button")) b.disabled = false;
    $("compare").disabled = $("against").options.length === 0;
  }
}

async function rank(event) {
  event.preventDefault();
  await busy(async () => {
    const answer = await call("/rank", request());
    $("results").replaceChildren(column(answer, "POST /rank: what a caller gets", null));
  });
}

async function compare() {
  await busy(async () => {
    const body = { ...request(), models: ["alias:champion", $("against").value] };
    const answer = await call("api/compare", body);
    const [first, second] = answer.results;
    const title = (r) => (r.model === "alias:champion" ? "champion" : r.model.replace("alias:", "").replace("version:", "version "));
    $("results").replaceChildren(column(first, title(first), null), column(second, `${title(second)}: ▲▼ vs champion`, first));
    show(answer.note);
  });
}

function saveKey() {
  sessionStorage.setItem("ranklab-api-key", $("api_key").value);
  load().then(() => show("")).catch((error) => show(error.message, true));
}

$("query").addEventListener("submit", rank);
$("compare").addEventListener("click", compare);
$("api_key").addEventListener("change", saveKey);
load().catch((error) => show(error.message, true));
