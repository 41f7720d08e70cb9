// What the pages' scripts (desk.js, supervisor.js) share: DOM helpers and the call to
// the JSON API with the session's CSRF token. Plain JavaScript, no library; load it
// before the page's script. smshostPage(home, csrf): `home` is where a sign-in brings
// the browser back after a 401 (the session ended); `csrf()` answers the session's
// token (X-CSRF-Token, from GET /api/session), sent with every unsafe call. Nothing the
// API answers is parsed as HTML (textContent only).
"use strict";
window.smshostPage = function (home, csrf) {
  const $ = (id) => document.getElementById(id);
  // Leaving the page (sign-out, a link): a read still under way may come back 401 then;
  // it must not send the browser anywhere else than where it is going.
  let leaving = false;
  window.addEventListener("beforeunload", () => { leaving = true; });

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  async function call(method, path, body) {
    const headers = {Accept: "application/json"};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRF-Token"] = csrf();
    let response;
    try {
      response = await fetch(path, {method, headers, credentials: "same-origin",
                                    body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (err) {
      return {status: 0, data: {message: "the server cannot be reached"}};
    }
    if (response.status === 401 && !leaving) {
      window.location.assign("/login?next=" + encodeURIComponent(home));
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    return {status: response.status, data};
  }

  function reason(answer) {
    const said = answer.data && answer.data.message;
    return said ? `${answer.status}: ${said}` : `answer ${answer.status}`;
  }

  function problem(what, answer) {
    const node = $("problem");
    node.textContent = answer ? `${what} failed (${reason(answer)}).` : what;
    node.hidden = false;
  }

  return {$, el, call, reason, problem};
};
