// /admin/demand.html — demand-order board (需求订单): rural schools post needs, urban schools offer
// a teacher, classroom and weekly slot, the rural side accepts (pairing + series in one go) or declines.
import { api, requireLogin, mountHeader, el, fill, toast, openDialog, fmtDateTime, ApiError } from "/assets/api.js";
import {
  DEMAND_STATUS, OFFER_STATUS, ISO_WEEKDAY, table, formDialog, options, loadSchools, loadTerms, loadTeachers,
  fetchAll, errorBox, conflictList, guarded,
} from "/admin/common.js";
import { orderSlotsPanel } from "/admin/slots.js";

const board = document.getElementById("board");
let user;
let status = "open";

const slotText = (s) => `${ISO_WEEKDAY[s.weekday]}第${s.period}节`;
const offerSlot = (o) => `${ISO_WEEKDAY[o.weekday]}第${o.period_from}${o.period_to !== o.period_from ? "–" + o.period_to : ""}节`;

/** "周一第3节、3-5、周三 5" → [{weekday, period}] */
function parseSlots(text) {
  const days = { 一: 1, 二: 2, 三: 3, 四: 4, 五: 5, 六: 6, 日: 7, 天: 7 };
  const out = [];
  for (const part of (text || "").split(/[,，、;；\s]+/).filter(Boolean)) {
    const m = part.match(/^(?:周|星期)?([一二三四五六日天1-7])\D*(\d{1,2})/);
    if (!m) throw new Error(`期望时间“${part}”看不懂，请写成“周一第3节”或“1-3”`);
    out.push({ weekday: days[m[1]] || Number(m[1]), period: Number(m[2]) });
  }
  return out;
}

async function draw() {
  const page = await api("/demand-orders", { query: { status: status || undefined, limit: 200 } });
  const filter = el("select", { id: "status-filter", "aria-label": "状态", onchange: (e) => { status = e.target.value; guarded(draw); } },
    [["open", "待响应"], ["matched", "已对接"], ["closed", "已关闭"], ["", "全部"]].map(([v, l]) => el("option", { value: v, selected: v === status }, l)));
  fill(board, el("div", { class: "panel-head" }, el("h2", {}, "需求订单"),
    el("label", { class: "field" }, el("span", {}, "状态"), filter),
    el("button", { type: "button", class: "btn btn-primary", id: "new-order", onclick: createOrder }, "发布需求")),
  table([
    { label: "乡村学校", value: (o) => o.rural_school_name },
    { label: "学科 · 年级", value: (o) => `${o.subject} · ${o.grade}` },
    { label: "学期", value: (o) => o.term_name },
    { label: "接收教室", value: (o) => o.receiving_classroom_name || "—" },
    { label: "期望时间", value: (o) => o.preferred_slots.map(slotText).join("、") || "不限" },
    { label: "状态", value: (o) => el("span", { class: "badge " + (o.status === "open" ? "badge-warn" : o.status === "matched" ? "badge-ok" : "") }, DEMAND_STATUS[o.status]) },
    { label: "响应", value: (o) => `${o.offer_count} 个` },
    { label: "发布时间", value: (o) => fmtDateTime(o.created_at) },
  ], page.data, { empty: "没有需求订单", actions: (o) => el("button", { type: "button", class: "btn", onclick: () => guarded(() => detail(o.id)) }, "查看") }),
  el("p", { class: "muted small" }, `共 ${page.count} 个`));
}

async function createOrder() {
  const [schools, terms] = await Promise.all([loadSchools(), loadTerms()]);
  const rural = schools.filter((s) => s.kind === "rural");
  const own = rural.find((s) => s.id === user.school_id);
  const rooms = own ? await fetchAll("/classrooms", { school_id: own.id }) : [];
  const out = await formDialog({
    title: "发布开课需求", okLabel: "发布",
    fields: [
      own ? null : { name: "rural_school_id", label: "乡村学校", type: "select", required: true, options: options(rural, (s) => s.name, { empty: "请选择" }) },
      { name: "term_id", label: "学期", type: "select", required: true, options: options(terms, (t) => t.name) },
      { name: "subject", label: "学科", required: true, placeholder: "英语" },
      { name: "grade", label: "年级", required: true, placeholder: "四年级" },
      own ? { name: "receiving_classroom_id", label: "接收教室", type: "select", options: options(rooms, (r) => r.name, { empty: "稍后指定" }) } : null,
      { name: "slots", label: "期望时间", placeholder: "周一第3节、周三第5节", hint: "本校节次；可写多个" },
      { name: "note", label: "说明", type: "textarea", wide: true },
    ].filter(Boolean),
    submit: (v) => api("/demand-orders", { method: "POST", body: {
      rural_school_id: v.rural_school_id ? Number(v.rural_school_id) : null, term_id: Number(v.term_id),
      subject: v.subject, grade: v.grade, receiving_classroom_id: v.receiving_classroom_id ? Number(v.receiving_classroom_id) : null,
      preferred_slots: parseSlots(v.slots), note: v.note || "" } }),
  });
  if (out) { toast("需求已发布", "ok"); status = "open"; guarded(draw); }
}

async function detail(id) {
  const o = await api(`/demand-orders/${id}`);
  const ruralSide = user.school_id == null || user.school_id === o.rural_school_id;
  const msg = el("div", { class: "form-msg" });
  const offers = o.offers.length ? o.offers.map((f) => el("div", { class: "offer", dataset: { offer: f.id } },
    el("div", { style: "flex:1" }, el("strong", {}, `${f.urban_school_name} · ${f.teacher_name}`),
      el("div", { class: "muted" }, `${f.main_classroom_name} · ${offerSlot(f)}${f.note ? " · " + f.note : ""}`)),
    el("span", { class: "badge" }, OFFER_STATUS[f.status]),
    ruralSide && f.status === "offered" && o.status === "open" ? [
      el("button", { type: "button", class: "btn btn-ok", onclick: () => accept(o, f, msg) }, "接受"),
      el("button", { type: "button", class: "btn", onclick: () => decline(o, f, msg) }, "婉拒"),
    ] : null)) : el("p", { class: "muted" }, "还没有学校响应");
  const actions = [];
  if (o.status === "open" && !(user.school_id && user.school_id === o.rural_school_id)) {
    actions.push({ label: "响应需求", kind: "primary", onClick: () => { offer(o); } });
  }
  if (o.status === "open" && ruralSide) {
    actions.push({ label: "关闭需求", onClick: async () => {
      try { await api(`/demand-orders/${o.id}/close`, { method: "POST", body: { reason: "" } }); toast("需求已关闭", "ok"); guarded(draw); }
      catch (err) { fill(msg, errorBox(err)); return false; }
    } });
  }
  openDialog({
    title: `需求 · ${o.rural_school_name} ${o.grade}${o.subject}`, wide: true, actions,
    body: [el("dl", { class: "kv" },
      el("dt", {}, "学期"), el("dd", {}, o.term_name),
      el("dt", {}, "接收教室"), el("dd", {}, o.receiving_classroom_name || "未指定"),
      el("dt", {}, "期望时间"), el("dd", {}, o.preferred_slots.map(slotText).join("、") || "不限"),
      el("dt", {}, "状态"), el("dd", {}, DEMAND_STATUS[o.status]),
      el("dt", {}, "说明"), el("dd", {}, o.note || "—")),
    el("h3", {}, `响应（${o.offers.length}）`), offers, msg],
  });
}

async function accept(o, f, msg) {
  let body = {};
  if (!o.receiving_classroom_id) {
    const rooms = await fetchAll("/classrooms", { school_id: o.rural_school_id });
    const chosen = await formDialog({
      title: "选择接收教室", okLabel: "接受并排课",
      fields: [{ name: "receiving_classroom_id", label: "接收教室", type: "select", required: true, options: options(rooms, (r) => r.name) }],
      submit: async (v) => ({ receiving_classroom_id: Number(v.receiving_classroom_id) }),
    });
    if (!chosen) return;
    body = chosen;
  }
  try {
    const out = await api(`/demand-orders/${o.id}/offers/${f.id}/accept`, { method: "POST", body });
    toast(`已接受：${out.pairing_created ? "新建城乡结对，" : ""}排课 ${out.instances} 节`, "ok");
    document.querySelectorAll("dialog").forEach((d) => { d.close(); d.remove(); });
    guarded(draw);
  } catch (err) {
    if (err instanceof ApiError && err.body.conflicts) fill(msg, el("div", { class: "alert alert-error" }, el("strong", {}, err.message), conflictList(err.body.conflicts)));
    else fill(msg, errorBox(err));
  }
}

async function decline(o, f, msg) {
  try {
    await api(`/demand-orders/${o.id}/offers/${f.id}/decline`, { method: "POST", body: { reason: "" } });
    toast("已婉拒", "ok");
    document.querySelectorAll("dialog").forEach((d) => { d.close(); d.remove(); });
    guarded(() => detail(o.id));
  } catch (err) { fill(msg, errorBox(err)); }
}

async function offer(o) {
  const schools = await loadSchools();
  const urban = schools.filter((s) => s.kind === "urban");
  const own = urban.find((s) => s.id === user.school_id);
  const school = own || urban[0];
  const [teachers, rooms] = school ? await Promise.all([loadTeachers(school.id), fetchAll("/classrooms", { school_id: school.id })]) : [[], []];
  const first = o.preferred_slots[0];
  const out = await formDialog({
    title: `响应需求 · ${o.rural_school_name} ${o.grade}${o.subject}`, okLabel: "提交响应",
    fields: [
      { name: "teacher_id", label: `主讲教师（${school ? school.name : ""}）`, type: "select", required: true, options: options(teachers, (t) => t.display_name, { empty: "请选择" }) },
      { name: "main_classroom_id", label: "主讲教室", type: "select", required: true, options: options(rooms, (r) => r.name) },
      { name: "weekday", label: "星期", type: "select", options: Object.entries(ISO_WEEKDAY), value: first?.weekday || 1 },
      { name: "period_from", label: "从第几节", type: "number", min: 1, max: 20, required: true, value: first?.period || 1, hint: "本校节次" },
      { name: "period_to", label: "到第几节", type: "number", min: 1, max: 20 },
      { name: "note", label: "说明", type: "textarea", wide: true },
    ],
    extra: orderSlotsPanel(o.id),
    submit: (v) => api(`/demand-orders/${o.id}/offers`, { method: "POST", body: {
      teacher_id: Number(v.teacher_id), main_classroom_id: Number(v.main_classroom_id), weekday: Number(v.weekday),
      period_from: v.period_from, period_to: v.period_to || null, note: v.note || "" } }),
  });
  if (out) { toast("已提交响应", "ok"); guarded(draw); }
}

user = requireLogin(["admin"]);
if (user) {
  mountHeader(user, { title: "需求订单" });
  guarded(draw);
}
