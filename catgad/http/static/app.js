// The dashboard: a view per hash route, drawn again every REFRESH ms from the JSON API.
import { onRedraw, setBadge } from "./actions.js";
import { api, meta, signOut } from "./api.js";
import { h } from "./dom.js";
import { inbox } from "./inbox.js";
import { projection, projections } from "./projections.js";
import { process, processes, saga, sagas } from "./reactors.js";
import { stream, streams } from "./streams.js";

const REFRESH = 2000;
const main = document.getElementById("main");

// [pattern, view, nav section]; a view is async (params, query) => node(s)
const ROUTES = [
  [/^\/?$/, inbox, "inbox"],
  [/^\/inbox$/, inbox, "inbox"],
  [/^\/projections$/, projections, "projections"],
  [/^\/projections\/([^/]+)$/, projection, "projections"],
  [/^\/sagas$/, sagas, "sagas"],
  [/^\/sagas\/([^/]+)$/, sagas, "sagas"],
  [/^\/sagas\/([^/]+)\/([^/]+)$/, saga, "sagas"],
  [/^\/processes$/, processes, "processes"],
  [/^\/processes\/([^/]+)$/, processes, "processes"],
  [/^\/processes\/([^/]+)\/([^/]+)$/, process, "processes"],
  [/^\/streams$/, streams, "streams"],
  [/^\/streams\/(.+)$/, stream, "streams"],
];

function route() {
  const [path, search] = location.hash.replace(/^#/, "").split("?");
  const query = new URLSearchParams(search || "");
  for (const [pattern, view, section] of ROUTES) {
    const found = pattern.exec(path);
    if (found) return { view, section, params: found.slice(1).map(decodeURIComponent), query };
  }
  return { view: notFound, section: null, params: [path], query };
}

async function notFound([path]) {
  return h("p", {}, `Nothing here: ${path}. `, h("a", { href: "#/inbox" }, "To the inbox"));
}

// Inputs, <details> and focus survive a redraw when they carry data-keep="<key>".
function kept() {
  const state = {};
  for (const node of main.querySelectorAll("[data-keep]")) {
    state[node.dataset.keep] = node.tagName === "DETAILS" ? node.open : node.value;
  }
  const focused = document.activeElement?.dataset?.keep;
  return { state, focused, caret: document.activeElement?.selectionStart };
}

function restore({ state, focused, caret }) {
  for (const node of main.querySelectorAll("[data-keep]")) {
    const value = state[node.dataset.keep];
    if (value === undefined) continue;
    if (node.tagName === "DETAILS") node.open = value;
    else node.value = value;
    if (node.dataset.keep === focused) {
      node.focus();
      if (caret !== undefined && caret !== null && node.setSelectionRange) node.setSelectionRange(caret, caret);
    }
  }
}

let drawing = null;
let shown = null;

async function refresh() {
  if (drawing) return drawing;
  drawing = (async () => {
    const current = route();
    for (const link of document.querySelectorAll("nav a")) {
      link.classList.toggle("active", link.dataset.section === current.section);
    }
    let nodes;
    try {
      nodes = await current.view(current.params, current.query);
    } catch (error) {
      nodes = h("div", { class: "error" }, h("strong", {}, "Could not load this page: "), error.message);
    }
    if (current.section !== "inbox") badge().catch(() => {});
    const keep = shown === location.hash ? kept() : { state: {} };
    main.replaceChildren(...[nodes].flat().filter(Boolean));
    restore(keep);
    shown = location.hash;
    document.getElementById("refreshed").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.ready = "true";
  })();
  try {
    await drawing;
  } finally {
    drawing = null;
  }
}

async function badge() {
  setBadge((await api("/inbox")).total);
}

onRedraw(refresh);
document.getElementById("service").textContent = meta.service;
if (meta.auth) {
  document.getElementById("who").textContent = `${meta.token} (${(meta.scopes || []).join(", ")})`;
  const out = document.getElementById("signout");
  out.hidden = false;
  out.addEventListener("click", signOut);
}
window.addEventListener("hashchange", () => {
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  refresh();
});
setInterval(() => { if (!document.hidden) refresh(); }, REFRESH);
refresh();
