// The evaluation panel (评课) shared by the patrol full view (mode "live") and the replay player
// (mode "replay"): rubric scores with the server's total, comment, timestamped notes.
//
// It works on the panel's markup by id (#rubric-select, #rubric-items, #total-score, #eval-comment,
// #btn-save, #eval-saved, #note-input, #btn-note, #note-list); each page carries that markup.
import { api, el, fill, showError, toast } from "/assets/api.js";

const $ = (id) => document.getElementById(id);

/** "mm:ss" or "h:mm:ss". */
export function mmss(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${two(m)}:${two(r)}`;
}

export class EvaluationPanel {
  /**
   * @param {{mode: "live"|"replay", offset?: () => number|null, onRender?: (panel) => void}} opts
   *   offset: seconds into the lesson a new note is at (null: the server takes now − the lesson's start);
   *   onRender: called after the evaluation is drawn (the patrol page draws its snapshots then).
   */
  constructor({ mode, offset = () => null, onRender = null }) {
    this.mode = mode;
    this.offset = offset;
    this.onRender = onRender;
    this.lessonId = null;
    this.rubrics = [];
    this.evaluation = null;
    const guarded = (fn) => async () => { if (this.lessonId === null) return; try { await fn(); } catch (e) { showError(e); } };
    $("rubric-select").addEventListener("change", () => this.renderItems());
    $("btn-save").addEventListener("click", guarded(() => this.save()));
    $("btn-note").addEventListener("click", guarded(() => this.addNote()));
    $("note-input").addEventListener("keydown", (e) => { if (e.key === "Enter") guarded(() => this.addNote())(); });
  }

  /** Load the lesson's rubrics and the caller's evaluation of it (null before the first save). */
  async open(lessonId) {
    this.lessonId = lessonId;
    try {
      this.rubrics = await api(`/patrol/lessons/${lessonId}/rubrics`);
    } catch (e) { this.rubrics = []; showError(e); }
    try {
      this.evaluation = await api(`/patrol/lessons/${lessonId}/evaluation`);
    } catch (e) { this.evaluation = null; showError(e); }
    if (this.lessonId !== lessonId) return;
    this.render();
  }

  close() {
    this.lessonId = null;
    this.evaluation = null;
    this.rubrics = [];
  }

  currentRubric() {
    const id = Number($("rubric-select").value);
    return this.rubrics.find((r) => r.id === id) || null;
  }

  render() {
    const ev = this.evaluation;
    const select = $("rubric-select");
    fill(select, el("option", { value: "" }, this.rubrics.length ? "请选择量表" : "本区域暂无评课量表"),
      this.rubrics.map((r) => el("option", { value: String(r.id), selected: ev && ev.template_id === r.id }, `${r.name}（${r.region_name}）`)));
    if (!ev && this.rubrics.length === 1) select.value = String(this.rubrics[0].id);
    this.renderItems();
    $("eval-comment").value = ev ? ev.comment : "";
    $("eval-saved").textContent = ev ? `已保存 · ${ev.updated_at.replace("T", " ").slice(0, 16)}` : "尚未评价";
    this.renderNotes();
    if (this.onRender) this.onRender(this);
  }

  renderItems() {
    const rubric = this.currentRubric();
    const ev = this.evaluation;
    const scores = (ev && ev.template_id === (rubric && rubric.id)) ? ev.scores : {};
    const box = $("rubric-items");
    if (!rubric) { fill(box, el("p", { class: "muted small" }, "选择量表后逐项打分")); this.updateTotal(); return; }
    fill(box, rubric.items.map((item) => el("label", { class: "rubric-item", title: item.description || "" },
      el("span", { class: "item-name" }, item.name, el("small", { class: "muted" }, ` 满分 ${item.max_score} · 权重 ${item.weight}`)),
      el("input", { type: "number", min: 0, max: item.max_score, step: 0.5, inputmode: "decimal",
        dataset: { item: String(item.id) }, value: scores[String(item.id)] ?? "", oninput: () => this.updateTotal() }))));
    this.updateTotal();
  }

  /** The same total as the server: 100 · Σ wᵢ·sᵢ/maxᵢ / Σ wᵢ, once every item has a score. */
  readScores() {
    const rubric = this.currentRubric();
    const scores = {};
    let complete = !!rubric;
    for (const input of document.querySelectorAll("#rubric-items input[data-item]")) {
      if (input.value === "") { complete = false; continue; }
      scores[input.dataset.item] = Number(input.value);
    }
    let total = null;
    if (rubric && complete) {
      const weights = rubric.items.reduce((a, i) => a + i.weight, 0);
      total = Math.round(rubric.items.reduce((a, i) => a + (i.weight * scores[String(i.id)]) / i.max_score, 0) / weights * 1000) / 10;
    }
    return { rubric, scores, total };
  }

  updateTotal() {
    const { total } = this.readScores();
    $("total-score").textContent = total === null ? "—" : String(total);
  }

  async save() {
    const { rubric, scores } = this.readScores();
    this.evaluation = await api(`/patrol/lessons/${this.lessonId}/evaluation`, { method: "PUT",
      body: { mode: this.mode, template_id: rubric ? rubric.id : null, scores: rubric ? scores : {}, comment: $("eval-comment").value } });
    this.render();
    toast("评课已保存", "ok");
  }

  /** The evaluation, created (empty, in this panel's mode) when there is none yet. */
  async ensure() {
    if (!this.evaluation) {
      this.evaluation = await api(`/patrol/lessons/${this.lessonId}/evaluation`, { method: "PUT", body: { mode: this.mode } });
    }
    return this.evaluation;
  }

  renderNotes() {
    const notes = (this.evaluation && this.evaluation.notes) || [];
    fill($("note-list"), notes.length ? notes.slice().reverse().map((n) => el("li", { dataset: { offset: String(n.lesson_offset_seconds ?? "") } },
      el("span", { class: "note-time", title: n.at.slice(0, 19).replace("T", " ") }, n.lesson_offset_seconds != null ? mmss(n.lesson_offset_seconds) : n.at.slice(11, 16)),
      el("span", {}, n.text))) : el("li", { class: "muted small" }, "尚无记录"));
  }

  async addNote() {
    const input = $("note-input");
    const text = input.value.trim();
    if (!text) return;
    const offset = this.offset();
    const ev = await this.ensure();
    const body = { text };
    if (offset !== null && offset !== undefined) body.lesson_offset_seconds = Math.max(0, Math.floor(offset));
    await api(`/patrol/evaluations/${ev.id}/notes`, { method: "POST", body });
    input.value = "";
    this.evaluation = await api(`/patrol/evaluations/${ev.id}`);
    this.renderNotes();
  }
}
