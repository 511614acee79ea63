// The reports dashboard (教学统计): held / on-time / attendance rates over a date range and scope,
// by unit, patrol coverage, the lessons themselves, and every report as CSV / XLSX.
import { api, requireLogin, mountHeader, showError, el, fill, fmtDate, fmtRange, fmtTime,
  KIND_LABEL } from "/assets/api.js";
import { pct, pctNum, minutes, download, chartIn, COLORS } from "/records/common.js";

const DIMS = [["region", "区县"], ["school", "学校"], ["teacher", "教师"], ["subject", "学科"], ["kind", "类型"]];
const OUTCOME_BADGE = { held: "badge-held", partly_held: "badge-warn", missed: "badge-missed", cancelled: "badge-cancelled",
  pending: "badge-scheduled" };
const PAGE = 50;

const state = { filter: {}, dim: "region", lessonsShown: 0 };
const form = document.getElementById("filters");

function currentFilter() {
  const data = new FormData(form);
  const f = {};
  for (const [k, v] of data.entries()) if (v !== "") f[k] = v;
  return f;
}

const DEFAULT_DAYS = 30;

async function loadScopes(user) {
  const schoolBound = user.role === "teacher" || (user.role === "admin" && user.school_id);
  if (schoolBound) {
    document.getElementById("region-field").hidden = true;
    document.getElementById("school-field").hidden = true;
    return;
  }
  const regions = await api("/regions", { query: user.region_id ? { within_id: user.region_id } : {} });
  form.region_id.append(...regions.data.filter((r) => r.level !== "province")
    .map((r) => el("option", { value: r.id }, r.name)));
  const schools = await api("/schools", { query: { limit: 200 } });
  form.school_id.append(...schools.data.sort((a, b) => a.name.localeCompare(b.name, "zh-CN"))
    .map((s) => el("option", { value: s.id }, s.name)));
}

function kpi(label, value, sub) {
  return el("div", { class: "card kpi" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value),
    el("div", { class: "sub" }, sub));
}

function renderKpis(s, patrol) {
  const t = s.total;
  fill(document.getElementById("kpis"),
    kpi("开课率", pct(t.held_rate), `应开课 ${t.due} 节，已开课 ${t.held}，部分开课 ${t.partly_held}`),
    kpi("准时率", pct(t.on_time_rate), `准时开课 ${t.on_time} 节`),
    kpi("到课率", pct(t.attendance_rate), `应到 ${t.expected}，实到 ${t.attended}`),
    kpi("未开课", String(t.missed), `其中无记录 ${t.unrecorded}；已停课 ${t.cancelled}`),
    kpi("巡课覆盖率", pct(t.patrol_rate), `巡课 ${patrol.visits} 次，评课 ${patrol.evaluated} 节`),
    kpi("平均评分", s.average_score === null ? "—" : s.average_score.toFixed(1), "评课总分（百分制）"));
}

function renderTrend(s) {
  const labels = s.series.map((b) => s.bucket === "day" ? fmtDate(b.start) : `${fmtDate(b.start)}起`);
  document.getElementById("trend-note").textContent = s.bucket === "day" ? "按日" : "按周";
  const line = (name, key, color) => ({ name, type: "line", smooth: false, connectNulls: false, showSymbol: labels.length < 40,
    data: s.series.map((b) => pctNum(b.tally[key])), itemStyle: { color } });
  chartIn(document.getElementById("trend-chart")).setOption({
    animation: false,
    tooltip: { trigger: "axis", valueFormatter: (v) => (v === null || v === undefined ? "—" : `${v}%`) },
    legend: { top: 0 },
    grid: { left: 48, right: 24, top: 40, bottom: 40 },
    xAxis: { type: "category", data: labels },
    yAxis: { type: "value", min: (v) => Math.max(0, Math.floor(v.min / 10) * 10), max: 100, axisLabel: { formatter: "{value}%" } },
    series: [line("开课率", "held_rate", COLORS[0]), line("准时率", "on_time_rate", COLORS[1]),
      line("到课率", "attendance_rate", COLORS[2])],
  }, true);
}

function renderKinds(s) {
  const kinds = Object.keys(s.by_kind);
  const bar = (name, key, color) => ({ name, type: "bar", stack: "all", data: kinds.map((k) => s.by_kind[k][key]),
    itemStyle: { color } });
  chartIn(document.getElementById("kind-chart")).setOption({
    animation: false,
    tooltip: { trigger: "axis" },
    legend: { top: 0 },
    grid: { left: 100, right: 24, top: 40, bottom: 30 },
    yAxis: { type: "category", data: kinds.map((k) => KIND_LABEL[k] || k) },
    xAxis: { type: "value", name: "节" },
    series: [bar("已开课", "held", COLORS[1]), bar("部分开课", "partly_held", COLORS[2]), bar("未开课", "missed", COLORS[4]),
      bar("已停课", "cancelled", "#94a3b8"), bar("未到期", "pending", "#cbd5e1")],
  }, true);
}

/** A teacher's name leads to their development record over the report's dates (a teacher: their own only). */
function teacherLink(b, u) {
  if (b.by !== "teacher" || (user.role === "teacher" && String(user.id) !== u.key)) return null;
  const q = new URLSearchParams({ id: u.key, date_from: b.filter.date_from, date_to: b.filter.date_to });
  return el("a", { href: `/records/teacher.html?${q}`, dataset: { teacher: u.key } }, u.name);
}

function renderUnits(b) {
  const dimLabel = Object.fromEntries(DIMS)[b.by];
  document.getElementById("unit-title").textContent = `按${dimLabel}统计`;
  document.getElementById("unit-col").textContent = dimLabel;
  const top = b.data.filter((u) => u.tally.due > 0).slice(0, 15);
  const names = top.map((u) => u.name).reverse();
  const serie = (name, key, color) => ({ name, type: "bar", data: top.map((u) => pctNum(u.tally[key])).reverse(),
    itemStyle: { color } });
  chartIn(document.getElementById("unit-chart")).setOption({
    animation: false,
    tooltip: { trigger: "axis", valueFormatter: (v) => (v === null || v === undefined ? "—" : `${v}%`) },
    legend: { top: 0 },
    grid: { left: 150, right: 24, top: 40, bottom: 30 },
    yAxis: { type: "category", data: names, axisLabel: { width: 140, overflow: "truncate" } },
    xAxis: { type: "value", max: 100, axisLabel: { formatter: "{value}%" } },
    series: [serie("开课率", "held_rate", COLORS[0]), serie("准时率", "on_time_rate", COLORS[1]),
      serie("到课率", "attendance_rate", COLORS[2])],
  }, true);
  const tbody = document.querySelector("#unit-table tbody");
  if (!b.data.length) { fill(tbody, el("tr", {}, el("td", { colspan: 12, class: "empty" }, "没有数据"))); return; }
  fill(tbody, b.data.map((u) => {
    const t = u.tally;
    return el("tr", {},
      el("td", {}, teacherLink(b, u) || u.name), el("td", { class: "num" }, t.due), el("td", { class: "num" }, t.held),
      el("td", { class: "num" }, t.partly_held), el("td", { class: "num" }, t.missed), el("td", { class: "num" }, t.cancelled),
      el("td", { class: "num" }, pct(t.held_rate)), el("td", { class: "num" }, pct(t.on_time_rate)),
      el("td", { class: "num" }, `${t.expected}/${t.attended}`), el("td", { class: "num" }, pct(t.attendance_rate)),
      el("td", { class: "num" }, pct(t.patrol_rate)),
      el("td", { class: "num" }, u.average_score === null ? "—" : u.average_score.toFixed(1)));
  }));
}

function renderPatrol(p) {
  document.getElementById("patrol-note").textContent =
    `已开课 ${p.held} 节，其中被巡课 ${p.patrolled} 节（${pct(p.patrol_rate)}），被评课 ${p.evaluated} 节（${pct(p.evaluation_rate)}）；` +
    `共巡课 ${p.visits} 次、${p.minutes} 分钟`;
  const tbody = document.querySelector("#patrol-table tbody");
  if (!p.visitors.length) { fill(tbody, el("tr", {}, el("td", { colspan: 6, class: "empty" }, "没有可显示的巡课人"))); return; }
  fill(tbody, p.visitors.map((v) => el("tr", {}, el("td", {}, v.name), el("td", { class: "num" }, v.visits),
    el("td", { class: "num" }, v.lessons), el("td", { class: "num" }, v.minutes), el("td", { class: "num" }, v.evaluations),
    el("td", { class: "num" }, v.average_score === null ? "—" : v.average_score.toFixed(1)))));
}

function lessonRow(l) {
  return el("tr", { dataset: { lesson: l.id } },
    el("td", { class: "nowrap" }, fmtDate(l.day)), el("td", { class: "nowrap" }, fmtRange(l.starts_at, l.ends_at)),
    el("td", {}, l.title), el("td", { class: "nowrap" }, KIND_LABEL[l.kind] || l.kind),
    el("td", {}, el("span", { class: "badge " + (OUTCOME_BADGE[l.outcome] || "") }, l.outcome_label)),
    el("td", { class: "nowrap" }, l.actual_start ? fmtTime(l.actual_start) : "—"),
    el("td", { class: "num" }, l.record_status ? minutes(l.duration_s) : "—"),
    el("td", {}, l.on_time === null ? "—" : (l.on_time ? "是" : `迟到 ${minutes(l.late_s)} 分`)),
    el("td", { class: "num" }, l.record_status ? `${l.expected}/${l.attended}` : "—"),
    el("td", { class: "num" }, l.visits || ""),
    el("td", { class: "actions" }, el("a", { class: "btn", href: `/records/lesson.html?id=${l.id}` }, "教学记录")));
}

async function loadLessons(reset) {
  const tbody = document.querySelector("#lesson-table tbody");
  if (reset) { state.lessonsShown = 0; fill(tbody); }
  const page = await api("/reports/lessons", { query: { ...state.filter, outcome: document.getElementById("outcome").value,
    offset: state.lessonsShown, limit: PAGE } });
  state.lessonsShown += page.data.length;
  tbody.append(...page.data.map(lessonRow));
  if (!page.count) fill(tbody, el("tr", {}, el("td", { colspan: 11, class: "empty" }, "没有课次")));
  document.getElementById("lessons-note").textContent = `共 ${page.count} 节`;
  document.getElementById("more").hidden = state.lessonsShown >= page.count;
}

async function loadBreakdown() {
  renderUnits(await api("/reports/breakdown", { query: { ...state.filter, by: state.dim } }));
}

// days: "the last N days" (近 7 天 / 近 30 天) as the server counts them (?days=N: today by the server's
// clock and the N-1 days before); the form then shows the dates it used, and every other request uses them.
async function refresh(days) {
  const query = currentFilter();
  if (days) {
    delete query.date_from;
    delete query.date_to;
    query.days = days;
  }
  document.body.dataset.loading = "1";
  try {
    const s = await api("/reports/summary", { query });
    form.date_from.value = s.filter.date_from;
    form.date_to.value = s.filter.date_to;
    state.filter = currentFilter();
    const url = new URL(location.href);
    url.search = new URLSearchParams({ ...state.filter, by: state.dim }).toString();
    history.replaceState(null, "", url);
    const p = await api("/reports/patrol", { query: state.filter });
    renderKpis(s, p);
    renderTrend(s);
    renderKinds(s);
    renderPatrol(p);
    await Promise.all([loadBreakdown(), loadLessons(true)]);
    document.body.dataset.loaded = "1";
  } catch (err) {
    showError(err);
  } finally {
    delete document.body.dataset.loading;
  }
}

function mountExports() {
  for (const box of document.querySelectorAll(".exports")) {
    const report = box.dataset.report;
    const label = box.dataset.label || "导出";
    const path = "/reports/" + report;
    for (const fmt of ["csv", "xlsx"]) {
      box.append(el("button", { class: "btn", type: "button", dataset: { format: fmt },
        onclick: async () => {
          const extra = report === "breakdown" ? { by: state.dim } : {};
          try { await download(path, { ...state.filter, ...extra }, fmt); } catch (err) { showError(err); }
        } }, `${label} ${fmt.toUpperCase()}`));
    }
  }
}

function mountDims() {
  const tabs = document.getElementById("dims");
  fill(tabs, DIMS.map(([key, label]) => el("button", { type: "button", class: "tab" + (key === state.dim ? " active" : ""),
    role: "tab", dataset: { dim: key },
    "aria-selected": key === state.dim ? "true" : "false",
    onclick: async () => {
      state.dim = key;
      for (const b of tabs.children) {
        b.setAttribute("aria-selected", b.dataset.dim === key ? "true" : "false");
        b.classList.toggle("active", b.dataset.dim === key);
      }
      try { await loadBreakdown(); } catch (err) { showError(err); }
    } }, label)));
}

async function main(user) {
  mountHeader(user, { title: "教学统计" });
  const params = new URLSearchParams(location.search);
  state.dim = params.get("by") || (user.role === "teacher" ? "subject"
    : (user.school_id ? "teacher" : (user.role === "researcher" ? "school" : "region")));
  for (const k of ["date_from", "date_to"]) if (params.get(k)) form[k].value = params.get(k);
  mountDims();
  mountExports();
  try { await loadScopes(user); } catch (err) { showError(err); }
  for (const k of ["region_id", "school_id", "kind"]) if (params.get(k)) form[k].value = params.get(k);
  form.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  for (const b of form.querySelectorAll("[data-days]")) b.addEventListener("click", () => refresh(Number(b.dataset.days)));
  document.getElementById("outcome").addEventListener("change", () => loadLessons(true).catch(showError));
  document.getElementById("more").addEventListener("click", () => loadLessons(false).catch(showError));
  await refresh(params.get("date_from") && params.get("date_to") ? undefined : DEFAULT_DAYS);
}

const user = requireLogin(["admin", "researcher", "teacher"]);
if (user) main(user);
