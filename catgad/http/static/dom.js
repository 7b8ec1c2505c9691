// A small element builder: h("a", {href: "#/x", class: "y", onclick: f}, "text", child, [more]).
// Text is always set as text, never parsed as markup.
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "value") node.value = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

export function table(headings, rows, empty = "None.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, headings.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

export function badge(text, kind = text) {
  return h("span", { class: `status status-${String(kind).replace(/[^a-z_-]/gi, "")}` }, text);
}

// "3 min ago", "in 2 h": a moment relative to now, the exact time in its tooltip
export function when(moment) {
  if (!moment) return "";
  const t = Date.parse(moment);
  if (Number.isNaN(t)) return String(moment);
  const seconds = Math.round((t - Date.now()) / 1000);
  const size = Math.abs(seconds);
  const [n, unit] = size < 60 ? [size, "s"] : size < 3600 ? [Math.round(size / 60), "min"]
    : size < 172800 ? [Math.round(size / 3600), "h"] : [Math.round(size / 86400), "d"];
  const text = seconds > 1 ? `in ${n} ${unit}` : size <= 1 ? "now" : `${n} ${unit} ago`;
  return h("time", { datetime: moment, title: moment }, text);
}

export const enc = encodeURIComponent;
