// 随堂测 on the lesson pages: the teacher's panel (main.js: prepared questions, a question typed live,
// the live results per classroom and student, 结束作答) and the answering panel of a receiving
// classroom or a home student (listener.js).  The server keeps the quiz (docs/protocol.md, flow 10):
// a page shows what the last `quiz` / `quiz_results` said, so a reloaded page shows it again.
import { api, el, fill } from "/assets/api.js";

export const KIND_ZH = { single: "单选题", multiple: "多选题", true_false: "判断题" };
const letter = (i) => String.fromCharCode(65 + i);
const letters = (choices) => (choices || []).slice().sort((a, b) => a - b).map(letter).join("");
const pct = (x) => `${Math.round(x * 100)}%`;

/** The main classroom's panel: push a prepared or a new question, watch the results, close it. */
export function quizTeacherPanel(lc, lessonId) {
  const status = el("p", { class: "muted small quiz-note" }, "");
  const results = el("div", { id: "quiz-results", class: "quiz-results", hidden: true });
  const prepared = el("ul", { id: "quiz-prepared", class: "quiz-prepared" });
  const preparedBox = el("div", { class: "quiz-prepared-box", hidden: true }, el("h4", {}, "课前准备的题目"), prepared);
  const kind = el("select", { id: "quiz-kind", "aria-label": "题型" },
    ...Object.entries(KIND_ZH).map(([v, t]) => el("option", { value: v }, t)));
  const text = el("textarea", { id: "quiz-text", rows: 2, maxlength: 500, placeholder: "题目", "aria-label": "题目" });
  const options = el("textarea", { id: "quiz-options", rows: 4, placeholder: "每行一个选项（2 到 8 个）", "aria-label": "选项" });
  const correctBox = el("div", { id: "quiz-correct", class: "quiz-correct" });
  const pushBtn = el("button", { id: "quiz-push", class: "btn btn-primary", type: "button", onclick: () => pushNew() }, "推送题目");
  const form = el("div", { class: "quiz-form" }, el("div", { class: "field" }, kind), text, options,
    el("div", { class: "muted small" }, "正确答案（不选为投票）"), correctBox, pushBtn);
  let open = null; // the open question's id

  const optionTexts = () => (kind.value === "true_false" ? ["正确", "错误"]
    : options.value.split("\n").map((s) => s.trim()).filter(Boolean));
  const renderCorrect = () => {
    options.hidden = kind.value === "true_false";
    const picked = new Set([...correctBox.querySelectorAll("input:checked")].map((i) => Number(i.value)));
    fill(correctBox, ...optionTexts().map((t, i) => el("label", { class: "quiz-check" },
      el("input", { type: kind.value === "multiple" ? "checkbox" : "radio", name: "quiz-correct", value: String(i), checked: picked.has(i) }),
      ` ${letter(i)}`)));
  };
  kind.addEventListener("change", renderCorrect);
  options.addEventListener("input", renderCorrect);
  renderCorrect();

  const start = async (msg) => {
    pushBtn.disabled = true;
    try {
      await lc.request({ type: "quiz_start", ...msg });
      status.textContent = "";
      return true;
    } catch (e) {
      status.textContent = `推送失败：${e.message}`;
      return false;
    } finally {
      pushBtn.disabled = false;
    }
  };
  const pushNew = async () => {
    const question = { kind: kind.value, text: text.value, options: optionTexts(),
      correct: [...correctBox.querySelectorAll("input:checked")].map((i) => Number(i.value)) };
    if (await start({ question })) { text.value = ""; options.value = ""; renderCorrect(); }
  };
  const loadPrepared = async () => {
    let list = [];
    try { list = (await api(`/lessons/${lessonId}/quiz-questions`)).data; } catch (e) { list = []; }
    const waiting = list.filter((q) => !q.opened_at);
    preparedBox.hidden = !waiting.length || open != null;
    fill(prepared, ...waiting.map((q) => el("li", {},
      el("span", {}, `${KIND_ZH[q.kind]}：${q.text}`), " ",
      el("button", { class: "btn btn-sm", type: "button", onclick: async () => { if (await start({ question_id: q.id })) loadPrepared(); } }, "推送"))));
  };

  const closeBtn = el("button", { id: "quiz-close", class: "btn btn-danger", type: "button", onclick: async () => {
    if (open == null) return;
    closeBtn.disabled = true;
    try { await lc.request({ type: "quiz_close", question_id: open }); } catch (e) { status.textContent = `结束失败：${e.message}`; }
    finally { closeBtn.disabled = false; }
  } }, "结束作答");

  lc.on("message", (m) => {
    if (m.type !== "quiz_results") return;
    const q = m.question;
    open = q.open ? q.question_id : null;
    showQuizResults(results, m, q.open ? closeBtn : "");
    results.hidden = false;
    form.hidden = q.open; // one question at a time: the next is pushed after 结束作答
    preparedBox.hidden = q.open || !prepared.children.length;
  });
  loadPrepared();
  return el("section", { id: "quiz-panel", class: "card quiz" }, el("h3", {}, "随堂测"), results, form, preparedBox,
    status);
}

/** A `quiz_results` message drawn into `node`: the question, counts per option (the right ones marked),
 * who answered what; `extra` (the teacher's 结束作答) below while it is open. */
export function showQuizResults(node, m, extra = "") {
  const q = m.question;
  const correct = new Set(q.correct || []);
  const rows = q.options.map((o, i) => el("li", { class: correct.has(i) ? "quiz-right" : "" },
    el("b", {}, `${letter(i)}. `), o, " ", el("span", { class: "quiz-count", dataset: { option: String(i) } }, `${m.counts[i]} 人`),
    correct.has(i) ? el("small", { class: "muted" }, "（正确答案）") : ""));
  const share = m.correct_share == null ? (q.correct && q.correct.length ? "正确率 —" : "投票") : `正确率 ${pct(m.correct_share)}`;
  const answers = m.answers.map((a) => el("tr", { class: "quiz-answer-row" },
    el("td", {}, a.name), el("td", {}, a.role === "receiving" ? "接收课堂" : "学生"), el("td", {}, letters(a.choices)),
    el("td", {}, a.right == null ? "" : a.right ? "正确" : "错误")));
  fill(node,
    el("p", { class: "quiz-question" }, el("span", { class: "badge" }, KIND_ZH[q.kind]), " ", q.text),
    el("ol", { class: "quiz-counts" }, ...rows),
    el("p", { id: "quiz-summary" }, `${q.open ? "作答中" : "已结束"} · 已作答 ${m.answered} · ${share}`),
    answers.length ? el("table", { class: "table quiz-answers" },
      el("thead", {}, el("tr", {}, el("th", {}, "作答方"), el("th", {}, "身份"), el("th", {}, "答案"), el("th", {}, "结果"))),
      el("tbody", {}, ...answers)) : el("p", { class: "muted small" }, "等待作答…"),
    extra);
}

/** The answering panel of a receiving classroom or a home student. */
export function quizAnswerPanel(lc) {
  const panel = el("section", { id: "quiz-answer", class: "card quiz", hidden: true });
  const note = el("p", { class: "quiz-note muted small" }, "");
  let question = null;
  let mine = null;
  let picking = new Set();

  const send = async (choices) => {
    note.textContent = "正在提交…";
    try {
      await lc.request({ type: "quiz_answer", question_id: question.question_id, choices });
    } catch (e) {
      note.textContent = `提交失败：${e.message}`;
    }
  };
  const render = () => {
    const q = question;
    const multiple = q.kind === "multiple";
    const correct = new Set(q.correct || []);
    const chosen = new Set(mine || []);
    const buttons = q.options.map((o, i) => {
      const cls = ["btn", "btn-lg", "quiz-option"];
      if (chosen.has(i) || (multiple && picking.has(i))) cls.push("btn-primary");
      if (!q.open && correct.has(i)) cls.push("quiz-right");
      return el("button", { class: cls.join(" "), type: "button", disabled: !q.open, dataset: { index: String(i) },
        onclick: () => {
          if (!multiple) { send([i]); return; }
          picking.has(i) ? picking.delete(i) : picking.add(i);
          render();
        } }, `${letter(i)}. ${o}`);
    });
    const submit = multiple && q.open ? el("button", { class: "btn btn-lg", type: "button", id: "quiz-submit",
      onclick: () => { if (picking.size) send([...picking].sort((a, b) => a - b)); } }, "提交答案") : "";
    let said;
    if (q.open) said = mine ? `已作答：${letters(mine)}（结束前可修改）` : "请作答";
    else said = `已结束${mine ? `，我的答案：${letters(mine)}` : "，未作答"}${q.correct && q.correct.length ? `，正确答案：${letters(q.correct)}` : ""}`;
    note.textContent = "";
    fill(panel, el("h3", {}, "随堂测 ", el("span", { class: "badge" }, KIND_ZH[q.kind])),
      el("p", { class: "quiz-question" }, q.text), el("div", { class: "quiz-options" }, ...buttons), submit,
      el("p", { id: "quiz-mine", class: "quiz-mine" }, said), note);
    panel.hidden = false;
  };
  lc.on("message", (m) => {
    if (m.type !== "quiz") return;
    if (!question || question.question_id !== m.question.question_id) picking = new Set(m.my_choices || []);
    question = m.question;
    mine = m.my_choices;
    render();
  });
  return panel;
}
