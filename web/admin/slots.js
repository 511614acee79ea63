// 查找空闲时段 (智能排课) on /admin/series.html: for a pairing, a teacher, a main classroom and its receiving
// classrooms, the free common slots of a week range, best first, each with what is in its way week by week
// (GET /pairings/{id}/free-slots); 排课 books one through POST /series with the proposal's body, so every
// booking rule and the 409 of a slot taken meanwhile hold.
import { api, el, fill, toast, openDialog } from "/assets/api.js";
import { fetchAll, field, loadSchools, loadTerms, loadTeachers, options, errorBox, guarded } from "/admin/common.js";

const button = document.getElementById("find-slots");

async function openFinder() {
  const [pairings, schools, terms] = await Promise.all([fetchAll("/pairings", { active: true }), loadSchools(), loadTerms()]);
  const schoolName = new Map(schools.map((s) => [s.id, s.name]));
  // the rural schools' names, which an urban school's admin reads through its pairings only
  for (const urban of new Set(pairings.map((p) => p.urban_school_id))) {
    const paired = await guarded(() => api("/pairings/classrooms", { query: { school_id: urban } }));
    for (const r of paired?.data || []) if (!schoolName.has(r.school_id)) schoolName.set(r.school_id, r.school_name);
  }
  const pairingLabel = (p) => `${schoolName.get(p.urban_school_id) || "#" + p.urban_school_id} → ${schoolName.get(p.rural_school_id) || "#" + p.rural_school_id}`
    + (p.subjects.length ? `（${p.subjects.join("、")}）` : "");
  const form = el("form", { class: "form-grid", id: "slot-form", onsubmit: (e) => e.preventDefault() },
    field({ name: "pairing", label: "城乡结对", type: "select", required: true, options: options(pairings, pairingLabel, { empty: "请选择" }) }),
    field({ name: "term_id", label: "学期", type: "select", required: true, options: options(terms), value: terms[0]?.id }),
    field({ name: "subject", label: "学科", required: true }),
    field({ name: "grade", label: "年级", required: true }),
    field({ name: "title", label: "课程名称", required: true }),
    field({ name: "weeks", label: "周次", placeholder: "如 3-12，缺省为整个学期" }),
    field({ name: "length", label: "连续节数", type: "select", options: [[1, "1 节"], [2, "2 节（连堂）"]], value: 1 }),
    field({ name: "teacher_id", label: "主讲教师", type: "select", required: true, options: [] }),
    field({ name: "main_classroom_id", label: "主讲教室", type: "select", required: true, options: [] }),
    el("div", { class: "field field-wide" }, el("span", {}, "接收教室"), el("div", { class: "check-list", id: "slot-receivers" })),
  );
  const results = el("div", { id: "slot-results", "aria-live": "polite" });
  const pick = form.querySelector("#f-pairing");
  pick.addEventListener("change", () => guarded(async () => {
    const p = pairings.find((x) => String(x.id) === pick.value);
    if (!p) return;
    if (p.subjects.length === 1 && !form.querySelector("#f-subject").value) form.querySelector("#f-subject").value = p.subjects[0];
    const [teachers, urbanRooms, paired] = await Promise.all([
      loadTeachers(p.urban_school_id), fetchAll("/classrooms", { school_id: p.urban_school_id }),
      api("/pairings/classrooms", { query: { school_id: p.urban_school_id } })]);  // the rural side, as booking offers it
    const ruralRooms = paired.data.filter((r) => r.school_id === p.rural_school_id)
      .map((r) => ({ id: r.classroom_id, name: r.classroom_name }));
    fill(form.querySelector("#f-teacher_id"), options(teachers, (t) => t.display_name, { empty: "请选择" })
      .map(([v, l]) => el("option", { value: v }, l)));
    const mains = urbanRooms.filter((r) => p.urban_classroom_id == null || r.id === p.urban_classroom_id);
    fill(form.querySelector("#f-main_classroom_id"), mains.map((r) => el("option", { value: r.id }, r.name)));
    const recvs = ruralRooms.filter((r) => p.rural_classroom_id == null || r.id === p.rural_classroom_id);
    fill(form.querySelector("#slot-receivers"), recvs.map((r) => el("label", { class: "check" },
      el("input", { type: "checkbox", class: "recv", value: r.id, checked: recvs.length === 1 }), r.name)));
  }));

  const values = () => Object.fromEntries(["pairing", "term_id", "subject", "grade", "title", "weeks", "length",
    "teacher_id", "main_classroom_id"].map((n) => [n, form.querySelector("#f-" + n).value.trim()]));

  async function search() {
    if (!form.reportValidity()) return;
    const v = values();
    const receiver_ids = [...form.querySelectorAll("#slot-receivers .recv:checked")].map((c) => Number(c.value));
    fill(results, el("p", { class: "muted" }, "正在查找……"));
    let found;
    try {
      found = await api(`/pairings/${v.pairing}/free-slots`, { query: {
        subject: v.subject, term_id: v.term_id, teacher_id: v.teacher_id, main_classroom_id: v.main_classroom_id,
        receiver_ids, weeks: v.weeks || undefined, length: v.length } });
    } catch (err) { fill(results, errorBox(err)); return; }
    const msg = el("div", { class: "form-msg", id: "slot-msg" });
    fill(results, el("p", { class: "muted" }, `第 ${found.week_from}–${found.week_to} 周，两校作息时间内共 ${found.candidates} 个时段，按每周都空闲、例外最少排列：`),
      msg, found.data.length ? el("ol", { class: "slot-list", id: "slot-proposals" }, found.data.map((p) => proposal(p, v, msg)))
        : el("p", { class: "empty" }, "没有两校作息时间都包含的时段"));
  }

  function proposal(p, v, msg) {
    const recv = p.receiving.map((r) => `${r.school_name} · ${r.classroom_name} 第${r.period_from === r.period_to ? r.period_from : r.period_from + "–" + r.period_to}节 ${r.start}–${r.end}`).join("；");
    // a slot taken in some weeks books around them: those weeks have no lesson (the booking's skip_weeks)
    const around = !p.bookable && p.lessons_skipping > 0;
    const skipped = p.skip_weeks.map((x) => `第${x}周`).join("、");
    const state = p.bookable ? (p.exceptions.length ? `共 ${p.lessons} 节，${p.holiday_weeks} 周逢节假日不上课` : `共 ${p.lessons} 节，每周都空闲`)
      : around ? `${p.clash_weeks} 周有冲突；跳过${skipped}排课，共 ${p.lessons_skipping} 节` : "每周都有冲突，不能排课";
    const book = el("button", { type: "button", class: "btn btn-ok", dataset: { action: "book" }, disabled: !p.bookable && !around,
      title: around ? `跳过有冲突的${skipped}` : p.bookable ? "" : "每周都有冲突的时段不能排课" }, around ? "跳过冲突周排课" : "排课");
    book.addEventListener("click", async () => {
      book.disabled = true;
      fill(msg);
      try {
        const out = await api("/series", { method: "POST", body: { ...p.booking, title: v.title, grade: v.grade } });
        toast(`已排课：${out.title}，${p.label}，共 ${out.instance_count} 节课${around ? `（${skipped}不上课）` : ""}`, "ok");
        window.dispatchEvent(new HashChangeEvent("hashchange"));  // the series lists redraw
        await search();
      } catch (err) { fill(msg, errorBox(err)); book.disabled = !p.bookable && !around; }
    });
    return el("li", { class: "slot", dataset: { weekday: p.weekday, period: p.period_from, bookable: String(p.bookable) } },
      el("div", { class: "panel-head" }, el("div", {}, el("strong", {}, p.label), el("br"),
        el("span", { class: "muted small" }, `接收：${recv}`), el("br"), el("span", { class: "small" }, state)), book),
      p.exceptions.length ? el("ul", { class: "conflicts" }, p.exceptions.map((e) => el("li", { dataset: { kind: e.kind, week: e.week } }, e.message))) : null);
  }

  openDialog({ title: "查找空闲时段（智能排课）", wide: true, body: [form, results],
    actions: [{ label: "查找", kind: "primary", onClick: async () => { await search(); return false; } }] });
}

if (button) button.addEventListener("click", () => guarded(openFinder));

/**
 * For the offer dialog of a demand order (demand.html): 查找空闲时段 with the dialog's teacher and main classroom
 * (GET /demand-orders/{id}/free-slots), the order's preferred slots first among equals; 用此时段 fills the dialog's
 * weekday and periods, and 提交响应 then offers it.
 */
export function orderSlotsPanel(orderId) {
  const results = el("div", { id: "order-slot-results", "aria-live": "polite" });
  const find = el("button", { type: "button", class: "btn", id: "order-find-slots" }, "查找空闲时段");
  find.addEventListener("click", async () => {
    const dlg = find.closest("dialog");
    const teacher = dlg.querySelector("#f-teacher_id").value;
    const room = dlg.querySelector("#f-main_classroom_id").value;
    if (!teacher || !room) { fill(results, el("p", { class: "muted" }, "请先选择主讲教师和主讲教室")); return; }
    fill(results, el("p", { class: "muted" }, "正在查找……"));
    let found;
    try {
      found = await api(`/demand-orders/${orderId}/free-slots`, { query: { teacher_id: teacher, main_classroom_id: room } });
    } catch (err) { fill(results, errorBox(err)); return; }
    fill(results, found.data.length ? el("ol", { class: "slot-list", id: "order-slot-proposals" }, found.data.map((p) => {
      const use = el("button", { type: "button", class: "btn btn-ok", dataset: { action: "use" }, disabled: !p.bookable }, "用此时段");
      use.addEventListener("click", () => {
        dlg.querySelector("#f-weekday").value = String(p.weekday);
        dlg.querySelector("#f-period_from").value = String(p.period_from);
        dlg.querySelector("#f-period_to").value = String(p.period_to);
      });
      const recv = p.receiving.map((r) => `${r.classroom_name} 第${r.period_from}节 ${r.start}–${r.end}`).join("；");
      return el("li", { class: "slot", dataset: { weekday: p.weekday, period: p.period_from, bookable: String(p.bookable) } },
        el("div", { class: "panel-head" }, el("div", {}, el("strong", {}, p.label, p.preferred ? "（需求方期望时段）" : ""), el("br"),
          el("span", { class: "muted small" }, `接收：${recv}`), el("br"),
          el("span", { class: "small" }, p.bookable ? `共 ${p.lessons} 节` : `${p.clash_weeks} 周有冲突`)), use),
        p.exceptions.length ? el("ul", { class: "conflicts" }, p.exceptions.map((e) => el("li", { dataset: { kind: e.kind } }, e.message))) : null);
    })) : el("p", { class: "empty" }, "没有两校作息时间都包含的时段"));
  });
  return el("div", { class: "field-wide" }, find, results);
}
