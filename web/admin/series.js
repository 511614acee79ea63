// /admin/series.html — the series of the schools an admin manages: teachers' requests waiting for
// approval (批准 / 驳回 with a reason), booked series (整体停课 with a reason, after a confirmation),
// and the rejected and cancelled ones. Lists only series whose main school the admin manages
// (GET /series?manageable=true).
import { api, requireLogin, mountHeader, el, fill, toast, openDialog, fmtDateTime, KIND_LABEL, streamFromChoices, streamFromText } from "/assets/api.js";
import { RECEIVER_MODE, fetchAll, table, formDialog, errorBox, guarded, whenText, decisionText } from "/admin/common.js";

const TABS = {
  pending: { title: "待审批的排课申请", empty: "没有待审批的排课申请" },
  approved: { title: "已排课程", empty: "没有已排的课程" },
  rejected: { title: "已驳回的申请", empty: "没有已驳回的申请" },
  cancelled: { title: "已停课的课程", empty: "没有已停课的课程" },
};
const panel = document.getElementById("panel");
const currentTab = () => (location.hash.slice(1) in TABS ? location.hash.slice(1) : "pending");

const receiversText = (s) => s.receivers.length
  ? s.receivers.map((r) => `${r.school_name} · ${r.classroom_name}${r.mode === "interactive" ? "" : "（" + RECEIVER_MODE[r.mode] + "）"}`).join("、")
  : "—";

function columns(tab) {
  return [
    { label: "课程", value: (s) => [el("strong", {}, s.title), el("br"), el("span", { class: "muted small" }, `${KIND_LABEL[s.kind]} · ${s.subject} · ${s.grade}`)] },
    { label: "时间", value: (s) => whenText(s), class: "nowrap" },
    { label: "主讲", value: (s) => [s.main_teacher_name, el("br"), el("span", { class: "muted small" }, `${s.main_school_name} · ${s.main_classroom_name}`)] },
    { label: "接收教室", value: receiversText },
    tab === "pending"
      ? { label: "申请", value: (s) => [s.created_by_name, el("br"), el("span", { class: "muted small" }, fmtDateTime(s.created_at))] }
      : tab === "approved"
        ? { label: "课次", value: (s) => `${s.instance_count} 节`, class: "nowrap" }
        : { label: tab === "rejected" ? "驳回原因" : "停课原因", value: decisionText },
  ];
}

function actions(tab, s) {
  if (!s.can_manage) return [];
  if (tab === "pending") {
    return [
      el("button", { type: "button", class: "btn btn-ok", dataset: { action: "approve" }, onclick: () => approve(s) }, "批准"),
      el("button", { type: "button", class: "btn", dataset: { action: "reject" }, onclick: () => reject(s) }, "驳回"),
    ];
  }
  if (tab === "approved") {
    return [
      s.kind === "famous_school"
        ? el("button", { type: "button", class: "btn", dataset: { action: "stream-from" }, title: streamFromText(s.stream_from),
          onclick: () => streamFrom(s) }, "在家学生观看方式") : null,
      el("button", { type: "button", class: "btn btn-danger", dataset: { action: "cancel" }, onclick: () => cancel(s) }, "整体停课"),
    ].filter(Boolean);
  }
  return [];
}

async function draw() {
  const tab = currentTab();
  for (const b of document.querySelectorAll("#tabs .tab")) {
    b.classList.toggle("active", b.dataset.tab === tab);
    b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  }
  const rows = await fetchAll("/series", { status: tab, manageable: true });
  if (tab === "pending") showPendingCount(rows.length);
  const search = el("input", { type: "search", id: "series-search", placeholder: "按课程、教师、学校筛选", "aria-label": "筛选" });
  const list = el("div", { id: "series-list" });
  const render = () => {
    const q = search.value.trim();
    const shown = q ? rows.filter((s) => [s.title, s.subject, s.main_teacher_name, s.main_school_name, receiversText(s)]
      .some((t) => t.includes(q))) : rows;
    fill(list, table(columns(tab), shown, {
      empty: TABS[tab].empty, actions: (s) => actions(tab, s),
      rowAttrs: (s) => ({ dataset: { series: s.id } }),
    }));
  };
  search.addEventListener("input", render);
  render();
  fill(panel, el("div", { class: "panel-head" }, el("h2", {}, TABS[tab].title, " ", el("span", { class: "badge" }, `${rows.length}`)),
    el("label", { class: "field" }, el("span", {}, "筛选"), search)), list);
}

function showPendingCount(n) {
  const badge = document.getElementById("pending-count");
  badge.hidden = !n;
  badge.textContent = ` ${n}`;
}

async function refreshPendingCount() {
  const page = await api("/series", { query: { status: "pending", manageable: true, limit: 1 } });
  showPendingCount(page.count);
}

function summary(s) {
  return el("dl", { class: "kv" },
    el("dt", {}, "课程"), el("dd", {}, `${s.title}（${KIND_LABEL[s.kind]}）`),
    el("dt", {}, "时间"), el("dd", {}, whenText(s)),
    el("dt", {}, "主讲"), el("dd", {}, `${s.main_teacher_name} · ${s.main_school_name} ${s.main_classroom_name}`),
    el("dt", {}, "接收教室"), el("dd", {}, receiversText(s)));
}

function approve(s) {
  const msg = el("div", { class: "form-msg" });
  openDialog({
    title: `批准排课申请 · ${s.title}`, wide: true,
    body: [summary(s), el("p", {}, "批准后将按以上时间排入本学期今后的每一节课（先检查冲突，有冲突则不排）。"), msg],
    actions: [{ label: "批准并排课", kind: "ok", onClick: async () => {
      fill(msg);
      try {
        const out = await api(`/series/${s.id}/approve`, { method: "POST", body: { reason: "" } });
        toast(`已批准：${out.title}，共 ${out.instance_count} 节课`, "ok");
        redraw();
        return true;
      } catch (err) { fill(msg, errorBox(err)); return false; }
    } }],
  });
}

function reject(s) {
  formDialog({
    title: `驳回排课申请 · ${s.title}`, okLabel: "驳回", extra: summary(s),
    fields: [{ name: "reason", label: "驳回原因（申请人可见）", type: "textarea", required: true, wide: true }],
    submit: (v) => api(`/series/${s.id}/reject`, { method: "POST", body: { reason: v.reason } }),
  }).then((out) => { if (out) { toast(`已驳回：${out.title}`, "ok"); redraw(); } });
}

function streamFrom(s) {
  formDialog({
    title: `在家学生观看方式 · ${s.title}`, extra: el("p", { class: "muted" },
      "不在台上的在家学生可以观看直播流（HLS，延迟约 2–3 秒，人数不受媒体服务器容量限制）；上台时自动切换为实时互动。接收教室始终实时互动。"),
    fields: [{ name: "stream_from", label: "观看方式", type: "select", value: s.stream_from === null ? "" : String(s.stream_from),
      options: streamFromChoices(s.stream_from ?? null), wide: true }],
    submit: (v) => api(`/series/${s.id}/stream-from`, { method: "PUT",
      body: { stream_from: v.stream_from === null ? null : Number(v.stream_from) } }),
  }).then((out) => { if (out) { toast(`${out.title}：${streamFromText(out.stream_from)}`, "ok"); redraw(); } });
}

function cancel(s) {
  formDialog({
    title: `整体停课 · ${s.title}`, okLabel: "确认停课",
    extra: [summary(s), el("div", { class: "alert alert-warn", id: "cancel-warning" },
      `将停掉该课程今后所有尚未上的课次（现有 ${s.instance_count} 节课次，已上过的保留），各方课表中不再安排。此操作不能撤销。`)],
    fields: [{ name: "reason", label: "停课原因", type: "textarea", required: true, wide: true }],
    submit: (v) => api(`/series/${s.id}/cancel`, { method: "POST", body: { reason: v.reason } }),
  }).then((out) => { if (out) { toast(`已停课：${out.title}`, "ok"); redraw(); } });
}

function redraw() { guarded(draw); }

const user = requireLogin(["admin"]);
if (user) {
  mountHeader(user, { title: "排课审批" });
  for (const b of document.querySelectorAll("#tabs .tab")) b.addEventListener("click", () => { location.hash = b.dataset.tab; });
  window.addEventListener("hashchange", redraw);
  redraw();
  if (currentTab() !== "pending") guarded(refreshPendingCount);
}
