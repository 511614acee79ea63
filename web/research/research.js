// 网络教研 / 同课异构: teaching-research activities that link lessons of one topic by different teachers.
//
// /research/        the activities the user organizes or takes part in (researchers and admins: also
//                   their region's), open or closed, and the form that sets one up (lessons from
//                   GET /lessons, participants from GET /research/candidates).
// /research/?id=N   the activity: its lessons side by side, each pane on its own: a held lesson's recording
//                   (the replay page embedded, /replay/?id=R&embed=1, its own clock and 评课 panel), a
//                   lesson in progress (the patrol full view embedded, /patrol/?embed=1#lesson=L: the
//                   teacher's camera, screen and sound, silently, with its live 评课 panel), or when it
//                   starts. A shared discussion: a comment names a lesson and is placed at that pane's clock
//                   (live: the server places it), clicking it takes the pane there; others' comments come
//                   by polling. The scores per lesson, the members and who took part; the organizer adds
//                   participants and closes the activity with its outcome (研讨结论), after which it is
//                   read-only.
import { api, ApiError, confirmDialog, el, fill, fmtDate, fmtDateTime, fmtRange, fmtTime, mountHeader, requireLogin,
  ROLE_LABEL, showError, statusBadge, todayISO, addDays, toast } from "/assets/api.js";
import { mmss } from "/patrol/evaluation.js";

const $ = (id) => document.getElementById(id);
const KIND = { same_topic: "同课异构", observation: "观课研讨" };
const PART = { organizer: "组织者", teacher: "授课教师", participant: "参与者" };
const COMMENTS_MS = 3000;   // new comments of others
const ACTIVITY_MS = 6000;   // scores, members, a lesson that started or ended

const user = requireLogin(["admin", "teacher", "researcher"]);
const mayCreate = user && (user.role === "teacher" || user.role === "researcher");

/** "课例 A" for the i-th lesson (by position). */
function letter(i) { return `课例 ${String.fromCharCode(65 + i)}`; }

/** Save a download that needs the login (a link cannot send the bearer header). */
async function saveFile(path, fallback) {
  const resp = await api(path, { raw: true });
  const blob = await resp.blob();
  const m = /filename\*=UTF-8''([^;]+)|filename="([^"]+)"/.exec(resp.headers.get("content-disposition") || "");
  const a = el("a", { href: URL.createObjectURL(blob), download: m ? decodeURIComponent(m[1] || m[2]) : fallback });
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

// ------------------------------------------------------------------ the list and the new-activity form

const list = { status: "open", picked: new Map(), chosen: new Map(), lessons: [] };

async function loadList() {
  const page = await api("/research/activities", { query: { status: list.status } });
  const body = $("activities").tBodies[0];
  fill(body, page.data.length ? page.data.map((a) => el("tr", { dataset: { activity: String(a.id) } },
    el("td", {}, el("a", { href: `/research/?id=${a.id}` }, a.title)),
    el("td", {}, a.topic),
    el("td", {}, KIND[a.kind] || a.kind),
    el("td", {}, `${a.subject} / ${a.grade}`),
    el("td", {}, a.organizer_name),
    el("td", { class: "num" }, a.lessons),
    el("td", { class: "num" }, a.members),
    el("td", { class: "nowrap" }, fmtDateTime(a.created_at)),
    el("td", { class: "actions" }, el("a", { class: "btn btn-primary", href: `/research/?id=${a.id}` }, "进入"))))
    : el("tr", {}, el("td", { colspan: 9, class: "empty" }, list.status === "open"
      ? "没有进行中的教研活动" + (mayCreate ? "，可点击“新建教研活动”发起一次同课异构或观课研讨" : "") : "没有已结束的教研活动")));
  $("count").textContent = `共 ${page.count} 项`;
}

function lessonRow(l) {
  const box = el("input", { type: "checkbox", checked: list.picked.has(l.id), dataset: { lesson: String(l.id) },
    "aria-label": `选择 ${l.title}`, onchange: (e) => pick(l, e.target.checked) });
  return el("tr", { dataset: { lesson: String(l.id) } },
    el("td", {}, box),
    el("td", { class: "nowrap" }, `${fmtDate(l.day)} ${fmtRange(l.starts_at, l.ends_at)}`),
    el("td", {}, l.title),
    el("td", {}, `${l.subject} / ${l.grade}`),
    el("td", {}, l.teacher_name),
    el("td", {}, l.main_school_name),
    el("td", {}, statusBadge(l.status)));
}

function pick(lesson, on) {
  if (on) list.picked.set(lesson.id, lesson); else list.picked.delete(lesson.id);
  const form = $("new-form");
  if (on && !form.elements.subject.value) form.elements.subject.value = lesson.subject;
  if (on && !form.elements.grade.value) form.elements.grade.value = lesson.grade;
  const teachers = new Set([...list.picked.values()].map((l) => l.teacher_id));
  $("picked-note").textContent = `已选 ${list.picked.size} 节，${teachers.size} 位教师`;
}

async function loadLessons() {
  const page = await api("/lessons", { query: { date_from: $("l-from").value, date_to: $("l-to").value, limit: 500 } });
  const subject = $("l-subject").value.trim();
  list.lessons = page.data.filter((l) => !["cancelled", "missed"].includes(l.status) && (!subject || l.subject.includes(subject)));
  const body = $("lesson-table").tBodies[0];
  fill(body, list.lessons.length ? list.lessons.map(lessonRow)
    : el("tr", {}, el("td", { colspan: 7, class: "empty" }, "这段时间没有可选的课程")));
}

function renderChosen() {
  fill($("chosen"), [...list.chosen.values()].map((p) => el("span", { class: "chip", dataset: { person: String(p.id) } },
    `${p.name}（${ROLE_LABEL[p.role] || p.role}${p.school_name ? " · " + p.school_name : ""}）`,
    el("button", { type: "button", class: "btn btn-ghost btn-icon", "aria-label": `移除 ${p.name}`,
      onclick: () => { list.chosen.delete(p.id); renderChosen(); } }, "×"))));
}

/** People the caller may add, each with a button that calls `add(person)`. */
async function findPeople(q, target, add, exclude = new Set()) {
  const people = (await api("/research/candidates", { query: { q } })).filter((p) => !exclude.has(p.id));
  fill(target, people.length ? people.map((p) => el("li", { dataset: { candidate: String(p.id) } },
    el("strong", {}, p.name), el("span", { class: "muted small" }, `${ROLE_LABEL[p.role] || p.role}${p.school_name ? " · " + p.school_name : ""}`),
    el("span", { class: "spacer" }),
    el("button", { type: "button", class: "btn", onclick: () => add(p) }, "添加")))
    : el("li", { class: "muted small" }, "没有找到可添加的人员"));
}

async function createActivity(e) {
  e.preventDefault();
  const form = e.target;
  const error = $("form-error");
  error.hidden = true;
  const body = { title: form.elements.title.value.trim(), topic: form.elements.topic.value.trim(), kind: form.elements.kind.value,
    subject: form.elements.subject.value.trim(), grade: form.elements.grade.value.trim(),
    description: form.elements.description.value.trim(), instance_ids: [...list.picked.keys()], member_ids: [...list.chosen.keys()] };
  try {
    const a = await api("/research/activities", { method: "POST", body });
    location.assign(`/research/?id=${a.id}`);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    error.hidden = false;
    error.textContent = err.message;
  }
}

async function listView() {
  $("list-view").hidden = false;
  document.title = "教研活动 · 三课";
  for (const tab of document.querySelectorAll(".tabs [data-status]")) {
    tab.addEventListener("click", () => {
      list.status = tab.dataset.status;
      for (const t of document.querySelectorAll(".tabs [data-status]")) t.classList.toggle("active", t === tab);
      loadList().catch(showError);
    });
  }
  if (mayCreate) {
    $("btn-new").hidden = false;
    const today = todayISO();
    $("l-from").value = addDays(today, -14);
    $("l-to").value = addDays(today, 14);
    $("btn-new").addEventListener("click", () => {
      $("new-form").hidden = false;
      $("new-form").scrollIntoView();
      loadLessons().catch(showError);
    });
    $("btn-cancel").addEventListener("click", () => { $("new-form").hidden = true; });
    $("btn-lessons").addEventListener("click", () => loadLessons().catch(showError));
    const search = () => findPeople($("cand-q").value.trim(), $("candidates"), (p) => { list.chosen.set(p.id, p); renderChosen(); })
      .catch(showError);
    $("btn-cand").addEventListener("click", search);
    $("cand-q").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); search(); } });
    $("new-form").addEventListener("submit", (e) => createActivity(e).catch(showError));
  }
  await loadList();
}

// ------------------------------------------------------------------ one activity

const view = {
  id: 0,
  activity: null,
  panes: new Map(),   // instance_id → {lesson, index, node, mode, frame}
  comments: new Map(), // id → Comment
  lastComment: 0,
  polls: [],         // the comment and activity polls, stopped once the activity is closed (nothing changes then)
};

function lessonLabel(instanceId) {
  const pane = view.panes.get(instanceId);
  return pane ? letter(pane.index) : "";
}

/** What a pane shows: the live lesson, its recording, or when it starts. */
function paneMode(l) {
  if (l.live) return "live";
  if (l.recording_id) return `replay:${l.recording_id}`;
  return "waiting";
}

/** The embedded page fits its content (no scroll bar inside the pane). */
function fitFrame(frame) {
  frame.addEventListener("load", () => {
    const win = frame.contentWindow;
    const doc = frame.contentDocument;
    if (!win || !doc || !doc.body) return;
    const fit = () => { frame.style.height = `${Math.max(240, Math.ceil(doc.body.scrollHeight))}px`; };
    new win.ResizeObserver(fit).observe(doc.body);
    fit();
  });
}

function paneBody(l, mode) {
  if (mode === "live" || mode.startsWith("replay:")) {
    const src = mode === "live" ? `/patrol/?embed=1#lesson=${l.instance_id}` : `/replay/?id=${l.recording_id}&embed=1`;
    const frame = el("iframe", { src, title: `${l.title}（${mode === "live" ? "直播" : "录像"}）`, allow: "autoplay; fullscreen", scrolling: "no" });
    fitFrame(frame);
    return frame;
  }
  const text = l.status === "scheduled" ? `尚未开课 ${fmtDate(l.day)} ${fmtTime(l.starts_at)}` : "本节课没有可回放的录像";
  return el("div", { class: "pane-wait" }, text);
}

function scoreText(l) {
  return l.evaluations ? `评课 ${l.evaluations} 份 · 平均 ${l.average_score === null ? "—" : l.average_score.toFixed(1)} 分` : "尚无评课";
}

function renderPanes(a) {
  const box = $("panes");
  box.dataset.count = String(a.lessons.length);
  a.lessons.forEach((l, index) => {
    const mode = paneMode(l);
    let pane = view.panes.get(l.instance_id);
    if (!pane) {
      pane = { lesson: l, index, mode: null, frame: null, node: null };
      view.panes.set(l.instance_id, pane);
    }
    pane.lesson = l;
    if (pane.mode !== mode) {  // new, or the lesson started / ended: its body is made again
      const body = paneBody(l, mode);
      pane.frame = body.tagName === "IFRAME" ? body : null;
      pane.mode = mode;
      const node = el("article", { class: "pane card", dataset: { lesson: String(l.instance_id), mode } },
        el("header", { class: "pane-head" },
          el("span", { class: "pane-letter" }, letter(index)),
          el("div", { class: "pane-title" }, el("strong", {}, l.title),
            el("small", { class: "muted" }, `${l.teacher_name} · ${l.school_name} · ${fmtDate(l.day)} ${fmtRange(l.starts_at, l.ends_at)}`)),
          el("span", { class: "spacer" }),
          mode === "live" ? el("span", { class: "badge badge-live" }, "直播中") : mode === "waiting" ? statusBadge(l.status) : el("span", { class: "badge" }, "录像"),
          el("span", { class: "pane-score muted small", dataset: { score: "" } })),
        el("div", { class: "pane-body" }, body));
      if (pane.node) pane.node.replaceWith(node); else box.appendChild(node);
      pane.node = node;
    }
    pane.node.querySelector("[data-score]").textContent = scoreText(l);
  });
}

function renderScores(a) {
  fill($("scores").tBodies[0], a.lessons.map((l, i) => el("tr", { dataset: { lesson: String(l.instance_id) } },
    el("td", {}, `${letter(i)} ${l.title}（${l.teacher_name}）`),
    el("td", { class: "num", dataset: { evaluations: "" } }, l.evaluations),
    el("td", { class: "num", dataset: { average: "" } }, l.average_score === null ? "—" : l.average_score.toFixed(1)))));
}

function renderMembers(a) {
  $("member-count").textContent = `${a.members.length} 人，已参与 ${a.members.filter((m) => m.took_part).length} 人`;
  fill($("members"), a.members.map((m) => el("li", { dataset: { member: String(m.user_id), tookPart: String(m.took_part) } },
    el("div", { class: "person" }, el("strong", {}, m.name),
      el("small", { class: "muted" }, `${PART[m.part] || m.part} · ${ROLE_LABEL[m.role] || m.role}${m.school_name ? " · " + m.school_name : ""}`)),
    el("span", { class: "spacer" }),
    el("span", { class: "muted small nowrap" }, `发言 ${m.comments} · 评课 ${m.scores}`),
    el("span", { class: m.took_part ? "badge badge-ok" : "badge" }, m.took_part ? "已参与" : "未参与"))));
}

function renderCommentChoice(a) {
  const select = $("comment-lesson");
  const keep = select.value;
  fill(select, el("option", { value: "" }, "整体研讨"), a.lessons.map((l, i) =>
    el("option", { value: String(l.instance_id) }, `${letter(i)}：${l.title}（${l.teacher_name}）`)));
  select.value = [...select.options].some((o) => o.value === keep) ? keep : "";
}

function render(a) {
  view.activity = a;
  document.title = `${a.title} · 教研活动 · 三课`;
  $("a-title").textContent = a.title;
  $("a-meta").textContent = `${KIND[a.kind] || a.kind} · 课题：${a.topic} · ${a.subject} ${a.grade} · 组织者 ${a.organizer_name} · 创建于 ${fmtDateTime(a.created_at)}`;
  const open = a.status === "open";
  fill($("a-status"), el("span", { class: open ? "badge badge-live" : "badge badge-held", dataset: { status: a.status } },
    open ? "进行中" : `已结束 ${fmtDateTime(a.closed_at)}`));
  $("a-description").hidden = !a.description;
  $("a-description").textContent = a.description || "";
  $("outcome-card").hidden = open;
  $("a-outcome").textContent = a.outcome || "（未填写研讨结论）";
  $("activity-view").classList.toggle("closed", !open);
  $("comment-form").hidden = !open;
  $("add-members").hidden = !(open && a.may_manage);
  $("close-card").hidden = !(open && a.may_manage);
  if (!open) for (const t of view.polls.splice(0)) clearInterval(t);
  renderPanes(a);
  renderScores(a);
  renderMembers(a);
  if (open) renderCommentChoice(a);
  addComments(a.comments);
}

function commentNode(c) {
  const label = c.instance_id ? lessonLabel(c.instance_id) : "整体研讨";
  const at = c.offset_s !== null && c.offset_s !== undefined ? mmss(c.offset_s) : "";
  return el("li", { dataset: { comment: String(c.id), lesson: c.instance_id ? String(c.instance_id) : "", offset: at ? String(c.offset_s) : "" },
    class: at ? "seekable" : null, title: at ? "点击跳到该课例的这一时刻" : null, tabindex: at ? "0" : null },
  el("div", { class: "comment-head" }, el("strong", {}, c.author_name),
    el("span", { class: "comment-lesson" }, label), at ? el("span", { class: "comment-at" }, at) : null,
    el("span", { class: "spacer" }), el("small", { class: "muted" }, fmtDateTime(c.created_at))),
  el("p", {}, c.text));
}

/** Add comments not shown yet (the poll and one's own post may bring the same one). */
function addComments(comments) {
  const box = $("comments");
  for (const c of comments) {
    if (view.comments.has(c.id)) continue;
    view.comments.set(c.id, c);
    view.lastComment = Math.max(view.lastComment, c.id);
    const node = commentNode(c);
    const after = [...box.children].find((n) => Number(n.dataset.comment) > c.id);
    box.insertBefore(node, after || null);
  }
  const empty = box.querySelector(".empty");
  if (view.comments.size && empty) empty.remove();
  if (!view.comments.size && !empty) box.appendChild(el("li", { class: "empty muted small" }, "还没有发言"));
  $("comment-count").textContent = `${view.comments.size} 条`;
}

/** A pane's recording clock (its replay page's), or null (live, not loaded, none). */
function paneClock(pane) {
  const replay = pane && pane.mode.startsWith("replay:") && pane.frame && pane.frame.contentWindow
    && pane.frame.contentWindow.sankeReplay;
  return replay ? replay.clock() : null;
}

function showCommentAt() {
  const id = Number($("comment-lesson").value);
  const pane = id ? view.panes.get(id) : null;
  const t = paneClock(pane);
  $("comment-at").textContent = !pane ? "" : pane.mode === "live" ? "记在直播的此刻" : t !== null ? `记在录像 ${mmss(t)} 处` : "";
}

async function postComment(e) {
  e.preventDefault();
  const text = $("comment-text").value.trim();
  if (!text) return;
  const body = { text };
  const id = Number($("comment-lesson").value);
  if (id) {
    body.instance_id = id;
    const t = paneClock(view.panes.get(id));
    if (t !== null) body.offset_s = Math.round(t * 10) / 10;
  }
  try {
    const c = await api(`/research/activities/${view.id}/comments`, { method: "POST", body });
    $("comment-text").value = "";
    addComments([c]);
  } catch (err) {
    if (err instanceof ApiError && err.status === 409) await refresh();  // closed meanwhile
    throw err;
  }
}

/** Clicking a comment placed on a recording takes that pane to its time. */
function seekTo(li) {
  if (!li || li.dataset.offset === "" || !li.dataset.lesson) return;
  const pane = view.panes.get(Number(li.dataset.lesson));
  const replay = pane && pane.mode.startsWith("replay:") && pane.frame && pane.frame.contentWindow.sankeReplay;
  if (!replay) { toast("该课例当前没有录像可跳转", "warn"); return; }
  replay.seek(Number(li.dataset.offset));
  pane.node.scrollIntoView({ block: "nearest" });
}

async function pollComments() {
  const fresh = await api(`/research/activities/${view.id}/comments`, { query: { after: view.lastComment || undefined } });
  addComments(fresh);
}

async function refresh() {
  render(await api(`/research/activities/${view.id}`));
}

async function addMember(p) {
  render(await api(`/research/activities/${view.id}/members`, { method: "POST", body: { user_ids: [p.id] } }));
  fill($("member-candidates"));
  $("member-q").value = "";
  toast(`已添加 ${p.name}`, "ok");
}

async function closeActivity() {
  const outcome = $("outcome-text").value.trim();
  if (!outcome) {
    toast("请填写研讨结论", "warn");
    $("outcome-text").focus();
    return;
  }
  if (!(await confirmDialog("结束后活动只读，不能再发言或添加成员。确定结束吗？", { okLabel: "结束活动", kind: "danger" }))) return;
  render(await api(`/research/activities/${view.id}/close`, { method: "POST", body: { outcome } }));
  toast("活动已结束", "ok");
}

async function activityView(id) {
  view.id = id;
  $("activity-view").hidden = false;
  const a = await api(`/research/activities/${id}`);
  render(a);
  api(`/research/activities/${id}/attend`, { method: "POST" }).catch(showError);
  $("comment-form").addEventListener("submit", (e) => postComment(e).catch(showError));
  $("comment-lesson").addEventListener("change", showCommentAt);
  $("comments").addEventListener("click", (e) => seekTo(e.target.closest("li[data-comment]")));
  $("comments").addEventListener("keydown", (e) => { if (e.key === "Enter") seekTo(e.target.closest("li[data-comment]")); });
  $("btn-export").addEventListener("click", () => saveFile(`/research/activities/${id}/export`, `教研活动-${id}.csv`).catch(showError));
  const memberSearch = () => findPeople($("member-q").value.trim(), $("member-candidates"), (p) => addMember(p).catch(showError),
    new Set(view.activity.members.map((m) => m.user_id))).catch(showError);
  $("btn-member-q").addEventListener("click", memberSearch);
  $("member-q").addEventListener("keydown", (e) => { if (e.key === "Enter") memberSearch(); });
  $("btn-close").addEventListener("click", () => closeActivity().catch(showError));
  // quiet on a failed poll (a network gap): the next one tries again
  if (a.status === "open") {
    view.polls.push(setInterval(() => pollComments().catch((e) => console.warn("research: comments", e.message)), COMMENTS_MS));
    view.polls.push(setInterval(() => refresh().catch((e) => console.warn("research: activity", e.message)), ACTIVITY_MS));
  }
  setInterval(showCommentAt, 500);
  window.sankeResearch = { view, refresh, pollComments };
}

// ------------------------------------------------------------------ start

if (user) {
  mountHeader(user, { title: "教研活动" });
  const id = new URLSearchParams(location.search).get("id");
  (id ? activityView(Number(id)) : listView()).catch(showError);
}
