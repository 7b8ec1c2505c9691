// Projections: status, checkpoint, lag; rebuild, stop, start; their dead letters.
import { act } from "./actions.js";
import { api, can } from "./api.js";
import { badge, enc, h, json, table, when } from "./dom.js";

const REBUILD = "Rebuild this projection from the start of the log?";

function controls(p) {
  if (!p.enabled) return h("span", { class: "muted" }, "disabled in the config");
  const base = `/projections/${enc(p.name)}`;
  const button = (verb, confirmText) => h("button", {
    type: "button", class: `action action-${verb}`, "data-action": verb,
    disabled: !can("manage"), title: can("manage") ? `POST ${base}/${verb}` : "needs the scope manage",
    onclick: () => act(`${verb} ${p.name}`, `${base}/${verb}`, undefined, confirmText),
  }, verb);
  const running = p.status === "running" || p.status === "rebuilding";
  return h("span", { class: "actions" },
    button("rebuild", REBUILD), running ? button("stop") : button("start"));
}

function lag(p) {
  if (!p.lag || p.lag.events === null || p.lag.events === undefined) return "";
  return `${p.lag.events} events${p.lag.seconds ? `, ${p.lag.seconds} s` : ""}`;
}

function progress(p) {
  if (!p.rebuild) return null;
  const r = p.rebuild;
  return h("span", { class: "progress" }, h("progress", { max: 100, value: r.percent }),
    ` ${r.percent}%${r.eta_seconds ? `, ${r.eta_seconds} s left` : ""}`);
}

export async function projections() {
  const { projections: all } = await api("/projections");
  return [
    h("h1", {}, "Projections"),
    table(["name", "status", "checkpoint", "head", "lag", "target", ""],
      all.map((p) => [
        h("a", { href: `#/projections/${enc(p.name)}` }, p.name),
        [badge(p.status), progress(p), p.last_error ? h("div", { class: "detail" }, p.last_error) : null],
        p.checkpoint ?? "", p.head ?? "", lag(p),
        p.target ? `${p.target.kind}${p.target.table ? ` ${p.target.table}` : ""}` : "",
        controls(p),
      ]), "No projections in this service."),
  ];
}

export async function projection([name]) {
  const p = await api(`/projections/${enc(name)}`);
  const letters = p.dead_letters || { count: 0, items: [] };
  const base = `/projections/${enc(name)}`;
  const letterActions = (letter) => {
    const q = `?event_id=${enc(letter.event_id)}`;
    return h("span", { class: "actions" },
      h("button", { type: "button", class: "action action-replay", "data-action": "replay",
        disabled: !can("manage"),
        onclick: () => act(`replay ${letter.event_id}`, `${base}/replay${q}`) }, "replay"),
      h("button", { type: "button", class: "action action-skip", "data-action": "skip",
        disabled: !can("manage"),
        onclick: () => act(`skip ${letter.event_id}`, `${base}/skip${q}`, undefined,
          "Close this dead letter without applying it?") }, "skip"));
  };
  return [
    h("p", { class: "crumbs" }, h("a", { href: "#/projections" }, "Projections"), " / ", name),
    h("h1", {}, name, " ", badge(p.status)),
    p.description ? h("p", { class: "muted" }, p.description) : null,
    h("dl", { class: "facts" },
      h("dt", {}, "checkpoint"), h("dd", {}, String(p.checkpoint ?? "")),
      h("dt", {}, "head"), h("dd", {}, String(p.head ?? "")),
      h("dt", {}, "lag"), h("dd", {}, lag(p)),
      h("dt", {}, "owner"), h("dd", {}, p.owner || ""),
      h("dt", {}, "events"), h("dd", {}, (p.events || []).join(", ")),
      p.last_error ? [h("dt", {}, "last error"), h("dd", { class: "bad" }, p.last_error)] : null),
    progress(p),
    h("p", {}, controls(p)),
    h("h2", {}, `Dead letters (${letters.count ?? 0})`),
    letters.error ? h("p", { class: "error" }, letters.error) : table(
      ["event", "stream", "position", "reason", "attempts", "when", ""],
      (letters.items || []).map((l) => [
        l.event_type, h("a", { href: `#/streams/${enc(l.stream)}` }, l.stream), l.position,
        l.reason, l.attempts, when(l.time), letterActions(l),
      ]), "No dead letters."),
    h("details", { "data-keep": `raw:${name}` }, h("summary", {}, "Status as JSON"), json(p)),
  ];
}
