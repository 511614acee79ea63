// Shared pieces of the admin / timetable pages: tables, form dialogs, cached look-ups,
// and conflict sentences. Built on /assets/api.js.
import { api, el, fill, openDialog, ApiError, showError, fmtDateTime } from "/assets/api.js";

export const SCHOOL_KIND = { urban: "城区", rural: "乡村" };
export const DAY_KIND = { holiday: "节假日", makeup: "调休补课日" };
export const RECEIVER_MODE = { interactive: "互动", listen_only: "只听" };
export const WEEK_PATTERN = { every: "每周", odd: "单周", even: "双周" };
export const DEMAND_STATUS = { open: "待响应", matched: "已对接", closed: "已关闭" };
export const OFFER_STATUS = { offered: "待确认", accepted: "已接受", declined: "已婉拒" };
export const RESOURCE_LABEL = { teacher: "教师", classroom: "教室" };
export const ISO_WEEKDAY = { 1: "周一", 2: "周二", 3: "周三", 4: "周四", 5: "周五", 6: "周六", 7: "周日" };

/** Every page of a listing endpoint (`{data, count}`), up to `max` rows. */
export async function fetchAll(path, query = {}, { pageSize = 200, max = 2000 } = {}) {
  const out = [];
  for (let offset = 0; offset < max; offset += pageSize) {
    const page = await api(path, { query: { ...query, offset, limit: pageSize } });
    out.push(...page.data);
    if (out.length >= page.count || page.data.length < pageSize) break;
  }
  return out;
}

const cache = new Map();
/** A cached GET (per page load) — regions, schools, terms change rarely. */
export function cached(key, loader) {
  if (!cache.has(key)) cache.set(key, loader().catch((e) => { cache.delete(key); throw e; }));
  return cache.get(key);
}
export function forget(prefix) { for (const k of [...cache.keys()]) if (k.startsWith(prefix)) cache.delete(k); }

export const loadRegions = () => cached("regions", async () => (await api("/regions")).data);
export const loadSchools = () => cached("schools", () => fetchAll("/schools"));
export const loadTerms = () => cached("terms", async () => (await api("/terms")).data);
export const loadClassrooms = (schoolId) => cached("classrooms:" + (schoolId ?? "all"),
  () => fetchAll("/classrooms", schoolId ? { school_id: schoolId } : {}));
export const loadTeachers = (schoolId) => cached("teachers:" + (schoolId ?? "all"),
  () => fetchAll("/users", { role: "teacher", is_active: true, ...(schoolId ? { school_id: schoolId } : {}) }));

export function byId(rows) { return new Map(rows.map((r) => [r.id, r])); }

/**
 * A table. columns: [{label, value(row) → string|Node, class?}]; actions(row) → nodes for the last cell.
 */
export function table(columns, rows, { actions, empty = "暂无数据", rowAttrs } = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", {}, c.label)), actions ? el("th", {}, "") : null);
  const body = rows.length
    ? rows.map((r) => el("tr", rowAttrs ? rowAttrs(r) : {}, columns.map((c) => el("td", { class: c.class }, c.value(r))),
      actions ? el("td", { class: "actions" }, actions(r)) : null))
    : [el("tr", {}, el("td", { colspan: columns.length + (actions ? 1 : 0), class: "empty" }, empty))];
  return el("div", { class: "table-wrap" }, el("table", { class: "table" }, el("thead", {}, head), el("tbody", {}, body)));
}

/** A form field node. f: {name, label, type, options: [[value, label]], value, required, hint, step, min, max} */
export function field(f) {
  let input;
  const common = { name: f.name, id: "f-" + f.name, required: f.required || false };
  if (f.type === "select") {
    input = el("select", common, (f.options || []).map(([v, l]) =>
      el("option", { value: v ?? "", selected: String(v ?? "") === String(f.value ?? "") }, l)));
  } else if (f.type === "textarea") {
    input = el("textarea", common);
    input.value = f.value ?? "";
  } else if (f.type === "checkbox") {
    return el("label", { class: "check" }, el("input", { ...common, type: "checkbox", checked: !!f.value }), f.label);
  } else {
    input = el("input", { ...common, type: f.type || "text", value: f.value ?? "", step: f.step, min: f.min, max: f.max,
      placeholder: f.placeholder });
  }
  return el("label", { class: "field" + (f.wide ? " field-wide" : "") }, el("span", {}, f.label,
    f.required ? el("span", { class: "hint" }, " *") : null), input, f.hint ? el("span", { class: "hint" }, f.hint) : null);
}

/** Read a form's named controls: numbers for type=number, booleans for checkboxes, "" → null. */
export function readForm(form) {
  const out = {};
  for (const c of form.querySelectorAll("[name]")) {
    if (c.type === "checkbox") out[c.name] = c.checked;
    else if (c.type === "number") out[c.name] = c.value === "" ? null : Number(c.value);
    else out[c.name] = c.value === "" ? null : c.value;
  }
  return out;
}

/** An error box listing the server's message (and per-item details when the body has them). */
export function errorBox(err) {
  const items = [];
  if (err instanceof ApiError) {
    const groups = err.body.conflict_groups || [];
    if (groups.length) for (const g of groups) items.push(groupSentence(g));
    else for (const c of err.body.conflicts || []) items.push(conflictSentence(c));
    for (const e of err.body.errors || []) if (e.reason && e.loc) items.push(`${e.loc.slice(1).join(".")}：${e.reason}`);
  }
  return el("div", { class: "alert alert-error", role: "alert" }, el("strong", {}, err.message || String(err)),
    items.length ? el("ul", {}, items.map((t) => el("li", {}, t))) : null);
}

/**
 * A dialog with a form. submit(values) may throw; the server's message is shown inside the dialog,
 * which stays open. Resolves the value submit returned, or undefined if cancelled.
 */
export function formDialog({ title, fields, submit, okLabel = "保存", wide = false, extra }) {
  return new Promise((resolve) => {
    const msg = el("div", { class: "form-msg" });
    const form = el("form", { class: "form-grid", onsubmit: (e) => e.preventDefault() }, fields.map(field));
    let done = false;
    const { dialog } = openDialog({
      title, wide, body: [form, extra || null, msg],
      actions: [{ label: okLabel, kind: "primary", onClick: async () => {
        if (!form.reportValidity()) return false;
        fill(msg);
        try {
          const out = await submit(readForm(form), form);
          done = true; resolve(out); return true;
        } catch (err) { fill(msg, errorBox(err)); return false; }
      } }],
    });
    dialog.addEventListener("close", () => { if (!done) resolve(undefined); });
  });
}

/** A conflict from the API (`{resource, resource_name, day, start, end, lesson_title, message}`) as one sentence. */
export function conflictSentence(c) {
  if (c.message) return c.message;
  const who = `${RESOURCE_LABEL[c.resource] || "资源"}“${c.resource_name || "#" + c.resource_id}”`;
  const when = `${c.day || ""} ${(c.start || "").slice(-8, -3) || c.start || ""}–${(c.end || "").slice(-8, -3) || c.end || ""}`;
  return `${who}在 ${when.trim()} 已有课程${c.lesson_title ? "《" + c.lesson_title + "》" : ""}`;
}

/** A group of clashes with one weekly pattern (`conflict_groups[]`) as one sentence, its dates on demand. */
export function groupSentence(g) {
  return g.message;
}

/**
 * The conflicts of a check / a 409 as a list: one line per weekly pattern (`groups`, from `conflict_groups`),
 * its dates folded underneath; per-date sentences when there are no groups.
 */
export function conflictList(conflicts, { groups = [], limit = 50 } = {}) {
  if (groups.length) {
    return el("ul", { class: "conflicts" }, groups.slice(0, limit).map((g) => el("li", { dataset: { kind: g.kind } },
      groupSentence(g),
      g.count > 1 ? el("details", {}, el("summary", {}, `查看 ${g.count} 个日期`), g.dates.join("、")) : null)),
    groups.length > limit ? el("li", { class: "muted" }, `……另有 ${groups.length - limit} 组冲突`) : null);
  }
  const shown = conflicts.slice(0, limit);
  return el("ul", { class: "conflicts" }, shown.map((c) => el("li", {}, conflictSentence(c))),
    conflicts.length > limit ? el("li", { class: "muted" }, `……另有 ${conflicts.length - limit} 处冲突`) : null);
}

/** Options for a select, with an optional empty first entry. */
export function options(rows, label = (r) => r.name, { empty } = {}) {
  return [...(empty !== undefined ? [["", empty]] : []), ...rows.map((r) => [r.id, label(r)])];
}

/** Run an async page step and show any error as a toast. */
export async function guarded(fn) {
  try { return await fn(); } catch (err) { showError(err); return undefined; }
}

// ---------------------------------------------------------------- series

/** "每周二 第3节，第1–20周" / "单周周一 第1–2节，第2周至学期末" */
export function whenText(s) {
  const periods = s.period_from === s.period_to ? `第${s.period_from}节` : `第${s.period_from}–${s.period_to}节`;
  const weeks = s.week_to >= 60 ? `第${s.week_from}周至学期末` : `第${s.week_from}–${s.week_to}周`;
  const day = s.week_pattern === "every" ? `每${ISO_WEEKDAY[s.weekday]}` : `${WEEK_PATTERN[s.week_pattern]}${ISO_WEEKDAY[s.weekday]}`;
  return `${day} ${periods}，${weeks}`;
}

/** "原因" with who decided and when, for rejected and cancelled series. */
export function decisionText(s) {
  return [s.decision_reason || "—", el("br"), el("span", { class: "muted small" },
    [s.decided_by_name, s.decided_at ? fmtDateTime(s.decided_at) : ""].filter(Boolean).join(" · "))];
}

