// /admin/ — schools, classrooms, pairings, terms (holidays, make-up days) and period schemes.
import { api, requireLogin, mountHeader, el, fill, toast, confirmDialog, fmtDate, adminScope } from "/assets/api.js";
import {
  SCHOOL_KIND, DAY_KIND, ISO_WEEKDAY, table, formDialog, options, loadRegions, loadSchools, loadTerms,
  fetchAll, forget, byId, guarded,
} from "/admin/common.js";

const panel = document.getElementById("panel");
let user;

const TABS = { schools: showSchools, classrooms: showClassrooms, pairings: showPairings, terms: showTerms, schemes: showSchemes };

function currentTab() { const t = location.hash.slice(1).split("?")[0]; return TABS[t] ? t : "schools"; }

async function route() {
  const tab = currentTab();
  for (const b of document.querySelectorAll("#tabs .tab")) b.classList.toggle("active", b.dataset.tab === tab);
  fill(panel, el("p", { class: "muted" }, "加载中……"));
  await guarded(() => TABS[tab]());
}

function head(title, ...controls) { return el("div", { class: "panel-head" }, el("h2", {}, title), controls); }

function regionName(regions, id) {
  const r = regions.find((x) => x.id === id);
  return r ? r.name : id == null ? "全部" : "#" + id;
}

// ------------------------------------------------------------------ schools

async function showSchools() {
  const [schools, regions] = await Promise.all([loadSchools(), loadRegions()]);
  const groups = await api("/schools/groups").then((g) => g.data).catch(() => []);
  const gmap = byId(groups);
  const q = el("input", { type: "search", placeholder: "按名称筛选", "aria-label": "按名称筛选" });
  const list = el("div");
  const draw = () => {
    const term = q.value.trim();
    const rows = schools.filter((s) => !term || s.name.includes(term));
    fill(list, table([
      { label: "学校", value: (s) => s.name },
      { label: "类型", value: (s) => SCHOOL_KIND[s.kind] },
      { label: "区县", value: (s) => regionName(regions, s.region_id) },
      { label: "教育集团", value: (s) => (gmap.get(s.group_id) || {}).name || "—" },
    ], rows, { actions: (s) => [
      el("a", { class: "btn", href: `#classrooms?school=${s.id}` }, "教室"),
      el("button", { class: "btn", type: "button", onclick: () => editSchool(s, regions, groups) }, "编辑"),
    ] }), el("p", { class: "muted small" }, `共 ${rows.length} 所`));
  };
  q.addEventListener("input", draw);
  const canCreate = adminScope(user) !== "school";
  fill(panel, head("学校", el("label", { class: "field" }, el("span", {}, "筛选"), q),
    canCreate ? el("button", { class: "btn btn-primary", type: "button", onclick: () => editSchool(null, regions, groups) }, "新建学校") : null),
  list);
  draw();
}

async function editSchool(s, regions, groups) {
  const out = await formDialog({
    title: s ? "编辑学校" : "新建学校",
    fields: [
      { name: "name", label: "名称", required: true, value: s?.name },
      { name: "kind", label: "类型", type: "select", options: Object.entries(SCHOOL_KIND), value: s?.kind || "rural" },
      { name: "region_id", label: "所属区域", type: "select", required: true,
        options: options(regions.filter((r) => r.level !== "province"), (r) => r.name, { empty: "请选择" }), value: s?.region_id },
      { name: "group_id", label: "教育集团", type: "select", options: options(groups, (g) => g.name, { empty: "无" }), value: s?.group_id },
    ],
    submit: (v) => {
      const body = { name: v.name, kind: v.kind, region_id: Number(v.region_id), group_id: v.group_id ? Number(v.group_id) : null };
      return s ? api(`/schools/${s.id}`, { method: "PATCH", body }) : api("/schools", { method: "POST", body });
    },
  });
  if (out) { toast(s ? "已保存" : "已新建学校", "ok"); forget("schools"); route(); }
}

// ------------------------------------------------------------------ classrooms

function hashParam(name) { return new URLSearchParams(location.hash.split("?")[1] || "").get(name); }

async function showClassrooms() {
  const schools = await loadSchools();
  const schoolId = Number(hashParam("school")) || (user.school_id ?? schools[0]?.id);
  const sel = el("select", { "aria-label": "学校", onchange: (e) => { location.hash = `classrooms?school=${e.target.value}`; } },
    schools.map((s) => el("option", { value: s.id, selected: s.id === schoolId }, s.name)));
  const rooms = schoolId ? await fetchAll("/classrooms", { school_id: schoolId }) : [];
  const school = schools.find((s) => s.id === schoolId);
  fill(panel, head("教室终端", el("label", { class: "field" }, el("span", {}, "学校"), sel),
    school ? el("button", { class: "btn btn-primary", type: "button", onclick: () => editRoom(null, school) }, "新建教室") : null),
  table([
    { label: "教室", value: (c) => c.name },
    { label: "容纳人数", value: (c) => String(c.capacity) },
  ], rooms, { actions: (c) => [
    el("a", { class: "btn", href: `/admin/timetable.html?classroom=${c.id}` }, "周课表"),
    el("button", { class: "btn", type: "button", onclick: () => editRoom(c, school) }, "编辑"),
  ] }));
}

async function editRoom(c, school) {
  const out = await formDialog({
    title: c ? "编辑教室" : `新建教室 · ${school.name}`,
    fields: [
      { name: "name", label: "名称", required: true, value: c?.name },
      { name: "capacity", label: "容纳人数", type: "number", min: 1, value: c?.capacity ?? 45 },
    ],
    submit: (v) => c ? api(`/classrooms/${c.id}`, { method: "PATCH", body: v })
      : api("/classrooms", { method: "POST", body: { ...v, school_id: school.id } }),
  });
  if (out) { toast("已保存", "ok"); forget("classrooms"); route(); }
}

// ------------------------------------------------------------------ pairings

async function showPairings() {
  const [schools, terms, pairings] = await Promise.all([loadSchools(), loadTerms(), fetchAll("/pairings")]);
  const smap = byId(schools);
  const tmap = byId(terms);
  const name = (id) => (smap.get(id) || {}).name || "#" + id;
  fill(panel, head("城乡结对", el("button", { class: "btn btn-primary", type: "button", onclick: () => editPairing(null, schools, terms) }, "新建结对")),
    table([
      { label: "城区学校", value: (p) => name(p.urban_school_id) },
      { label: "乡村学校", value: (p) => name(p.rural_school_id) },
      { label: "学科", value: (p) => p.subjects.length ? p.subjects.join("、") : "全部学科" },
      { label: "学期", value: (p) => p.term_id ? (tmap.get(p.term_id) || {}).name || "#" + p.term_id : "长期" },
      { label: "状态", value: (p) => el("span", { class: "badge " + (p.active ? "badge-ok" : "") }, p.active ? "有效" : "已结束") },
    ], pairings, { actions: (p) => [
      el("button", { class: "btn", type: "button", onclick: () => editPairing(p, schools, terms) }, "编辑"),
      p.active ? el("button", { class: "btn", type: "button", onclick: async () => {
        if (!(await confirmDialog(`结束“${name(p.urban_school_id)}”与“${name(p.rural_school_id)}”的结对？已排的课程不受影响。`, { okLabel: "结束结对", kind: "danger" }))) return;
        await guarded(async () => { await api(`/pairings/${p.id}/deactivate`, { method: "POST" }); toast("结对已结束", "ok"); route(); });
      } }, "结束") : null,
    ] }));
}

async function editPairing(p, schools, terms) {
  const urban = schools.filter((s) => s.kind === "urban");
  const rural = schools.filter((s) => s.kind === "rural");
  const fields = p ? [] : [
    { name: "urban_school_id", label: "城区学校", type: "select", required: true, options: options(urban, (s) => s.name, { empty: "请选择" }) },
    { name: "rural_school_id", label: "乡村学校", type: "select", required: true, options: options(rural, (s) => s.name, { empty: "请选择" }) },
  ];
  fields.push(
    { name: "subjects", label: "学科", value: p ? p.subjects.join("，") : "", hint: "多个学科用逗号分隔；留空表示全部学科" },
    { name: "term_id", label: "学期", type: "select", options: options(terms, (t) => t.name, { empty: "长期结对" }), value: p?.term_id },
  );
  if (p) fields.push({ name: "active", label: "有效", type: "checkbox", value: p.active });
  const out = await formDialog({
    title: p ? "编辑结对" : "新建城乡结对", fields,
    submit: (v) => {
      const subjects = (v.subjects || "").split(/[,，、\s]+/).filter(Boolean);
      const term_id = v.term_id ? Number(v.term_id) : null;
      if (p) return api(`/pairings/${p.id}`, { method: "PATCH", body: { subjects, term_id, active: v.active } });
      return api("/pairings", { method: "POST", body: { urban_school_id: Number(v.urban_school_id), rural_school_id: Number(v.rural_school_id), subjects, term_id } });
    },
  });
  if (out) { toast("已保存", "ok"); route(); }
}

// ------------------------------------------------------------------ terms

async function showTerms() {
  const [terms, regions] = await Promise.all([loadTerms(), loadRegions()]);
  const termId = Number(hashParam("term")) || terms[0]?.id;
  const detail = termId ? await api(`/terms/${termId}`) : null;
  const list = table([
    { label: "学期", value: (t) => t.name },
    { label: "开始", value: (t) => t.start_date },
    { label: "结束", value: (t) => t.end_date },
    { label: "适用区域", value: (t) => regionName(regions, t.region_id) },
  ], terms, { actions: (t) => el("a", { class: "btn" + (t.id === termId ? " btn-primary" : ""), href: `#terms?term=${t.id}` }, "节假日与调休"),
    rowAttrs: (t) => ({ class: t.id === termId ? "current" : "" }) });
  const days = detail ? el("section", { style: "margin-top: 24px" },
    head(`${detail.name} · 节假日与调休`,
      el("button", { class: "btn btn-primary", type: "button", onclick: () => addTermDay(detail) }, "添加节假日 / 调休")),
    table([
      { label: "日期", value: (d) => fmtDate(d.day, { year: true }) },
      { label: "类型", value: (d) => DAY_KIND[d.kind] },
      { label: "说明", value: (d) => d.name || "—" },
      { label: "按哪天课表", value: (d) => d.follows_weekday ? ISO_WEEKDAY[d.follows_weekday] : "—" },
    ], detail.days, { empty: "没有节假日或调休", actions: (d) => el("button", { class: "btn", type: "button", onclick: async () => {
      if (!(await confirmDialog(`删除 ${d.day} 的${DAY_KIND[d.kind]}“${d.name}”？`, { okLabel: "删除", kind: "danger" }))) return;
      await guarded(async () => { await api(`/terms/${detail.id}/days/${d.id}`, { method: "DELETE" }); toast("已删除", "ok"); route(); });
    } }, "删除") })) : null;
  fill(panel, head("学期", el("button", { class: "btn btn-primary", type: "button", onclick: () => createTerm(regions) }, "新建学期")), list, days);
}

async function createTerm(regions) {
  const out = await formDialog({
    title: "新建学期",
    fields: [
      { name: "name", label: "名称", required: true, placeholder: "2027 年春季学期" },
      { name: "start_date", label: "开始日期", type: "date", required: true },
      { name: "end_date", label: "结束日期", type: "date", required: true },
      { name: "region_id", label: "适用区域", type: "select", options: options(regions, (r) => r.name, { empty: "全部区域" }), value: user.region_id },
    ],
    submit: (v) => api("/terms", { method: "POST", body: { ...v, region_id: v.region_id ? Number(v.region_id) : null } }),
  });
  if (out) { toast("已新建学期", "ok"); forget("terms"); location.hash = `terms?term=${out.id}`; }
}

async function addTermDay(term) {
  const out = await formDialog({
    title: "添加节假日 / 调休补课日",
    fields: [
      { name: "day", label: "日期", type: "date", required: true, min: term.start_date, max: term.end_date },
      { name: "kind", label: "类型", type: "select", options: Object.entries(DAY_KIND), value: "holiday" },
      { name: "name", label: "说明", placeholder: "如：元旦" },
      { name: "follows_weekday", label: "补课日按哪天的课表", type: "select",
        options: [["", "（节假日不填）"], ...Object.entries(ISO_WEEKDAY)], hint: "仅调休补课日需要" },
    ],
    submit: (v) => api(`/terms/${term.id}/days`, { method: "POST", body: {
      day: v.day, kind: v.kind, name: v.name || "", follows_weekday: v.kind === "makeup" && v.follows_weekday ? Number(v.follows_weekday) : null } }),
  });
  if (!out) return;
  const parts = [`已添加 ${out.day} ${DAY_KIND[out.kind]}`];
  if (out.cancelled_lessons.length) parts.push(`停课 ${out.cancelled_lessons.length} 节`);
  if (out.added_lessons.length) parts.push(`补排 ${out.added_lessons.length} 节`);
  toast(parts.join("，"), "ok");
  if (out.not_added.length) {
    toast(`${out.not_added.length} 节课无法补排：` + out.not_added.map((x) => x.message || x.reason || JSON.stringify(x)).slice(0, 3).join("；"), "warn");
  }
  route();
}

// ------------------------------------------------------------------ period schemes

async function showSchemes() {
  const [schools, terms] = await Promise.all([loadSchools(), loadTerms()]);
  const schoolId = Number(hashParam("school")) || (user.school_id ?? schools[0]?.id);
  const sel = el("select", { "aria-label": "学校", onchange: (e) => { location.hash = `schemes?school=${e.target.value}`; } },
    schools.map((s) => el("option", { value: s.id, selected: s.id === schoolId }, s.name)));
  const schemes = (await api("/period-schemes", { query: { school_id: schoolId } })).data;
  const tmap = byId(terms);
  const school = schools.find((s) => s.id === schoolId);
  fill(panel, head("作息时间（节次）", el("label", { class: "field" }, el("span", {}, "学校"), sel),
    el("button", { class: "btn btn-primary", type: "button", onclick: () => editScheme(null, school, terms) }, "新建作息")),
  schemes.length ? schemes.map((s) => el("div", { class: "card", style: "box-shadow:none;border:1px solid var(--c-line)" },
    el("div", { class: "row" }, el("h3", { style: "margin:0" }, s.name || "作息"),
      el("span", { class: "badge" }, s.term_id ? (tmap.get(s.term_id) || {}).name || "学期" : "常年"), el("span", { class: "spacer" }),
      el("button", { class: "btn", type: "button", onclick: () => editScheme(s, school, terms) }, "编辑")),
    el("p", { class: "muted" }, s.periods.map((p) => `第${p.number}节 ${p.start_time.slice(0, 5)}–${p.end_time.slice(0, 5)}`).join("　"))))
    : el("p", { class: "empty" }, "该校还没有作息时间"));
}

function periodsEditor(periods) {
  const body = el("tbody");
  const addRow = (p = {}) => {
    const n = body.children.length + 1;
    body.appendChild(el("tr", {},
      el("td", {}, `第 ${n} 节`),
      el("td", {}, el("input", { type: "time", class: "p-start", value: (p.start_time || "").slice(0, 5), required: true, "aria-label": `第${n}节开始` })),
      el("td", {}, el("input", { type: "time", class: "p-end", value: (p.end_time || "").slice(0, 5), required: true, "aria-label": `第${n}节结束` })),
      el("td", {}, el("button", { type: "button", class: "btn", onclick: (e) => { e.currentTarget.closest("tr").remove(); renumber(); } }, "删除"))));
  };
  const renumber = () => [...body.children].forEach((tr, i) => { tr.firstChild.textContent = `第 ${i + 1} 节`; });
  (periods.length ? periods : [{}]).forEach(addRow);
  const node = el("div", { class: "field-wide" }, el("table", { class: "table periods-editor" },
    el("thead", {}, el("tr", {}, el("th", {}, "节次"), el("th", {}, "开始"), el("th", {}, "结束"), el("th", {}, ""))), body),
  el("button", { type: "button", class: "btn", onclick: () => addRow() }, "添加一节"));
  node.read = () => [...body.children].map((tr, i) => ({
    number: i + 1, start_time: tr.querySelector(".p-start").value, end_time: tr.querySelector(".p-end").value }));
  return node;
}

async function editScheme(s, school, terms) {
  const editor = periodsEditor(s ? s.periods : []);
  const out = await formDialog({
    title: s ? `编辑作息 · ${school.name}` : `新建作息 · ${school.name}`, wide: true, extra: editor,
    fields: [
      { name: "name", label: "名称", value: s?.name || `${school.name}作息` },
      { name: "term_id", label: "适用学期", type: "select", options: options(terms, (t) => t.name, { empty: "常年（不限学期）" }), value: s?.term_id },
    ],
    submit: (v) => {
      const body = { name: v.name || "", term_id: v.term_id ? Number(v.term_id) : null, periods: editor.read() };
      return s ? api(`/period-schemes/${s.id}`, { method: "PATCH", body })
        : api("/period-schemes", { method: "POST", body: { ...body, school_id: school.id } });
    },
  });
  if (out) { toast("作息已保存", "ok"); route(); }
}

// ------------------------------------------------------------------ start

user = requireLogin(["admin"]);
if (user) {
  mountHeader(user, { title: "管理" });
  for (const b of document.querySelectorAll("#tabs .tab")) b.addEventListener("click", () => { location.hash = b.dataset.tab; });
  window.addEventListener("hashchange", route);
  route();
}
