// Classroom insight (课堂分析) on a lesson's record page: the S-T analysis of the lesson — Rt, Ch, its type,
// the S-T curve as the literature draws it (every S sample a step right, every T sample a step up) — and how
// much each receiving classroom and home student spoke (GET /records/lessons/{id}?st_interval_s=N: 30 s as
// S-T analysis samples, 3 s for a fine timeline). Measured from each classroom microphone's audio levels;
// no audio is kept.
import { api, el, fill, showError } from "/assets/api.js";
import { chartIn, COLORS } from "/records/common.js";

const TYPE_HINT = { practice: "Rt ≤ 0.3", lecture: "Rt ≥ 0.7", dialogue: "Ch ≥ 0.4", mixed: "0.3 < Rt < 0.7，Ch < 0.4" };

/** The S-T curve: from (0, 0), each S sample one step along the S axis, each T sample one step up the T axis. */
export function stCurve(codes, interval) {
  const points = [[0, 0]];
  let s = 0;
  let t = 0;
  for (const c of codes) {
    if (c === "T") t += interval; else s += interval;
    points.push([s, t]);
  }
  return points;
}

function unitName(sp, attendance) {
  const a = attendance.find((x) => x.role === sp.role
    && (sp.role === "student" ? x.user_id === sp.user_id : x.classroom_id === sp.classroom_id));
  const name = sp.role === "student" ? (a && a.user_name) || `#${sp.user_id}` : (a && a.classroom_name) || `#${sp.classroom_id}`;
  return a && a.school_name ? `${a.school_name} ${name}` : name;
}

/** Draw `insight` (with `attendance` for the names) into `box`: facts, the S-T curve, the speakers. */
export function drawInsight(box, insight, attendance) {
  if (!insight || !insight.measured) {
    fill(box, el("p", { class: "muted" }, "这节课没有测得发言（各方浏览器未发送音量信息，或无人发言）。"));
    return;
  }
  const interval = insight.interval_s;
  const minutes = (s) => (s / 60).toFixed(1);
  fill(box,
    el("dl", { class: "facts insight-facts" },
      el("dt", {}, "教学模式"), el("dd", { dataset: { type: insight.lesson_type } },
        `${insight.lesson_type_zh}（${TYPE_HINT[insight.lesson_type]}）`),
      el("dt", {}, "教师占有率 Rt"), el("dd", { class: "insight-rt" }, insight.rt.toFixed(2)),
      el("dt", {}, "师生行为转换率 Ch"), el("dd", { class: "insight-ch" }, insight.ch.toFixed(2)),
      el("dt", {}, "采样"), el("dd", {}, `每 ${interval} 秒一次，共 ${insight.codes.length} 次（T ${[...insight.codes].filter((c) => c === "T").length}，S ${[...insight.codes].filter((c) => c === "S").length}）`),
      el("dt", {}, "主讲教室发言"), el("dd", {}, `${minutes(insight.teacher_s)} 分钟`)),
    el("div", { class: "chart-sm st-curve", style: "height:260px" }),
    el("table", { class: "table speakers" },
      el("thead", {}, el("tr", {}, ["参与方", "发言（分钟）", "发言次数", "上台次数", "举手次数"].map((h) => el("th", {}, h)))),
      el("tbody", {}, insight.speakers.length ? insight.speakers.map((sp) => el("tr", {
        dataset: { unit: sp.role === "student" ? `student:${sp.user_id}` : `receiving:${sp.classroom_id}` } },
      el("td", {}, `${sp.role === "student" ? "在家学生" : "接收教室"} · ${unitName(sp, attendance)}`),
      el("td", { class: "num" }, minutes(sp.spoken_s)), el("td", { class: "num" }, sp.turns),
      el("td", { class: "num" }, sp.stage_count), el("td", { class: "num" }, sp.hands)))
        : el("tr", {}, el("td", { colspan: 5, class: "empty" }, "没有接收教室或学生")))));
  const points = stCurve(insight.codes, interval / 60);
  const top = Math.max(1, ...points.map((p) => Math.max(p[0], p[1])));
  chartIn(box.querySelector(".st-curve")).setOption({
    animation: false,
    tooltip: { trigger: "item", formatter: (p) => `S ${p.value[0].toFixed(1)} 分钟，T ${p.value[1].toFixed(1)} 分钟` },
    grid: { left: 56, right: 24, top: 16, bottom: 40 },
    xAxis: { type: "value", name: "S（分钟）", nameLocation: "middle", nameGap: 26, min: 0, max: Math.ceil(top) },
    yAxis: { type: "value", name: "T（分钟）", min: 0, max: Math.ceil(top) },
    series: [{ name: "S-T 曲线", type: "line", step: false, showSymbol: false, data: points, itemStyle: { color: COLORS[0] } }],
  });
  box.dataset.codes = insight.codes;
}

/** The record page: the lesson's insight in #insight, the sampling chosen in #st-interval. */
export async function renderInsight(id, rec) {
  document.getElementById("insight-card").hidden = false;
  const box = document.getElementById("insight");
  drawInsight(box, rec.insight, rec.attendance);
  const select = document.getElementById("st-interval");
  select.addEventListener("change", async () => {
    try {
      const again = await api(`/records/lessons/${id}`, { query: { st_interval_s: select.value } });
      drawInsight(box, again.insight, again.attendance);
    } catch (err) { showError(err); }
  });
}
