// SanKe web shell: the API client, the login session and small shared UI helpers.
// Plain ES module, no build step. Every page imports what it needs:
//   import { api, requireLogin, mountHeader, toast } from "/assets/api.js";
//
// Times: the API sends wall-clock times of the timetable's zone (Asia/Shanghai) without an
// offset ("2026-09-07T08:00:00"); the formatters below show them as they are, never shifted by
// the browser's own zone.

const SESSION_KEY = "sanke.session";
const FLASH_KEY = "sanke.flash";
const API_PREFIX = "/api/v1";
const ZONE = "Asia/Shanghai";

export const ROLE_LABEL = { admin: "管理员", teacher: "教师", terminal: "教室终端", student: "学生", researcher: "教研员" };
export const KIND_LABEL = { dedicated: "专递课堂", master: "名师课堂", famous_school: "名校网络课堂" };
/** 名校网络课堂: how home students who are not on stage watch (a series' `stream_from`). */
export function streamFromText(v) {
  return v === null || v === undefined ? "实时互动（不使用直播流）" : v === 0 ? "始终观看直播流" : `在线学生多于 ${v} 人时观看直播流`;
}
/** The choices offered for `stream_from`, the current value among them. */
export function streamFromChoices(current) {
  const values = [null, 0, 10, 30, 50, 100, 300];
  if (!values.includes(current ?? null)) values.push(current);
  return values.map((v) => [v === null ? "" : String(v), streamFromText(v)]);
}
export const STATUS_LABEL = { scheduled: "待上课", live: "上课中", held: "已上课", missed: "未开课", cancelled: "已停课" };
export const WEEKDAY_LABEL = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"];

/** An error answered by the API (or the network): `message` is the server's zh-CN text. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the server was unreachable
   * @param {string} code   the server's machine code (`conflict`, `validation_error`, ...)
   * @param {string} message the server's zh-CN message
   * @param {object} body   the whole error body (e.g. `conflicts`, `errors`)
   */
  constructor(status, code, message, body = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/**
 * Call the SanKe API and return the parsed JSON (null for 204).
 *
 * Paths: "/lessons/5" (any path starting with "/" but not "/api/") goes to "/api/v1/lessons/5";
 * a path starting with "/api/" or "http" is used as it is.
 * `body`: a plain object is sent as JSON, a FormData / Blob / string as it is.
 * `raw: true` returns the fetch Response (after the status check) instead of JSON — for CSV,
 * iCalendar or other downloads.
 * `query`: an object turned into the query string (null/undefined/"" values left out).
 *
 * Errors throw ApiError with the server's message. A 401 on a call that sent a token means the
 * login ended: the session is cleared and the browser goes to the login page.
 */
export async function api(path, { method = "GET", body, raw = false, query, headers = {} } = {}) {
  let url = path;
  if (path.startsWith("/") && !path.startsWith("/api/")) url = API_PREFIX + path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === "") continue;
      if (Array.isArray(v)) v.forEach((x) => qs.append(k, x));
      else qs.append(k, String(v));
    }
    const s = qs.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const sess = session();
  const h = { Accept: "application/json", ...headers };
  if (sess) h.Authorization = "Bearer " + sess.token;
  let payload = body;
  if (body !== undefined && body !== null && !(body instanceof FormData) && !(body instanceof Blob)
      && typeof body !== "string") {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(url, { method, headers: h, body: payload });
  } catch (e) {
    throw new ApiError(0, "network", "无法连接服务器，请检查网络后重试");
  }
  if (!resp.ok) {
    let data = {};
    try { data = await resp.json(); } catch { /* not JSON */ }
    const message = data.message || (resp.status >= 500 ? "服务器出错，请稍后重试" : `请求失败（${resp.status}）`);
    if (resp.status === 401 && sess) {
      clearSession();
      flash("登录已过期，请重新登录");
      location.assign(loginUrl());
    }
    throw new ApiError(resp.status, data.code || `http_${resp.status}`, message, data);
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

/** The stored login `{token, user, expiresAt}` or null (none, or expired). */
export function session() {
  let s;
  try { s = JSON.parse(localStorage.getItem(SESSION_KEY) || "null"); } catch { s = null; }
  if (!s || !s.token || !s.user) return null;
  if (s.expiresAt && Date.now() > s.expiresAt) { clearSession(); return null; }
  return s;
}

function clearSession() { localStorage.removeItem(SESSION_KEY); }

/** Sign in; stores the session and returns the user. Throws ApiError ("用户名或密码错误"). */
export async function login(username, password) {
  clearSession();
  const out = await api("/auth/login", { method: "POST", body: { username, password } });
  const s = { token: out.access_token, user: out.user, expiresAt: Date.now() + out.expires_in * 1000 };
  localStorage.setItem(SESSION_KEY, JSON.stringify(s));
  return out.user;
}

/** Forget the session and go to the login page. */
export function logout() {
  clearSession();
  location.assign("/login.html");
}

function loginUrl() {
  const next = location.pathname + location.search + location.hash;
  return "/login.html" + (next && next !== "/" && !next.startsWith("/login.html") ? "?next=" + encodeURIComponent(next) : "");
}

/**
 * The signed-in user, or null after starting a redirect:
 * no session → `/login.html?next=<this page>`; a role not in `roles` → the home page with a
 * message saying the page is not for this role. Use: `const user = requireLogin(["admin"]); if (user) main(user);`
 * @param {string[]} [roles] allowed roles; empty/omitted = any signed-in user
 */
export function requireLogin(roles = []) {
  const s = session();
  if (!s) { location.replace(loginUrl()); return null; }
  if (roles.length && !roles.includes(s.user.role)) {
    flash(`当前账号（${ROLE_LABEL[s.user.role] || s.user.role}）无权访问该页面，已返回首页`);
    location.replace("/");
    return null;
  }
  return s.user;
}

/** The page a role lands on after login (students land on the home page: their lessons). */
export function homeFor(user) {
  return { admin: "/admin/", researcher: "/patrol/", terminal: "/lesson/receiving.html",
    teacher: "/lesson/main.html" }[user.role] || "/";
}

/**
 * How `user` takes part in lesson `l` (a row of GET /lessons), as far as the row tells:
 * "main" (its teacher, or the terminal of its main classroom), "assistant" (助教 of one of its
 * receiving classrooms), "receiving" (the terminal of a receiving classroom), "student", or null.
 */
export function seatIn(user, l) {
  const receivers = l.receivers || [];
  switch (user.role) {
    case "teacher":
      if (l.teacher_id === user.id) return "main";
      return receivers.some((r) => r.assistant_id === user.id) ? "assistant" : null;
    case "terminal":
      if (l.main_classroom_id === user.classroom_id) return "main";
      return receivers.some((r) => r.classroom_id === user.classroom_id) ? "receiving" : null;
    case "student": return "student";
    default: return null;
  }
}

/** The lesson page for a seat (seatIn): the main classroom, the receiving classroom or the student page. */
export function lessonPageFor(seat, lessonId) {
  const page = { main: "main", assistant: "receiving", receiving: "receiving", student: "student" }[seat] || "receiving";
  return `/lesson/${page}.html` + (lessonId ? `?lesson=${lessonId}` : "");
}

/**
 * Where `user` lands after login. Teachers and terminals by today's lessons: a teacher who only
 * assists today lands on the receiving classroom, one who teaches on the main classroom (which
 * lists the lessons they assist too); a terminal whose next lesson is given in its own classroom on
 * the main classroom, otherwise on the receiving kiosk.
 */
export async function landingFor(user) {
  if (user.role !== "teacher" && user.role !== "terminal") return homeFor(user);
  let rows;
  try {
    const today = todayISO();
    rows = (await api("/lessons", { query: { date_from: today, date_to: today, limit: 500 } })).data;
  } catch { return homeFor(user); }
  const mine = rows.filter((l) => l.status !== "cancelled" && seatIn(user, l));
  if (user.role === "teacher") {
    const seats = new Set(mine.map((l) => seatIn(user, l)));
    return seats.has("assistant") && !seats.has("main") ? "/lesson/receiving.html" : "/lesson/main.html";
  }
  const now = Date.now();
  const next = mine.filter((l) => ["scheduled", "live"].includes(l.status) && new Date(l.ends_at) > now)
    .sort((a, b) => a.starts_at.localeCompare(b.starts_at))[0];
  return next && seatIn(user, next) === "main" ? "/lesson/main.html" : "/lesson/receiving.html";
}

/** "sysadmin" | "region" | "school" for an admin (bureau admins carry a region). */
export function adminScope(user) {
  if (user.role !== "admin") return null;
  if (user.school_id) return "school";
  if (user.region_id) return "region";
  return "sysadmin";
}

// ---------------------------------------------------------------- flash + toast

/** Keep a message for the next page (shown by mountHeader / showFlash). */
export function flash(message) { sessionStorage.setItem(FLASH_KEY, message); }

/** Show and forget a message kept by flash(). */
export function showFlash() {
  const m = sessionStorage.getItem(FLASH_KEY);
  if (m) { sessionStorage.removeItem(FLASH_KEY); toast(m, "warn"); }
}

/**
 * A short message at the top of the screen. kind: "info" | "ok" | "warn" | "error".
 * Errors stay until tapped (or 8 s); the rest leave after 4 s.
 */
export function toast(message, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) {
    box = el("div", { id: "toasts", class: "toasts", role: "status", "aria-live": "polite" });
    document.body.appendChild(box);
  }
  const t = el("div", { class: `toast toast-${kind}` }, message);
  t.addEventListener("click", () => t.remove());
  box.appendChild(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
  return t;
}

/** Show an error (ApiError or anything else) as a toast with the server's message. */
export function showError(err) {
  const msg = err instanceof ApiError ? err.message : (err && err.message) || String(err);
  if (!(err instanceof ApiError)) console.warn(err);
  toast(msg, "error");
}

// ---------------------------------------------------------------- DOM helpers

/**
 * Build an element: el("button", {class: "btn", onclick: fn}, "保存").
 * attrs: `class`, `dataset` (object), `on<event>` (listener), boolean true/false, others as attributes.
 * children: strings, nodes, arrays, null (skipped).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "value") node.value = v;
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Escape-free text replacement of a container's children. */
export function fill(container, ...children) {
  container.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
}

/**
 * The top bar: product name, role links, the user's name and a logout button.
 * Inserted as the first child of <body> (or into #app-header if the page has one).
 * @param {object} user
 * @param {{title?: string, links?: Array<{href: string, label: string}>}} [opts] title: the document title
 */
export function mountHeader(user, { title = "", links } = {}) {
  const nav = (links || navLinks(user)).map((l) =>
    el("a", { href: l.href, class: "nav-link" + (isCurrent(l.href) ? " current" : "") }, l.label));
  if (title) document.title = `${title} · 三课`;
  const header = el("header", { class: "app-header" },
    el("a", { href: "/", class: "brand" }, "三课", el("small", {}, "三个课堂")),
    el("nav", { class: "nav" }, nav),
    el("span", { class: "who" }, user.display_name, el("small", {}, ROLE_LABEL[user.role] || user.role)),
    el("button", { type: "button", class: "btn btn-ghost", onclick: logout }, "退出"),
  );
  const slot = document.getElementById("app-header");
  if (slot) slot.replaceWith(header); else document.body.prepend(header);
  showFlash();
  return header;
}

function isCurrent(href) {
  const p = location.pathname;
  return href === p || (href !== "/" && href.endsWith("/") && p.startsWith(href) && p === href);
}

/** The default entry points of a role (the home page and the top bar show them). */
export function navLinks(user) {
  const home = { href: "/", label: "首页" };
  switch (user.role) {
    case "admin": return [home, { href: "/admin/", label: "管理" }, { href: "/admin/timetable.html", label: "课表" },
      { href: "/admin/series.html", label: "排课审批" }, { href: "/admin/import.html", label: "导入课表" }, { href: "/admin/demand.html", label: "需求订单" },
      { href: "/records/", label: "教学统计" }, { href: "/replay/", label: "录播资源库" }, { href: "/research/", label: "教研活动" },
      { href: "/admin/nodes.html", label: "服务器节点" },
      ...(adminScope(user) === "sysadmin" ? [{ href: "/admin/webhooks.html", label: "Webhook" }] : [])];
    case "teacher": return [home, { href: "/lesson/main.html", label: "主讲课堂" }, { href: "/timetable.html", label: "我的课表" },
      { href: "/records/", label: "教学统计" }, { href: "/records/teacher.html", label: "我的发展档案" }, { href: "/replay/", label: "录播资源库" },
      { href: "/research/", label: "教研活动" }];
    case "terminal": return [home, { href: "/lesson/receiving.html", label: "接收课堂" }];
    case "researcher": return [home, { href: "/patrol/", label: "巡课" }, { href: "/records/", label: "教学统计" },
      { href: "/replay/", label: "录播资源库" }, { href: "/research/", label: "教研活动" }];
    case "student": return [home, { href: "/replay/", label: "录播资源库" }];
    default: return [home];
  }
}

// ---------------------------------------------------------------- dialogs

/**
 * A modal dialog (<dialog>). `body`: node(s). `actions`: [{label, kind, onClick}] — onClick may be
 * async; returning false keeps the dialog open. Returns {dialog, close}.
 */
export function openDialog({ title, body, actions = [], wide = false }) {
  const dlg = el("dialog", { class: "dialog" + (wide ? " dialog-wide" : "") });
  const close = () => { dlg.close(); dlg.remove(); };
  const buttons = actions.map((a) => el("button", {
    type: "button", class: `btn ${a.kind ? "btn-" + a.kind : ""}`,
    onclick: async (e) => {
      const b = e.currentTarget;
      b.disabled = true;
      try {
        const keep = a.onClick ? await a.onClick({ close, dialog: dlg }) : undefined;
        if (keep !== false) close();
      } catch (err) { showError(err); } finally { b.disabled = false; }
    },
  }, a.label));
  dlg.append(
    el("div", { class: "dialog-head" }, el("h2", {}, title),
      el("button", { type: "button", class: "btn btn-ghost btn-icon", "aria-label": "关闭", onclick: close }, "×")),
    el("div", { class: "dialog-body" }, body),
    el("div", { class: "dialog-actions" }, buttons, el("button", { type: "button", class: "btn", onclick: close }, "取消")),
  );
  dlg.addEventListener("cancel", (e) => { e.preventDefault(); close(); });
  document.body.appendChild(dlg);
  dlg.showModal();
  return { dialog: dlg, close };
}

/** Ask a yes/no question; resolves true/false. */
export function confirmDialog(message, { okLabel = "确定", kind = "primary" } = {}) {
  return new Promise((resolve) => {
    let answered = false;
    const { dialog } = openDialog({
      title: "请确认", body: el("p", {}, message),
      actions: [{ label: okLabel, kind, onClick: () => { answered = true; resolve(true); } }],
    });
    dialog.addEventListener("close", () => { if (!answered) resolve(false); });
  });
}

// ---------------------------------------------------------------- dates and times

/** Today's date in the timetable's zone, "YYYY-MM-DD". */
export function todayISO() {
  return new Intl.DateTimeFormat("en-CA", { timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date());
}

/** "YYYY-MM-DD" of a Date's calendar day (local fields), or shift an ISO day by n days. */
export function isoDay(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}
export function addDays(iso, n) {
  const [y, m, d] = iso.split("-").map(Number);
  return isoDay(new Date(y, m - 1, d + n));
}
/** The Monday of the week holding the ISO day. */
export function mondayOf(iso) {
  const [y, m, d] = iso.split("-").map(Number);
  const wd = (new Date(y, m - 1, d).getDay() + 6) % 7;
  return addDays(iso, -wd);
}
/** 0 = Monday … 6 = Sunday. */
export function weekdayOf(iso) {
  const [y, m, d] = iso.split("-").map(Number);
  return (new Date(y, m - 1, d).getDay() + 6) % 7;
}

/** "08:00" from "2026-09-07T08:00:00+08:00" (the wall clock it names, no zone shift) or from "08:00:00". */
export function fmtTime(s) {
  if (!s) return "";
  const t = s.includes("T") ? s.split("T")[1] : s;
  return t.slice(0, 5);
}
/** "9月7日 周一" from "2026-09-07" (or a datetime string). */
export function fmtDate(s, { year = false } = {}) {
  if (!s) return "";
  const day = s.slice(0, 10);
  const [y, m, d] = day.split("-").map(Number);
  return `${year ? y + "年" : ""}${m}月${d}日 ${WEEKDAY_LABEL[weekdayOf(day)]}`;
}
/** "9月7日 周一 08:00". */
export function fmtDateTime(s) { return s ? `${fmtDate(s)} ${fmtTime(s)}` : ""; }
/** "08:00–08:40" of a lesson. */
export function fmtRange(a, b) { return `${fmtTime(a)}–${fmtTime(b)}`; }

/** A status badge for a lesson instance. */
export function statusBadge(status) {
  return el("span", { class: `badge badge-${status}` }, STATUS_LABEL[status] || status);
}
