// The operator inbox (GET /inbox): everything waiting for a person, each with its actions.
import { act, setBadge } from "./actions.js";
import { api, can } from "./api.js";
import { h, when } from "./dom.js";

const LABELS = {
  dead_letter: "Dead letter",
  failed_saga: "Failed saga",
  approval: "Approval",
  overdue_timer: "Overdue timer",
  projection: "Projection",
};
const CONFIRM = {
  skip: "Close this dead letter without applying it?",
  rebuild: "Rebuild this projection from the start of the log?",
};

export async function inbox() {
  const box = await api("/inbox");
  setBadge(box.total);
  const chips = Object.entries(box.counts).map(([kind, n]) =>
    h("span", { class: `chip${n ? " some" : ""}`, "data-kind": kind }, `${LABELS[kind]}: ${n}`));
  return [
    h("h1", {}, "Inbox"),
    h("p", { class: "chips" }, chips),
    box.items.length
      ? h("ul", { class: "inbox" }, box.items.map(item))
      : h("p", { class: "empty" }, "Nothing waits for a person."),
  ];
}

function item(entry) {
  const needsComment = entry.actions.some((a) => a.body);
  const comment = needsComment
    ? h("input", { type: "text", class: "comment", placeholder: "comment (optional)",
        "aria-label": "comment", "data-keep": `comment:${entry.key}` })
    : null;
  const buttons = entry.actions.map((action) => h("button", {
    type: "button",
    class: `action action-${action.name}`,
    "data-action": action.name,
    disabled: !can(action.scope),
    title: can(action.scope) ? `${action.method} ${action.href}` : `needs the scope ${action.scope}`,
    onclick: () => {
      const body = comment && comment.value.trim() ? { comment: comment.value.trim() } : undefined;
      return act(`${action.name} ${entry.subject.id || entry.subject.projection || ""}`.trim(),
        action.href, body, CONFIRM[action.name]);
    },
  }, action.name));
  return h("li", { class: `item kind-${entry.kind}`, "data-key": entry.key },
    h("div", { class: "head" },
      h("span", { class: `kind kind-${entry.kind}` }, LABELS[entry.kind] || entry.kind),
      h("a", { href: entry.link, class: "title" }, entry.title),
      h("span", { class: "since" }, when(entry.since))),
    entry.detail ? h("div", { class: "detail" }, entry.detail) : null,
    entry.actions.length ? h("div", { class: "actions" }, comment, buttons) : null);
}
