// The login page: sends the token once in a POST body; the session cookie
// kvzd sets is all the UI uses afterwards.
const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.textContent = "";
  const token = form.token.value;
  let r;
  try {
    r = await fetch("/ui/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
    });
  } catch (e) {
    error.textContent = "kvzd did not answer: " + e.message;
    return;
  }
  if (r.ok) {
    form.token.value = "";
    location.replace("/");
    return;
  }
  const body = await r.json().catch(() => null);
  error.textContent = body?.error?.message || "login failed (" + r.status + ")";
  form.token.select();
});
