// What every view shares: the toast, the inbox badge, and taking an action.
import { api } from "./api.js";

let redraw = async () => {};
export function onRedraw(fn) {
  redraw = fn;
}

export function setBadge(count) {
  const node = document.getElementById("badge");
  node.textContent = String(count);
  node.hidden = count === 0;
}

let toastTimer = null;
export function toast(text, bad = false) {
  const node = document.getElementById("toast");
  node.textContent = text;
  node.className = bad ? "bad" : "good";
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 6000);
}

// POST an action; say how it went, then draw the page again at once.
export async function act(label, href, body, confirmText) {
  if (confirmText && !window.confirm(confirmText)) return;
  try {
    await api(href, { method: "POST", body });
    toast(`${label}: done`);
  } catch (error) {
    toast(`${label}: ${error.message}`, true);
  }
  await redraw();
}
