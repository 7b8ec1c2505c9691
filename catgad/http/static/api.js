// The JSON API, with the token this browser signed in with (see catgad/http/ui.py).
export const meta = JSON.parse(document.getElementById("catgad-meta").textContent);

export function token() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === meta.cookie) return decodeURIComponent(rest.join("="));
  }
  return null;
}

export function signOut() {
  document.cookie = `${meta.cookie}=; Path=/ui; Max-Age=0; SameSite=Strict`;
  location.replace("/ui/signin");
}

// May the token take an action needing `scope`? (An open API: anyone may.)
export function can(scope) {
  if (!meta.auth) return true;
  return Array.isArray(meta.scopes) && meta.scopes.includes(scope);
}

export class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, { method = "GET", body, accept = "application/json" } = {}) {
  const headers = { Accept: accept };
  const secret = token();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(path, init);
  const type = answer.headers.get("content-type") || "";
  if (answer.status === 401 && meta.auth) {
    location.replace("/ui/signin?reason=unauthorized");
    throw new Problem(401, { title: "Sign in again" });
  }
  if (!answer.ok) {
    const problem = type.includes("json") ? await answer.json() : { title: await answer.text() };
    throw new Problem(answer.status, problem);
  }
  return type.includes("json") ? answer.json() : answer.text();
}
