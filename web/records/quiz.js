// The quick quiz (随堂测) of one lesson on its record page: each question asked, its counts per option,
// the right share and who answered what; exported as CSV (GET /records/lessons/{id}/quizzes[.csv]).
import { api, el, fill, fmtTime, showError } from "/assets/api.js";
import { pct, download } from "/records/common.js";

const KIND_ZH = { single: "单选题", multiple: "多选题", true_false: "判断题" };
const letter = (i) => String.fromCharCode(65 + i);
const letters = (choices) => (choices || []).slice().sort((a, b) => a - b).map(letter).join("");

function question(r, n) {
  const q = r.question;
  const right = new Set(q.correct);
  const share = q.correct.length ? `正确率 ${pct(r.correct_share)}` : "投票（无正确答案）";
  return el("article", { class: "quiz-record", dataset: { question: String(q.id) } },
    el("h3", {}, `第 ${n} 题 `, el("span", { class: "badge" }, KIND_ZH[q.kind] || q.kind), " ", q.text),
    el("p", { class: "muted small" }, `推送 ${fmtTime(q.opened_at)}`, q.closed_at ? ` · 结束 ${fmtTime(q.closed_at)}` : " · 作答中",
      ` · 已作答 ${r.answered} · ${share}`),
    el("ul", { class: "quiz-options-record" }, q.options.map((o, i) => el("li", {},
      `${letter(i)}. ${o}`, right.has(i) ? "（正确答案）" : "", ` — ${r.counts[i]} 人`))),
    r.answers.length ? el("table", { class: "table" },
      el("thead", {}, el("tr", {}, el("th", {}, "作答方"), el("th", {}, "身份"), el("th", {}, "答案"), el("th", {}, "结果"),
        el("th", {}, "作答时间"), el("th", { class: "num" }, "修改次数"))),
      el("tbody", {}, r.answers.map((a) => el("tr", { class: "quiz-answer-row" }, el("td", {}, a.name),
        el("td", {}, a.role === "receiving" ? "接收课堂" : "学生"), el("td", {}, letters(a.choices)),
        el("td", {}, a.right === null ? "—" : (a.right ? "正确" : "错误")), el("td", {}, fmtTime(a.answered_at)),
        el("td", { class: "num" }, String(a.changes))))))
      : el("p", { class: "muted" }, "无人作答"));
}

/** Fill the record page's 随堂测 card (shown only when the lesson had a question). */
export async function renderQuizzes(id) {
  const card = document.getElementById("quiz-card");
  const page = await api(`/records/lessons/${id}/quizzes`);
  if (!page.count) return;
  fill(document.getElementById("quiz-exports"), el("button", { class: "btn", type: "button", id: "quiz-csv",
    onclick: () => download(`/records/lessons/${id}/quizzes.csv`, {}, "csv").catch(showError) }, "导出随堂测 CSV"));
  fill(document.getElementById("quizzes"), page.data.map((r, i) => question(r, i + 1)));
  card.hidden = false;
}
