// One lesson's teaching record (在线教学记录): status, times, attendance with every stay, link quality
// per classroom over time, the recording when there is one, and the patrol evaluations this user may read.
import { api, ApiError, confirmDialog, requireLogin, mountHeader, showError, toast, el, fill, fmtDate, fmtRange, fmtTime, fmtDateTime,
  KIND_LABEL } from "/assets/api.js";
import { pct, minutes, download, chartIn, COLORS } from "/records/common.js";
import { renderQuizzes } from "/records/quiz.js";
import { renderInsight } from "/records/insight.js";

const ROLE = { main: "主讲教室", receiving: "接收教室", student: "在家学生 / 听课教师" };
const STATUS_BADGE = { held: "badge-held", partly_held: "badge-warn", missed: "badge-missed", cancelled: "badge-cancelled" };
/** Where a recording plays (the recordings pages come with the recording feature). */
const recordingUrl = (id) => `/replay/?id=${encodeURIComponent(id)}`;

const id = new URLSearchParams(location.search).get("id");

function fact(label, value) {
  return [el("dt", {}, label), el("dd", {}, value)];
}

function lossText(a, b) {
  return a === null ? "—" : `${(a * 100).toFixed(1)}% / ${(b * 100).toFixed(1)}%`;
}

function rttText(a, b) {
  return a === null ? "—" : `${Math.round(a)} / ${Math.round(b)} ms`;
}

async function optional(promise) {
  try { return await promise; } catch (err) {
    if (err instanceof ApiError && (err.status === 403 || err.status === 404)) return null;
    throw err;
  }
}

function renderHeader(lesson, rec, stored) {
  document.getElementById("title").textContent = `《${lesson.title}》教学记录`;
  fill(document.getElementById("status"), el("span", { class: "badge " + (STATUS_BADGE[rec.status] || "") }, rec.status_label));
  document.getElementById("subtitle").textContent =
    `${fmtDate(lesson.day, { year: true })} ${fmtRange(lesson.starts_at, lesson.ends_at)} · ${KIND_LABEL[lesson.kind] || lesson.kind} · ` +
    `${lesson.subject} ${lesson.grade} · ${lesson.teacher_name} · ${lesson.main_school_name} ${lesson.main_classroom_name}`;
  const late = rec.on_time === null ? "—" : (rec.on_time ? "准时" : `迟到 ${minutes(rec.late_s)} 分钟`);
  fill(document.getElementById("facts"),
    fact("计划时间", fmtRange(rec.scheduled_start, rec.scheduled_end)),
    fact("实际开始", rec.actual_start ? fmtTime(rec.actual_start) : "—"),
    fact("实际结束", rec.actual_end ? fmtTime(rec.actual_end) : "—"),
    fact("授课时长", `${minutes(rec.duration_s)} 分钟` + (rec.uncertain_s ? `（另有 ${minutes(rec.uncertain_s)} 分钟因服务器中断无法确定）` : "")),
    fact("是否准时", late),
    fact("到课", `${rec.attended_receivers} / ${rec.expected_receivers}（${pct(rec.expected_receivers ? rec.attended_receivers / rec.expected_receivers : null)}）`),
    fact("巡课", stored ? `${stored.lesson.visits} 次，评课 ${stored.lesson.evaluations} 份` : "—"),
    fact("记录", stored && stored.lesson.record_status ? "已归档（课堂关闭时生成）" : "实时计算（尚未归档）"),
    (rec.media_gaps || []).length ? fact("媒体中断", rec.media_gaps.map((g) =>
      `${fmtTime(g.at)} 中断 ${Math.max(1, Math.round(g.seconds))} 秒${g.restored ? "" : "（部分连接未恢复）"}`).join("；")) : null);
  const recId = stored && stored.lesson.recording_id;
  fill(document.getElementById("recording"),
    recId ? el("a", { class: "btn btn-primary", href: recordingUrl(recId) }, "观看录像") : null);
  if (stored) {
    fill(document.getElementById("exports"), ["csv", "xlsx"].map((fmt) => el("button", { class: "btn", type: "button",
      dataset: { format: fmt }, onclick: () => download(`/reports/lessons/${id}`, {}, fmt).catch(showError) },
    `导出到课 ${fmt.toUpperCase()}`)));
  }
}

/** A row's classroom or home student, by id: classroom names repeat across schools (every village school has
 * its 九年级(1)班 接收教室), so a name would pair a row with another school's classroom. */
const unitKey = (role, classroomId, userId) => (role === "student" ? `student:${userId}` : `${role}:${classroomId}`);

function renderAttendance(rec, stored) {
  const stays = new Map();
  for (const a of (stored ? stored.attendance : [])) stays.set(unitKey(a.role, a.classroom_id, a.user_id), a.sessions);
  const rows = rec.attendance;
  document.getElementById("att-note").textContent = `${rows.length} 方`;
  const tbody = document.querySelector("#attendance tbody");
  if (!rows.length) { fill(tbody, el("tr", {}, el("td", { colspan: 13, class: "empty" }, "没有进入记录"))); return; }
  fill(tbody, rows.map((a) => {
    const key = unitKey(a.role, a.classroom_id, a.user_id);
    const st = (stays.get(key) || []).map((s) => `${fmtTime(s.joined)}–${s.left ? fmtTime(s.left) : "结束"}`).join("，");
    return el("tr", { dataset: { role: a.role, unit: key } },
      el("td", { class: "nowrap" }, ROLE[a.role] || a.role),
      el("td", {}, a.school_name || ""),
      el("td", {}, a.role === "student" ? (a.user_name || `#${a.user_id}`) : (a.classroom_name || `#${a.classroom_id}`)),
      el("td", {}, a.expected ? "是" : "—"),
      el("td", { class: "nowrap" }, a.first_join ? fmtTime(a.first_join) : "未进入"),
      el("td", { class: "nowrap" }, a.last_leave ? fmtTime(a.last_leave) : "—"),
      el("td", { class: "num", title: a.uncertain_s ? "服务器中断：会话结束于其最后一次在线记录，之后的时间无法确定" : null },
        minutes(a.present_s), a.uncertain_s ? el("span", { class: "small muted" }, `（不确定 ${minutes(a.uncertain_s)}）`) : null),
      el("td", { class: "small" }, st || "—"),
      el("td", { class: "num" }, a.disconnects),
      el("td", { class: "num" }, `${a.stage_count} / ${minutes(a.stage_s)}`),
      el("td", { class: "num nowrap" }, lossText(a.loss_p50, a.loss_p95)),
      el("td", { class: "num nowrap" }, rttText(a.rtt_p50_ms, a.rtt_p95_ms)),
      el("td", { class: "num" }, a.poor_link_s));
  }));
}

function renderTimelines(rec) {
  const box = document.getElementById("timelines");
  const withSamples = rec.attendance.filter((a) => a.timeline && a.timeline.length);
  if (!withSamples.length) {
    fill(box, el("p", { class: "muted" }, "这节课没有链路质量采样。"));
    return;
  }
  fill(box, withSamples.map((a) => {
    const name = a.role === "student" ? (a.user_name || `#${a.user_id}`) : (a.classroom_name || `#${a.classroom_id}`);
    const where = a.school_name ? `${a.school_name} ${name}` : name;
    return el("div", { class: "timeline" }, el("h3", { class: "small", style: "margin:0 0 4px" }, `${ROLE[a.role] || a.role} · ${where}`),
      el("div", { class: "chart-sm", dataset: { timeline: unitKey(a.role, a.classroom_id, a.user_id) } }));
  }));
  withSamples.forEach((a, i) => {
    const node = box.children[i].querySelector(".chart-sm");
    const t = (s) => s.at.slice(0, 19).replace("T", " "); // the wall clock of the timetable zone, as every time shown
    chartIn(node).setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0, data: ["延迟", "丢包"] },
      grid: { left: 52, right: 52, top: 30, bottom: 28 },
      xAxis: { type: "time", axisLabel: { formatter: "{HH}:{mm}" } },
      yAxis: [{ type: "value", name: "ms" }, { type: "value", name: "%", max: (v) => Math.max(10, Math.ceil(v.max)) }],
      series: [
        { name: "延迟", type: "line", showSymbol: false, data: a.timeline.map((s) => [t(s), s.rtt_ms]), itemStyle: { color: COLORS[0] } },
        { name: "丢包", type: "line", yAxisIndex: 1, showSymbol: false, areaStyle: { opacity: 0.2 },
          data: a.timeline.map((s) => [t(s), s.loss === null ? null : Math.round(s.loss * 1000) / 10]), itemStyle: { color: COLORS[4] } },
      ],
    });
  });
}

/** Evaluations of the lesson; its teacher answers each one in a reply box, everyone else reads the replies. */
function renderEvaluations(page, user) {
  const card = document.getElementById("evaluations-card");
  if (!page || !page.data.length) { card.hidden = true; return; }
  card.hidden = false;
  fill(document.getElementById("evaluations"), page.data.map((e) => el("div", { class: "eval", dataset: { evaluation: String(e.id) } },
    el("div", { class: "row" }, el("strong", {}, e.evaluator_name), el("span", { class: "muted" }, e.mode === "replay" ? "看录像评课" : "巡课评课"),
      e.template_name ? el("span", { class: "muted" }, e.template_name) : null, el("span", { class: "spacer" }),
      el("span", { class: "badge badge-ok" }, e.total_score === null ? "未完成评分" : `总分 ${e.total_score.toFixed(1)}`)),
    e.comment ? el("p", {}, e.comment) : null,
    e.notes.length ? el("ul", { class: "small" }, e.notes.map((n) => el("li", {}, `${fmtTime(n.at)} ${n.text}`))) : null,
    el("div", { class: "replies small" }, e.replies.map((r) => el("p", { class: "reply" },
      el("span", { class: "muted" }, `${r.author_name || "授课教师"}回复（${fmtDateTime(r.created_at)}）：`), r.text))),
    user.role === "teacher" && user.id === e.teacher_id ? replyBox(e, user) : null)));
}

function replyBox(e, user) {
  const text = el("textarea", { rows: 2, maxlength: 2000, placeholder: "回复评课人：感谢、说明或改进打算…", "aria-label": "回复评课" });
  const send = el("button", { type: "button", class: "btn btn-primary", onclick: async () => {
    const value = text.value.trim();
    if (!value) { text.focus(); return; }
    send.disabled = true;
    try {
      await api(`/patrol/evaluations/${e.id}/replies`, { method: "POST", body: { text: value } });
      toast("回复已发送", "ok");
      renderEvaluations(await api("/patrol/evaluations", { query: { instance_id: id, limit: 50 } }), user);
    } catch (err) { showError(err); send.disabled = false; }
  } }, "回复");
  return el("div", { class: "reply-box row" }, text, send);
}

// ------------------------------------------------------------------ invitations (admins, researchers)

const ROLE_NAME = { researcher: "教研员", teacher: "教师" };

async function loadInvitations() {
  const [rows, candidates] = await Promise.all([api(`/patrol/lessons/${id}/invitations`),
    api(`/patrol/lessons/${id}/invitation-candidates`)]);
  fill(document.getElementById("invitee"), el("option", { value: "" }, candidates.length ? "选择教研员或教师" : "没有可邀请的人"),
    candidates.map((c) => el("option", { value: String(c.id) }, `${c.display_name}（${ROLE_NAME[c.role] || c.role} · ${c.place}）`)));
  fill(document.getElementById("invitations"), rows.length ? rows.map((r) => el("li", { dataset: { invitation: String(r.id) } },
    el("strong", {}, r.invitee_name), el("span", { class: "muted small" }, `${r.invited_by_name} 邀请 · ${fmtDateTime(r.created_at)}`),
    r.note ? el("span", { class: "small" }, r.note) : null, el("span", { class: "spacer" }),
    el("button", { type: "button", class: "btn", onclick: () => withdraw(r) }, "撤销"))) : el("li", { class: "muted small" }, "尚未邀请"));
}

async function withdraw(r) {
  if (!(await confirmDialog(`撤销对“${r.invitee_name}”的评课邀请？`, { okLabel: "撤销", kind: "danger" }))) return;
  try {
    await api(`/patrol/invitations/${r.id}`, { method: "DELETE" });
    toast("已撤销邀请", "ok");
    await loadInvitations();
  } catch (err) { showError(err); }
}

async function invite() {
  const invitee = Number(document.getElementById("invitee").value);
  if (!invitee) { toast("请选择受邀人", "warn"); return; }
  const btn = document.getElementById("btn-invite");
  btn.disabled = true;
  try {
    await api(`/patrol/lessons/${id}/invitations`, { method: "POST",
      body: { invitee_id: invitee, note: document.getElementById("invite-note").value.trim() } });
    document.getElementById("invite-note").value = "";
    toast("已发出邀请", "ok");
    await loadInvitations();
  } catch (err) { showError(err); } finally { btn.disabled = false; }
}

async function showInvitations(user) {
  if (!["admin", "researcher"].includes(user.role)) return;
  try { await loadInvitations(); } catch (err) {
    if (err instanceof ApiError && err.status === 403) return;
    throw err;
  }
  document.getElementById("invitations-card").hidden = false;
  document.getElementById("btn-invite").addEventListener("click", invite);
}

async function main(user) {
  mountHeader(user, { title: "教学记录" });
  if (!id) { showError(new Error("缺少课次编号")); return; }
  try {
    const [lesson, rec, stored, evals] = await Promise.all([
      api(`/lessons/${id}`), api(`/records/lessons/${id}`, { query: { timeline: true } }),
      optional(api(`/reports/lessons/${id}`)), optional(api("/patrol/evaluations", { query: { instance_id: id, limit: 50 } })),
    ]);
    renderHeader(lesson, rec, stored);
    renderAttendance(rec, stored);
    renderTimelines(rec);
    await renderInsight(id, rec).catch(showError); // the rest of the record stands without it
    renderEvaluations(evals, user);
    await renderQuizzes(id).catch(showError); // the rest of the record stands without it
    await showInvitations(user);
    document.body.dataset.loaded = "1";
  } catch (err) {
    showError(err);
    document.getElementById("title").textContent = err.message || "无法加载教学记录";
  }
}

const user = requireLogin(["admin", "researcher", "teacher"]);
if (user) main(user);
