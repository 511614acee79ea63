// 教师发展档案: one teacher's lessons by kind, S-T profile (a point per lesson on the Rt–Ch plane), evaluations with
// the teacher's replies, quizzes and recordings over a term or dates (GET /teachers/{id}/development-record).
// ?id= the teacher (default: the signed-in teacher), ?term_id= or ?date_from=&date_to= (default: the current term).
import { api, requireLogin, mountHeader, showError, el, fill, fmtDate, fmtDateTime, KIND_LABEL } from "/assets/api.js";
import { pct, download, chartIn, COLORS } from "/records/common.js";

const TYPE_LABEL = { practice: "练习型", lecture: "讲授型", dialogue: "对话型", mixed: "混合型" };
const TYPE_COLOR = { practice: COLORS[1], lecture: COLORS[0], dialogue: COLORS[3], mixed: COLORS[2] };
const params = new URLSearchParams(location.search);

function fact(label, value, key) {
  return [el("dt", {}, label), el("dd", { dataset: { fact: key } }, value)];
}

function rangeQuery() {
  const q = {};
  for (const k of ["term_id", "date_from", "date_to"]) if (params.get(k)) q[k] = params.get(k);
  if (q.date_from && q.date_to) delete q.term_id; else { delete q.date_from; delete q.date_to; }
  return q;
}

function renderHeader(rec) {
  document.getElementById("title").textContent = `${rec.teacher_name} · 教师发展档案`;
  const span = `${fmtDate(rec.date_from, { year: true })} 至 ${fmtDate(rec.date_to, { year: true })}`;
  document.getElementById("subtitle").textContent =
    `${rec.school_name || ""}${rec.school_name ? " · " : ""}${rec.term_name ? `${rec.term_name}（${span}）` : span}`;
  const total = rec.by_kind[rec.by_kind.length - 1].tally;
  const num = (v, digits) => (v === null || v === undefined ? "—" : v.toFixed(digits));
  fill(document.getElementById("facts"),
    fact("应开课", `${total.due} 节`, "due"),
    fact("已开课", `${total.held + total.partly_held} 节`, "took_place"),
    fact("开课率", pct(total.held_rate), "held_rate"),
    fact("准时率", pct(total.on_time_rate), "on_time_rate"),
    fact("平均 Rt / Ch", `${num(rec.st.avg_rt, 2)} / ${num(rec.st.avg_ch, 2)}`, "st"),
    fact("收到评课", `${rec.evaluations.length} 份，平均 ${num(rec.average_score, 1)} 分`, "evaluations"),
    fact("随堂测", `${rec.quizzes} 题`, "quizzes"),
    fact("录播", `${rec.recordings} 节`, "recordings"));
}

function renderKinds(rec) {
  fill(document.querySelector("#kind-table tbody"), rec.by_kind.map((k) => {
    const t = k.tally;
    return el("tr", { dataset: { kind: k.kind }, class: k.kind === "total" ? "total" : null },
      el("td", {}, k.kind === "total" ? el("strong", {}, k.name) : k.name),
      el("td", { class: "num" }, t.scheduled), el("td", { class: "num" }, t.due), el("td", { class: "num" }, t.held),
      el("td", { class: "num" }, t.partly_held), el("td", { class: "num" }, t.missed), el("td", { class: "num" }, t.cancelled),
      el("td", { class: "num" }, pct(t.held_rate)), el("td", { class: "num" }, t.on_time),
      el("td", { class: "num" }, pct(t.on_time_rate)), el("td", { class: "num" }, pct(t.attendance_rate)));
  }));
}

/** The Rt–Ch diagram as the S-T literature draws it: Rt across, Ch up, both 0..1, the four regions marked. */
function renderSt(st) {
  document.getElementById("st-note").textContent = `${st.lessons} 节课测得发言`;
  fill(document.getElementById("st-types"), Object.entries(TYPE_LABEL).map(([k, label]) =>
    fact(label, `${st.types[k] || 0} 节`, `type-${k}`)));
  const region = (name, x0, x1, y0, y1) => [{ name, xAxis: x0, yAxis: y0 }, { xAxis: x1, yAxis: y1 }];
  const series = Object.keys(TYPE_LABEL).map((k, i) => ({
    name: TYPE_LABEL[k], type: "scatter", symbolSize: 12, itemStyle: { color: TYPE_COLOR[k] },
    data: st.points.filter((p) => p.lesson_type === k).map((p) => ({ value: [p.rt, p.ch], lesson: p })),
    ...(i === 0 ? {
      markArea: { silent: true, label: { color: "#667", fontSize: 13, position: "insideTop" }, itemStyle: { opacity: 0.08 }, data: [
        region("练习型", 0, 0.3, 0, 1), region("讲授型", 0.7, 1, 0, 1),
        region("对话型", 0.3, 0.7, 0.4, 1), region("混合型", 0.3, 0.7, 0, 0.4)] },
      markLine: { silent: true, symbol: "none", lineStyle: { color: "#99a", type: "dashed" }, label: { show: false }, data: [
        { xAxis: 0.3 }, { xAxis: 0.7 }, [{ coord: [0.3, 0.4] }, { coord: [0.7, 0.4] }]] },
    } : {}),
  }));
  chartIn(document.getElementById("st-chart")).setOption({
    animation: false,
    legend: { top: 0 },
    tooltip: { trigger: "item", formatter: (p) => (p.data && p.data.lesson
      ? `${fmtDate(p.data.lesson.day)} ${p.data.lesson.title}<br>Rt ${p.data.lesson.rt.toFixed(2)}，Ch ${p.data.lesson.ch.toFixed(2)}（${p.data.lesson.lesson_type_label || "—"}）`
      : "") },
    grid: { left: 56, right: 24, top: 40, bottom: 44 },
    xAxis: { type: "value", name: "Rt", nameLocation: "middle", nameGap: 26, min: 0, max: 1 },
    yAxis: { type: "value", name: "Ch", min: 0, max: 1 },
    series,
  }, true);
  const chart = chartIn(document.getElementById("st-chart"));
  chart.off("click");
  chart.on("click", (p) => { if (p.data && p.data.lesson) location.href = `/records/lesson.html?id=${p.data.lesson.instance_id}`; });
  document.getElementById("st-chart").dataset.points = String(st.points.length);
}

function renderEvaluations(rec) {
  document.getElementById("eval-note").textContent =
    `${rec.evaluations.length} 份${rec.average_score === null ? "" : `，平均 ${rec.average_score.toFixed(1)} 分`}`;
  const box = document.getElementById("evaluations");
  if (!rec.evaluations.length) { fill(box, el("p", { class: "muted" }, "这段时间没有收到评课。")); return; }
  fill(box, rec.evaluations.map((e) => el("div", { class: "eval", dataset: { evaluation: String(e.id) } },
    el("div", { class: "row" }, el("strong", {}, e.evaluator),
      el("span", { class: "muted" }, e.mode === "replay" ? "看录像评课" : "巡课评课"),
      el("a", { href: `/records/lesson.html?id=${e.instance_id}` }, `${fmtDate(e.day)} ${e.title}`),
      el("span", { class: "spacer" }),
      el("span", { class: "badge badge-ok" }, e.total_score === null ? "未完成评分" : `总分 ${e.total_score.toFixed(1)}`)),
    e.comment ? el("p", {}, e.comment) : null,
    el("div", { class: "replies small" }, e.replies.map((r) => el("p", { class: "reply" },
      el("span", { class: "muted" }, `${r.author}回复（${fmtDateTime(r.created_at)}）：`), r.text))))));
}

const RESEARCH_KIND = { same_topic: "同课异构", observation: "观课研讨" };
const RESEARCH_PART = { organizer: "组织", teacher: "授课", participant: "参与" };

/** 网络教研: activities led, taught in and attended, each linking to the activity. */
function renderResearch(research) {
  fill(document.getElementById("research-facts"),
    fact("组织教研", `${research.led} 次`, "research-led"),
    fact("执教课例", `${research.taught} 次`, "research-taught"),
    fact("参与研讨", `${research.attended} 次`, "research-attended"));
  document.getElementById("research-note").textContent = `共 ${research.activities.length} 项活动`;
  fill(document.getElementById("research"), research.activities.length ? research.activities.map((a) =>
    el("li", { dataset: { activity: String(a.id) } },
      el("span", { class: "nowrap" }, fmtDate(a.created_at)), el("strong", {}, a.title),
      el("span", { class: "muted small" }, `${RESEARCH_KIND[a.kind] || a.kind} · ${RESEARCH_PART[a.part] || a.part} · ${a.status === "open" ? "进行中" : "已结束"}`),
      el("span", { class: "spacer" }),
      el("a", { class: "btn", href: `/research/?id=${encodeURIComponent(a.id)}` }, "查看活动")))
    : el("li", { class: "muted small" }, "这段时间没有参加网络教研活动"));
}

function renderRecordings(rec) {
  const shown = rec.latest_recordings.length;
  document.getElementById("rec-note").textContent = rec.recordings > shown ? `共 ${rec.recordings} 节，显示最近 ${shown} 节`
    : `共 ${rec.recordings} 节`;
  fill(document.getElementById("recordings"), shown ? rec.latest_recordings.map((r) => el("li", { dataset: { recording: String(r.recording_id) } },
    el("span", { class: "nowrap" }, fmtDate(r.day)), el("strong", {}, r.title),
    el("span", { class: "muted small" }, `${KIND_LABEL[r.kind] || r.kind} · ${r.subject}`), el("span", { class: "spacer" }),
    el("a", { class: "btn", href: `/replay/?id=${encodeURIComponent(r.recording_id)}` }, "观看录像")))
    : el("li", { class: "muted small" }, "这段时间没有录播"));
}

async function fillRange(rec) {
  const form = document.getElementById("range");
  const terms = await api("/terms");
  fill(form.elements.term_id, el("option", { value: "" }, "按日期"), terms.data.map((t) =>
    el("option", { value: String(t.id) }, t.name)));
  form.elements.term_id.value = rec.term_id === null ? "" : String(rec.term_id);
  form.elements.date_from.value = rec.date_from;
  form.elements.date_to.value = rec.date_to;
  form.elements.term_id.addEventListener("change", () => form.requestSubmit());
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams({ id: params.get("id") || "" });
    if (form.elements.term_id.value && !(form.elements.date_from.value !== rec.date_from || form.elements.date_to.value !== rec.date_to)) {
      next.set("term_id", form.elements.term_id.value);
    } else {
      next.set("date_from", form.elements.date_from.value);
      next.set("date_to", form.elements.date_to.value);
    }
    location.search = next.toString();
  });
}

async function main(user) {
  mountHeader(user, { title: "教师发展档案" });
  if (!params.get("id")) params.set("id", String(user.id));
  const path = `/teachers/${encodeURIComponent(params.get("id"))}/development-record`;
  try {
    const rec = await api(path, { query: rangeQuery() });
    renderHeader(rec);
    renderKinds(rec);
    renderSt(rec.st);
    renderEvaluations(rec);
    renderRecordings(rec);
    renderResearch(rec.research);
    const range = rec.term_id === null ? { date_from: rec.date_from, date_to: rec.date_to } : { term_id: rec.term_id };
    document.getElementById("btn-csv").addEventListener("click", () => download(path, range, "csv").catch(showError));
    await fillRange(rec).catch(showError); // the record stands without the term list
    document.body.dataset.loaded = "1";
  } catch (err) {
    showError(err);
    document.getElementById("title").textContent = err.message || "无法加载教师发展档案";
  }
}

const user = requireLogin(["admin", "researcher", "teacher"]);
if (user) main(user);
