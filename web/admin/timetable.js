// Week grid (周课表) per classroom or per teacher: the lesson instances of one week by period.
// Admins book a series from a free cell (conflicts checked first and shown as sentences) and
// reschedule / postpone / cancel / substitute one lesson. Teachers (audience "teacher", page
// /timetable.html) see their own week read-only.
import {
  api, requireLogin, mountHeader, el, fill, toast, showError, openDialog, todayISO, addDays, mondayOf,
  fmtDate, fmtRange, fmtTime, KIND_LABEL, STATUS_LABEL, WEEKDAY_LABEL, statusBadge, ApiError,
} from "/assets/api.js";
import {
  RECEIVER_MODE, WEEK_PATTERN, ISO_WEEKDAY, loadSchools, loadTerms, loadTeachers, fetchAll, field, readForm,
  conflictList, errorBox, options, guarded, formDialog, table, whenText, decisionText,
} from "/admin/common.js";

const audience = document.body.dataset.audience || "admin";
const user = requireLogin(audience === "teacher" ? ["teacher"] : ["admin"]);
const canEdit = audience === "admin";
const root = document.getElementById("timetable");

const state = {
  mode: "classroom", // or "teacher"
  schoolId: null,
  classroomId: null,
  teacherId: null,
  week: mondayOf(todayISO()),
};

function readUrl() {
  const q = new URLSearchParams(location.search);
  if (q.get("teacher")) { state.mode = "teacher"; state.teacherId = Number(q.get("teacher")); }
  if (q.get("classroom")) { state.mode = "classroom"; state.classroomId = Number(q.get("classroom")); }
  if (q.get("school")) state.schoolId = Number(q.get("school"));
  if (q.get("week")) state.week = mondayOf(q.get("week"));
  if (audience === "teacher") { state.mode = "teacher"; state.teacherId = user.id; state.schoolId = user.school_id; }
}

function writeUrl() {
  const q = new URLSearchParams();
  if (state.mode === "teacher" && audience !== "teacher") q.set("teacher", state.teacherId);
  if (state.mode === "classroom" && state.classroomId) q.set("classroom", state.classroomId);
  if (state.schoolId && audience !== "teacher") q.set("school", state.schoolId);
  q.set("week", state.week);
  history.replaceState(null, "", location.pathname + "?" + q.toString());
}

// ------------------------------------------------------------------ data

/** The term covering `day`, preferring the most specific (regional) one; the list is newest first. */
function termFor(terms, day) {
  const hits = terms.filter((t) => t.start_date <= day && day <= t.end_date);
  return hits.find((t) => t.region_id != null) || hits[0] || null;
}

function weekNumber(term, monday) {
  const start = mondayOf(term.start_date);
  const ms = Date.parse(monday + "T00:00:00Z") - Date.parse(start + "T00:00:00Z");
  return Math.floor(ms / (7 * 86400000)) + 1;
}

async function schemeFor(schoolId, term) {
  const schemes = (await api("/period-schemes", { query: { school_id: schoolId } })).data;
  return schemes.find((s) => term && s.term_id === term.id) || schemes.find((s) => s.term_id == null) || schemes[0] || null;
}

const toMin = (hhmm) => { const [h, m] = hhmm.split(":").map(Number); return h * 60 + m; };

/** The row (period number) a lesson sits in: the first of this school's periods its time overlaps. */
function rowFor(lesson, periods) {
  const a = toMin(fmtTime(lesson.starts_at));
  const b = toMin(fmtTime(lesson.ends_at));
  const hit = periods.find((p) => toMin(p.start_time.slice(0, 5)) < b && a < toMin(p.end_time.slice(0, 5)));
  if (hit) return hit.number;
  let best = periods[0];
  for (const p of periods) if (Math.abs(toMin(p.start_time.slice(0, 5)) - a) < Math.abs(toMin(best.start_time.slice(0, 5)) - a)) best = p;
  return best ? best.number : lesson.period_from;
}

// ------------------------------------------------------------------ toolbar

async function toolbar() {
  const bar = el("div", { class: "toolbar" });
  if (audience !== "teacher") {
    const schools = await loadSchools();
    if (!state.schoolId) state.schoolId = user.school_id || schools[0]?.id;
    const modeSel = el("select", { id: "tt-mode", "aria-label": "查看方式", onchange: (e) => { state.mode = e.target.value; draw(); } },
      el("option", { value: "classroom", selected: state.mode === "classroom" }, "按教室"),
      el("option", { value: "teacher", selected: state.mode === "teacher" }, "按教师"));
    const schoolSel = el("select", { id: "tt-school", "aria-label": "学校", onchange: (e) => {
      state.schoolId = Number(e.target.value); state.classroomId = null; state.teacherId = null; draw(); } },
    schools.map((s) => el("option", { value: s.id, selected: s.id === state.schoolId }, s.name)));
    bar.append(el("label", { class: "field" }, el("span", {}, "查看"), modeSel),
      el("label", { class: "field" }, el("span", {}, "学校"), schoolSel));
    if (state.mode === "classroom") {
      const rooms = await fetchAll("/classrooms", { school_id: state.schoolId });
      if (!rooms.some((r) => r.id === state.classroomId)) {
        // a classroom given in the URL may belong to another school: follow it
        const given = state.classroomId ? await api(`/classrooms/${state.classroomId}`).catch(() => null) : null;
        if (given && given.school_id !== state.schoolId) { state.schoolId = given.school_id; return toolbar(); }
        state.classroomId = rooms[0]?.id ?? null;
      }
      bar.append(el("label", { class: "field" }, el("span", {}, "教室"), el("select", { id: "tt-classroom", "aria-label": "教室",
        onchange: (e) => { state.classroomId = Number(e.target.value); draw(); } },
      rooms.map((r) => el("option", { value: r.id, selected: r.id === state.classroomId }, r.name)))));
    } else {
      const teachers = await loadTeachers(state.schoolId);
      if (!teachers.some((t) => t.id === state.teacherId)) state.teacherId = teachers[0]?.id ?? null;
      bar.append(el("label", { class: "field" }, el("span", {}, "教师"), el("select", { id: "tt-teacher", "aria-label": "教师",
        onchange: (e) => { state.teacherId = Number(e.target.value); draw(); } },
      teachers.map((t) => el("option", { value: t.id, selected: t.id === state.teacherId }, t.display_name)))));
    }
  }
  const go = (d) => { state.week = d; draw(); };
  if (audience === "teacher") {
    bar.append(el("button", { type: "button", class: "btn", id: "tt-subscribe", onclick: () => guarded(subscribeDialog) }, "订阅日历"));
  }
  bar.append(el("span", { class: "spacer" }),
    el("button", { type: "button", class: "btn", id: "tt-prev", onclick: () => go(addDays(state.week, -7)) }, "‹ 上一周"),
    el("button", { type: "button", class: "btn", id: "tt-this", onclick: () => go(mondayOf(todayISO())) }, "本周"),
    el("button", { type: "button", class: "btn", id: "tt-next", onclick: () => go(addDays(state.week, 7)) }, "下一周 ›"),
    el("label", { class: "field" }, el("span", {}, "日期"), el("input", { type: "date", id: "tt-date", value: state.week,
      onchange: (e) => e.target.value && go(mondayOf(e.target.value)) })));
  return bar;
}

// ------------------------------------------------------------------ grid

let ctx = null; // what the grid shows, for the dialogs

async function draw() {
  writeUrl();
  try {
    const bar = await toolbar();
    writeUrl();
    const subjectId = state.mode === "classroom" ? state.classroomId : state.teacherId;
    if (!subjectId) { fill(root, bar, el("p", { class: "empty" }, state.mode === "classroom" ? "该校没有教室" : "该校没有教师")); return; }
    const terms = await loadTerms();
    const term = termFor(terms, addDays(state.week, 2)) || termFor(terms, state.week);
    const [page, scheme, termDetail] = await Promise.all([
      api("/lessons", { query: { [state.mode === "classroom" ? "classroom_id" : "teacher_id"]: subjectId,
        date_from: state.week, date_to: addDays(state.week, 6), limit: 500 } }),
      schemeFor(state.schoolId, term),
      term ? api(`/terms/${term.id}`) : null,
    ]);
    const periods = scheme ? [...scheme.periods].sort((a, b) => a.number - b.number) : [];
    const days = [...Array(7).keys()].map((i) => addDays(state.week, i));
    const special = new Map((termDetail?.days || []).map((d) => [d.day, d]));
    ctx = { term, termDetail, periods, days, lessons: page.data, scheme };
    const title = el("div", { class: "row", style: "margin-bottom:12px" },
      el("h2", { style: "margin:0", id: "tt-title" }, `${fmtDate(days[0], { year: true })} – ${fmtDate(days[6])}`),
      term ? el("span", { class: "badge" }, `${term.name} 第 ${weekNumber(term, state.week)} 周`) : el("span", { class: "badge badge-warn" }, "不在任何学期内"),
      el("span", { class: "muted" }, `共 ${page.data.filter((l) => l.status !== "cancelled").length} 节课`));
    if (!periods.length) {
      fill(root, bar, title, el("div", { class: "alert alert-warn" }, "该校还没有作息时间，请先在“管理 › 作息时间”中设置。"));
      return;
    }
    const cells = new Map();
    for (const l of page.data) {
      const key = `${l.day}|${rowFor(l, periods)}`;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(l);
    }
    const today = todayISO();
    const grid = el("div", { class: "week-grid", id: "week-grid", role: "grid", "aria-label": "周课表" });
    grid.append(el("div", { class: "wg-head" }, "节次"));
    days.forEach((d, i) => {
      const sp = special.get(d);
      grid.append(el("div", { class: "wg-head" + (d === today ? " today" : "") + (sp?.kind === "holiday" ? " off" : "") },
        WEEKDAY_LABEL[i], el("small", {}, d.slice(5).replace("-", "/")),
        sp ? el("small", {}, sp.kind === "holiday" ? `${sp.name || "节假日"}` : `调休：${ISO_WEEKDAY[sp.follows_weekday]}课表`) : null));
    });
    for (const p of periods) {
      grid.append(el("div", { class: "wg-period" }, `第${p.number}节`, el("small", {}, `${p.start_time.slice(0, 5)}–${p.end_time.slice(0, 5)}`)));
      days.forEach((d, i) => {
        const list = (cells.get(`${d}|${p.number}`) || []).sort((a, b) => a.starts_at.localeCompare(b.starts_at));
        const holiday = special.get(d)?.kind === "holiday";
        const inTerm = term && term.start_date <= d && d <= term.end_date;
        const busy = list.some((l) => l.status !== "cancelled");
        const cell = el("div", { class: "wg-cell" + (holiday ? " off" : ""), dataset: { day: d, period: p.number } },
          list.map((l) => el("button", {
            type: "button", class: `wg-lesson k-${l.kind} s-${l.status}`, dataset: { lesson: l.id },
            title: `${l.title} ${fmtRange(l.starts_at, l.ends_at)} ${STATUS_LABEL[l.status]}`,
            onclick: () => lessonDialog(l),
          }, el("strong", {}, l.title), `${fmtRange(l.starts_at, l.ends_at)} · ${l.teacher_name}${l.substitute ? "（代）" : ""}`,
          el("br"), state.mode === "classroom" && l.main_classroom_id !== state.classroomId ? `接收 · ${l.main_school_name}`
            : (l.receivers.length ? `→ ${l.receivers.map((r) => r.classroom_name).join("、")}` : KIND_LABEL[l.kind]),
          l.status !== "scheduled" ? [" · ", STATUS_LABEL[l.status]] : null)),
          canEdit && !busy && !holiday && inTerm && d >= today
            ? el("button", { type: "button", class: "wg-free", "aria-label": `${fmtDate(d)} 第${p.number}节 排课`,
              onclick: () => bookingDialog(i + 1, p.number) }, "＋ 排课")
            : null);
        grid.append(cell);
      });
    }
    fill(root, bar, title, grid, el("div", { class: "legend" },
      el("span", {}, "■ 专递课堂"), el("span", { style: "color:#7b3fa0" }, "■ 名师课堂"),
      el("span", { style: "color:var(--c-accent)" }, "■ 名校网络课堂"), el("span", {}, "删除线：已停课"),
      canEdit ? el("span", {}, "点击空白格排课，点击课程调课、停课、代课") : el("span", {}, "点击课程查看详情")));
  } catch (err) {
    showError(err);
    fill(root, el("div", { class: "alert alert-error" }, err.message));
  }
}

// ------------------------------------------------------------------ calendar subscription

/** A link a calendar app subscribes to as it is (no login): POST /timetable/feed-token → feed_url. */
async function subscribeDialog() {
  const out = await api("/timetable/feed-token", { method: "POST" });
  const input = el("input", { type: "text", id: "feed-url", readonly: true, value: out.feed_url, style: "width:100%",
    onfocus: (e) => e.target.select() });
  const msg = el("div", { class: "form-msg" });
  openDialog({
    title: "订阅我的课表", wide: true,
    body: [el("p", {}, "在手机或电脑的日历应用（Outlook、系统日历、钉钉、企业微信等）中选择“订阅日历”或“从网址添加”，粘贴以下链接。课表变动（调课、停课、代课）会随日历自动更新。"),
      el("label", { class: "field" }, el("span", {}, "订阅链接"), input),
      el("p", { class: "muted small" }, `链接有效期 ${Math.round(out.expires_in / 86400)} 天，只能读取您的课表。链接泄露时请停用：之前发出的所有订阅链接都会失效。`), msg],
    actions: [
      { label: "复制链接", kind: "primary", onClick: async () => {
        input.select();
        try { await navigator.clipboard.writeText(out.feed_url); toast("已复制订阅链接", "ok"); } catch { document.execCommand("copy"); }
        return false;
      } },
      { label: "停用所有订阅链接", kind: "danger", onClick: async () => {
        await api("/timetable/feed-token", { method: "DELETE" });
        toast("已停用之前的所有订阅链接", "ok");
        return true;
      } },
    ],
  });
}

// ------------------------------------------------------------------ booking

async function receiverChoices(schoolId) {
  // The classrooms of the schools paired with this one (GET /pairings/classrooms).
  const out = await api("/pairings/classrooms", { query: { school_id: schoolId } });
  return out.data.map((r) => ({ id: r.classroom_id, name: r.classroom_name, school_name: r.school_name }));
}

async function bookingDialog(weekday, period) {
  const { term } = ctx;
  const schoolId = state.schoolId;
  const [teachers, rooms, receivers] = await Promise.all([
    loadTeachers(schoolId), fetchAll("/classrooms", { school_id: schoolId }), receiverChoices(schoolId),
  ]);
  const week = weekNumber(term, state.week);
  const lastWeek = weekNumber(term, mondayOf(term.end_date));
  const fields = [
    { name: "kind", label: "课堂类型", type: "select", options: Object.entries(KIND_LABEL), value: "dedicated" },
    { name: "subject", label: "学科", required: true, placeholder: "数学" },
    { name: "grade", label: "年级", required: true, placeholder: "三年级" },
    { name: "title", label: "课程名称", hint: "留空则为“年级+学科”" },
    { name: "main_classroom_id", label: "主讲教室", type: "select", required: true, options: options(rooms, (r) => r.name),
      value: state.mode === "classroom" ? state.classroomId : rooms[0]?.id },
    { name: "main_teacher_id", label: "主讲教师", type: "select", required: true,
      options: options(teachers, (t) => t.display_name, { empty: "请选择" }), value: state.mode === "teacher" ? state.teacherId : "" },
    { name: "weekday", label: "星期", type: "select", options: Object.entries(ISO_WEEKDAY), value: weekday },
    { name: "period_from", label: "从第几节", type: "number", min: 1, max: 20, required: true, value: period },
    { name: "period_to", label: "到第几节", type: "number", min: 1, max: 20, required: true, value: period },
    { name: "week_from", label: "起始周", type: "number", min: 1, max: 60, value: week },
    { name: "week_to", label: "结束周", type: "number", min: 1, max: 99, value: lastWeek },
    { name: "week_pattern", label: "单双周", type: "select", options: Object.entries(WEEK_PATTERN), value: "every" },
    { name: "pairing_override_reason", label: "越过结对的原因", wide: true, hint: "仅管理员在两校没有结对时填写" },
  ];
  const form = el("form", { class: "form-grid", id: "booking-form", onsubmit: (e) => e.preventDefault() }, fields.map(field));
  const recvBox = el("div", { class: "field-wide" }, el("div", { class: "field" }, el("span", {}, "接收教室"),
    receivers.length ? el("div", { class: "check-list", id: "receivers" }, receivers.map((r) =>
      el("label", { class: "check" }, el("input", { type: "checkbox", class: "recv", value: r.id }), `${r.school_name} · ${r.name}`)))
      : el("p", { class: "muted" }, "没有结对学校的教室")),
  el("label", { class: "field", style: "max-width:260px" }, el("span", {}, "接收方式"),
    el("select", { id: "recv-mode" }, Object.entries(RECEIVER_MODE).map(([v, l]) => el("option", { value: v }, l)))));
  const result = el("div", { id: "booking-result", "aria-live": "polite" });
  const spec = () => {
    const v = readForm(form);
    const mode = recvBox.querySelector("#recv-mode").value;
    return {
      kind: v.kind, subject: v.subject, grade: v.grade, title: v.title || `${v.grade || ""}${v.subject || ""}`,
      term_id: term.id, main_classroom_id: Number(v.main_classroom_id), main_teacher_id: Number(v.main_teacher_id),
      weekday: Number(v.weekday), period_from: v.period_from, period_to: v.period_to || v.period_from,
      week_from: v.week_from || 1, week_to: v.week_to || 99, week_pattern: v.week_pattern,
      receivers: [...recvBox.querySelectorAll(".recv:checked")].map((c) => ({ classroom_id: Number(c.value), mode })),
      pairing_override_reason: v.pairing_override_reason || null,
    };
  };
  const showConflicts = (message, conflicts, groups = []) => {
    // with a list below, the heading only counts (the list says each clash once per weekly pattern)
    const head = conflicts.length ? `不能排课，共 ${conflicts.length} 处冲突：` : message;
    fill(result, el("div", { class: "alert alert-error", role: "alert", id: "conflict-box" },
      el("strong", {}, head), conflicts.length ? conflictList(conflicts, { groups }) : null));
    result.scrollIntoView({ block: "nearest" });
  };
  const check = async () => {
    if (!form.reportValidity()) return null;
    fill(result, el("p", { class: "muted" }, "正在检查冲突……"));
    const out = await api("/series/check", { method: "POST", body: spec() });
    if (out.ok) {
      fill(result, el("div", { class: "alert alert-ok", id: "check-ok" }, `没有冲突：将排 ${out.instances} 节课。`));
      result.scrollIntoView({ block: "nearest" });
    }
    // the check runs every rule of booking: its message is the reason booking would give
    else showConflicts(out.message, out.conflicts, out.conflict_groups);
    return out;
  };
  openDialog({
    title: `排课 · ${term.name} · ${ISO_WEEKDAY[weekday]} 第${period}节`, wide: true,
    body: [form, recvBox, result],
    actions: [
      { label: "检查冲突", onClick: async () => {
        try { await check(); } catch (err) { fill(result, errorBox(err)); }
        return false;
      } },
      { label: "确认排课", kind: "primary", onClick: async () => {
        try {
          const out = await check();
          if (!out || !out.ok) return false; // conflicts stay on screen, nothing booked
          const series = await api("/series", { method: "POST", body: spec() });
          toast(series.status === "pending" ? "已提交排课申请，等待审批" : `已排课：共 ${series.instance_count} 节`, "ok");
          draw();
          return true;
        } catch (err) {
          if (err instanceof ApiError && err.body.conflicts) showConflicts(err.message, err.body.conflicts, err.body.conflict_groups);
          else fill(result, errorBox(err));
          return false;
        }
      } },
    ],
  });
}

// ------------------------------------------------------------------ one lesson

function lessonDialog(l) {
  const info = el("dl", { class: "kv" },
    el("dt", {}, "课程"), el("dd", {}, `${l.title}（${KIND_LABEL[l.kind]}）`),
    el("dt", {}, "时间"), el("dd", {}, `${fmtDate(l.day, { year: true })} ${fmtRange(l.starts_at, l.ends_at)}（第${l.period_from}${l.period_to !== l.period_from ? "–" + l.period_to : ""}节）`),
    el("dt", {}, "主讲"), el("dd", {}, `${l.teacher_name}${l.substitute ? "（代课）" : ""} · ${l.main_school_name} ${l.main_classroom_name}`),
    el("dt", {}, "接收教室"), el("dd", {}, l.receivers.map((r) => `${r.school_name} ${r.classroom_name}（${RECEIVER_MODE[r.mode]}）`).join("、") || "—"),
    el("dt", {}, "状态"), el("dd", {}, statusBadge(l.status), l.cancel_reason ? ` 原因：${l.cancel_reason}` : ""),
    l.rescheduled_from_id ? [el("dt", {}, "调课"), el("dd", {}, `由课次 #${l.rescheduled_from_id} 调来`)] : null);
  const editable = canEdit && l.status === "scheduled";
  openDialog({
    title: "课次详情", body: info,
    actions: editable ? [
      { label: "调课", onClick: () => { reschedule(l); } },
      { label: "顺延", onClick: () => { postpone(l); } },
      { label: "代课", onClick: () => { substitute(l); } },
      { label: "停课", kind: "danger", onClick: () => { cancelLesson(l); } },
    ] : [],
  });
}

const afterChange = (msg) => (out) => { if (out) { toast(msg(out), "ok"); draw(); } };

function reschedule(l) {
  formDialog({
    title: `调课 · ${l.title}`, okLabel: "确认调课",
    fields: [
      { name: "day", label: "新日期", type: "date", required: true, value: l.day },
      { name: "period_from", label: "从第几节", type: "number", min: 1, max: 20, value: l.period_from, hint: "主讲学校的节次" },
      { name: "period_to", label: "到第几节", type: "number", min: 1, max: 20, value: l.period_to },
      { name: "reason", label: "调课原因", required: true, wide: true },
    ],
    submit: (v) => api(`/lessons/${l.id}/reschedule`, { method: "POST", body: v }),
  }).then(afterChange((n) => `已调课到 ${fmtDate(n.day)} ${fmtRange(n.starts_at, n.ends_at)}`));
}

function postpone(l) {
  formDialog({
    title: `顺延 · ${l.title}`, okLabel: "顺延到下一个空闲节次",
    fields: [{ name: "reason", label: "顺延原因", required: true, wide: true }],
    submit: (v) => api(`/lessons/${l.id}/postpone`, { method: "POST", body: v }),
  }).then(afterChange((n) => `已顺延到 ${fmtDate(n.day)} ${fmtRange(n.starts_at, n.ends_at)}`));
}

function cancelLesson(l) {
  formDialog({
    title: `停课 · ${l.title} · ${fmtDate(l.day)}`, okLabel: "确认停课",
    fields: [{ name: "reason", label: "停课原因", required: true, wide: true }],
    submit: (v) => api(`/lessons/${l.id}/cancel`, { method: "POST", body: v }),
  }).then(afterChange(() => "已停课"));
}

async function substitute(l) {
  const teachers = (await guarded(() => loadTeachers(l.main_school_id ?? state.schoolId))) || [];
  formDialog({
    title: `代课 · ${l.title} · ${fmtDate(l.day)}`, okLabel: "确认代课",
    fields: [
      { name: "teacher_id", label: "代课教师", type: "select", required: true,
        options: options(teachers.filter((t) => t.id !== l.teacher_id), (t) => t.display_name, { empty: "请选择" }) },
      { name: "reason", label: "代课原因", required: true, wide: true },
    ],
    submit: (v) => api(`/lessons/${l.id}/substitute`, { method: "POST", body: { teacher_id: Number(v.teacher_id), reason: v.reason } }),
  }).then(afterChange((n) => `已安排 ${n.teacher_name} 代课`));
}

// ------------------------------------------------------------------ a teacher's own requests

const REQUEST_STATUS = { pending: "待审批", rejected: "已驳回" };

/** The teacher's booking requests still waiting or turned down (with the reason), under their week. */
async function myRequests() {
  const box = document.getElementById("my-requests");
  if (!box) return;
  const [pending, rejected] = await Promise.all(["pending", "rejected"].map((status) =>
    fetchAll("/series", { teacher_id: user.id, status })));
  const rows = [...pending, ...rejected];
  box.hidden = !rows.length;
  fill(box, el("h2", {}, "我的排课申请"), el("div", { id: "request-list" }, table([
    { label: "课程", value: (s) => s.title },
    { label: "时间", value: (s) => whenText(s), class: "nowrap" },
    { label: "接收教室", value: (s) => s.receivers.map((r) => `${r.school_name} · ${r.classroom_name}`).join("、") || "—" },
    { label: "状态", value: (s) => el("span", { class: "badge" + (s.status === "rejected" ? " badge-warn" : "") }, REQUEST_STATUS[s.status]) },
    { label: "审批意见", value: (s) => (s.status === "rejected" ? decisionText(s) : "等待本校管理员审批") },
  ], rows, { rowAttrs: (s) => ({ dataset: { series: s.id } }) })));
}

if (user) {
  mountHeader(user, { title: audience === "teacher" ? "我的课表" : "周课表" });
  readUrl();
  draw();
  if (audience === "teacher") guarded(myRequests);
}
