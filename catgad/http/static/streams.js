// Streams and their events (GET /streams/{id}), a page at a time.
import { enc, h, json, table, when } from "./dom.js";
import { api } from "./api.js";

const PAGE = 100;

export async function streams() {
  const { streams: recent } = await api("/streams?limit=100");
  const input = h("input", { type: "text", name: "stream", placeholder: "e.g. Order-o1",
    "aria-label": "stream id", "data-keep": "stream-id", required: true });
  return [
    h("h1", {}, "Streams"),
    h("form", { class: "inline", onsubmit: (event) => {
      event.preventDefault();
      location.hash = `#/streams/${enc(input.value.trim())}`;
    } }, input, h("button", { type: "submit" }, "Open")),
    h("h2", {}, "Written last"),
    table(["stream", "version", "last event", "when"], recent.map((s) => [
      h("a", { href: `#/streams/${enc(s.stream)}` }, s.stream), s.version ?? "", s.last_type,
      when(s.last_time),
    ]), "No events yet."),
  ];
}

export async function stream([id], query) {
  const from = Number(query.get("from") || 1);
  const body = await api(`/streams/${enc(id)}?from=${from}&limit=${PAGE}`);
  const pages = [];
  if (from > 1) pages.push(h("a", { href: `#/streams/${enc(id)}?from=${Math.max(1, from - PAGE)}` }, "← earlier"));
  if (body.next) pages.push(h("a", { href: `#/streams/${enc(id)}?from=${from + PAGE}` }, "later →"));
  return [
    h("p", { class: "crumbs" }, h("a", { href: "#/streams" }, "Streams"), " / ", id),
    h("h1", {}, id, " ", h("span", { class: "muted" }, `version ${body.version}`)),
    table(["version", "type", "time", "id", "data"], body.events.map((e) => [
      e.streamversion, e.type, when(e.time), h("code", {}, e.id),
      h("details", { "data-keep": `event:${e.id}` }, h("summary", {}, summary(e.data)), json(e)),
    ]), "No events."),
    h("p", { class: "pages" }, pages),
  ];
}

function summary(data) {
  const text = JSON.stringify(data);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
}
