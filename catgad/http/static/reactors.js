// Sagas and processes: instances with filters, one instance with its diagram (the instance
// highlighted), its history as a timeline, pending timers and approvals.
import { act } from "./actions.js";
import { api, can, meta } from "./api.js";
import { badge, enc, h, json, table, when } from "./dom.js";

const SAGA_STATUSES = ["running", "completed", "compensating", "compensated", "failed"];
const svgCache = new Map(); // url + version -> SVG text: drawn by dot once per change

async function diagram(url, version) {
  const key = `${url}@${version}`;
  let text = svgCache.get(key);
  if (text === undefined) {
    try {
      text = await api(url, { accept: "image/svg+xml" });
    } catch (error) {
      return h("p", { class: "muted" }, `No diagram: ${error.message}`);
    }
    svgCache.clear();
    svgCache.set(key, text);
  }
  const svg = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
  if (svg.nodeName !== "svg") return h("p", { class: "muted" }, "No diagram.");
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  return h("figure", { class: "diagram" }, document.importNode(svg, true));
}

function filter(label, options, current, path) {
  return h("label", { class: "filter" }, `${label} `,
    h("select", {
      "aria-label": label,
      onchange: (event) => {
        const value = event.target.value;
        location.hash = value ? `${path}?${label}=${enc(value)}` : path;
      },
    }, h("option", { value: "" }, "all"),
    options.map((o) => h("option", { value: o, selected: o === current }, o))));
}

function timeline(entries, describe) {
  if (!entries.length) return h("p", { class: "muted" }, "Nothing yet.");
  return h("ol", { class: "timeline" }, entries.map((entry) =>
    h("li", { class: `decision decision-${entry.decision}` },
      h("span", { class: "at" }, when(entry.at)),
      h("strong", {}, entry.decision), " ", describe(entry))));
}

function button(verb, label, href, { scope = "manage", confirmText, body } = {}) {
  return h("button", {
    type: "button", class: `action action-${verb}`, "data-action": verb, disabled: !can(scope),
    title: can(scope) ? `POST ${href}` : `needs the scope ${scope}`,
    onclick: () => act(label, href, body ? body() : undefined, confirmText),
  }, verb);
}

// -- sagas ---------------------------------------------------------------------------------

export async function sagas([name], query) {
  const names = name ? [name] : meta.sagas;
  if (!names.length) return [h("h1", {}, "Sagas"), h("p", { class: "muted" }, "No sagas in this service.")];
  const status = query.get("status") || "";
  const sections = await Promise.all(names.map(async (saga) => {
    const path = `#/sagas/${enc(saga)}`;
    const { instances } = await api(`/sagas/${enc(saga)}${status ? `?status=${enc(status)}` : ""}`);
    instances.sort((a, b) => String(b.updated_at).localeCompare(String(a.updated_at)));
    return h("section", {},
      h("h2", {}, h("a", { href: path }, saga), " ", h("span", { class: "muted" }, `${instances.length} instances`)),
      name ? filter("status", SAGA_STATUSES, status, path) : null,
      table(["instance", "status", "step", "started", "updated"], instances.slice(0, name ? 500 : 20).map((i) => [
        h("a", { href: `${path}/${enc(i.id)}` }, i.id), badge(i.status), i.step || "",
        when(i.started_at), when(i.updated_at),
      ]), "No instances."));
  }));
  return [h("h1", {}, name ? `Saga ${name}` : "Sagas"), ...sections];
}

function sagaEntry(entry) {
  const parts = [entry.name, entry.command, entry.reason].filter(Boolean);
  return h("span", {}, parts.join(" · "), entry.command_id ? h("code", { class: "muted" }, ` ${entry.command_id}`) : null);
}

export async function saga([name, id]) {
  const base = `/sagas/${enc(name)}/${enc(id)}`;
  const s = await api(base);
  const actions = [];
  if (s.status === "failed") actions.push(button("retry", `retry ${id}`, `${base}/retry`));
  if (s.status === "running") {
    actions.push(button("cancel", `cancel ${id}`, `${base}/cancel`, { confirmText: "Cancel this saga? It compensates what it did." }));
  }
  return [
    h("p", { class: "crumbs" }, h("a", { href: "#/sagas" }, "Sagas"), " / ",
      h("a", { href: `#/sagas/${enc(name)}` }, name), " / ", id),
    h("h1", {}, `${name} ${id} `, badge(s.status)),
    h("dl", { class: "facts" },
      h("dt", {}, "step"), h("dd", {}, s.step || "—"),
      s.reason ? [h("dt", {}, "reason"), h("dd", { class: "bad" }, s.reason)] : null,
      h("dt", {}, "compensations"), h("dd", {}, `${s.compensations.done} of ${s.compensations.planned}`),
      h("dt", {}, "started"), h("dd", {}, when(s.started_at)),
      h("dt", {}, "updated"), h("dd", {}, when(s.updated_at)),
      h("dt", {}, "stream"), h("dd", {}, h("a", { href: `#/streams/${enc(s.stream)}` }, s.stream))),
    actions.length ? h("p", { class: "actions" }, actions) : null,
    await diagram(`/sagas/${enc(name)}/diagram?format=svg&instance=${enc(id)}`, `${s.version}`),
    h("h2", {}, "History"),
    timeline(s.log, sagaEntry),
    h("details", { "data-keep": `input:${name}:${id}` }, h("summary", {}, "Input"), json(s.input)),
  ];
}

// -- processes -----------------------------------------------------------------------------

export async function processes([name], query) {
  const names = name ? [name] : Object.keys(meta.processes);
  if (!names.length) return [h("h1", {}, "Processes"), h("p", { class: "muted" }, "No processes in this service.")];
  const state = query.get("state") || "";
  const sections = await Promise.all(names.map(async (process) => {
    const path = `#/processes/${enc(process)}`;
    const { instances } = await api(`/processes/${enc(process)}${state ? `?state=${enc(state)}` : ""}`);
    instances.sort((a, b) => String(b.updated_at).localeCompare(String(a.updated_at)));
    const approvals = meta.processes[process].approvals;
    return h("section", {},
      h("h2", {}, h("a", { href: path }, process), " ", h("span", { class: "muted" }, `${instances.length} instances`)),
      name ? filter("state", meta.processes[process].states, state, path) : null,
      table(["instance", "state", "status", "updated"], instances.slice(0, name ? 500 : 20).map((i) => [
        h("a", { href: `${path}/${enc(i.id)}` }, i.id),
        [badge(i.state, approvals.includes(i.state) && i.status === "running" ? "waiting" : "state"),
          approvals.includes(i.state) && i.status === "running" ? h("span", { class: "muted" }, " awaits a decision") : null],
        badge(i.status), when(i.updated_at),
      ]), "No instances."));
  }));
  return [h("h1", {}, name ? `Process ${name}` : "Processes"), ...sections];
}

function processEntry(entry) {
  const parts = [];
  if (entry.from || entry.to) parts.push(`${entry.from || ""} → ${entry.to || ""}`);
  if (entry.by) parts.push(`by ${entry.by}`);
  if (entry.state && !entry.to) parts.push(entry.state);
  if (entry.event && entry.event.type) parts.push(entry.event.type);
  if (entry.outcome) parts.push(`${entry.outcome} by ${entry.token}${entry.comment ? `: “${entry.comment}”` : ""}`);
  if (entry.due) parts.push(`due ${entry.due}${entry.goto ? ` → ${entry.goto}` : ""}`);
  if (entry.commands) parts.push(entry.commands.map((c) => c.command).join(", "));
  return h("span", {}, parts.join(" · "));
}

export async function process([name, id]) {
  const base = `/processes/${enc(name)}/${enc(id)}`;
  const p = await api(base);
  let decision = null;
  if (p.approval) {
    const scope = p.approval.scope;
    const comment = h("input", { type: "text", class: "comment", placeholder: "comment (optional)",
      "aria-label": "comment", "data-keep": `comment:${name}:${id}` });
    const body = () => (comment.value.trim() ? { comment: comment.value.trim() } : undefined);
    decision = h("section", { class: "approval" },
      h("h2", {}, "Waiting for a decision"),
      h("p", {}, `In ${p.approval.state} since `, when(p.approval.at), `; needs the scope ${scope}.`),
      h("p", { class: "actions" }, comment,
        button("approve", `approve ${id}`, `${base}/approve`, { scope, body }),
        button("reject", `reject ${id}`, `${base}/reject`, { scope, body })));
  }
  return [
    h("p", { class: "crumbs" }, h("a", { href: "#/processes" }, "Processes"), " / ",
      h("a", { href: `#/processes/${enc(name)}` }, name), " / ", id),
    h("h1", {}, `${name} ${id} `, badge(p.state, "state"), " ", badge(p.status)),
    decision,
    h("dl", { class: "facts" },
      h("dt", {}, "timer"), h("dd", {}, p.timer
        ? h("span", { class: "timer" }, `${p.timer.state} → ${p.timer.goto}, due `, when(p.timer.due))
        : "none pending"),
      h("dt", {}, "started"), h("dd", {}, when(p.started_at)),
      h("dt", {}, "updated"), h("dd", {}, when(p.updated_at)),
      h("dt", {}, "stream"), h("dd", {}, h("a", { href: `#/streams/${enc(p.stream)}` }, p.stream))),
    await diagram(`/processes/${enc(name)}/diagram?format=svg&instance=${enc(id)}`, `${p.version}`),
    h("h2", {}, "History"),
    timeline(p.history, processEntry),
    h("details", { "data-keep": `data:${name}:${id}`, open: true }, h("summary", {}, "Data"), json(p.data)),
  ];
}
