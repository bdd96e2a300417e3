// kvzd's REST API from the browser: the session cookie goes along by
// itself; every request but GET carries the session's CSRF token.
let csrf = null;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function toLogin() {
  location.replace("/ui/login");
}

export async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) {
    toLogin();
    throw new ApiError(401, "logged out");
  }
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data?.error?.message || "HTTP " + r.status);
  return data;
}

// The page was loaded with a session cookie: fetch its CSRF token.
export async function startSession() {
  const s = await api("GET", "/ui/session").catch(() => null);
  if (!s) {
    toLogin();
    return false;
  }
  csrf = s.csrf;
  return true;
}

export async function logout() {
  await api("POST", "/ui/logout").catch(() => null);
  toLogin();
}
