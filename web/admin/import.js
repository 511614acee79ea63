// /admin/import.html — timetable import: dry run with errors per row (row, column, reason), then commit.
import { api, requireLogin, mountHeader, el, fill, toast, ApiError } from "/assets/api.js";
import { table, errorBox } from "/admin/common.js";

const COLUMNS = [
  ["课程名称", "title", true, "如：三年级数学"], ["类型", "kind", true, "专递课堂 / 名师课堂 / 名校网络课堂"],
  ["学科", "subject", true, ""], ["年级", "grade", true, ""], ["学期", "term", true, "学期名称"],
  ["主讲教室", "main_classroom", true, "教室名称，或“学校名/教室名”"], ["主讲教师", "main_teacher", true, "姓名或用户名"],
  ["星期", "weekday", true, "1–7 或 周一…周日"], ["节次", "periods", true, "如 3 或 3-4"],
  ["周次", "weeks", false, "如 1-18，默认整个学期"], ["单双周", "week_pattern", false, "每周 / 单周 / 双周"],
  ["接收教室", "receivers", false, "多个用顿号或分号分隔；可加“:听课”与“@助教用户名”"], ["录播", "recording", false, "是 / 否"],
  ["越过结对原因", "pairing_override_reason", false, ""], ["备注", "note", false, ""],
];

const $ = (id) => document.getElementById(id);
let checkedFile = null;

function showReport(report, { committed = false } = {}) {
  const summary = report.ok
    ? el("div", { class: "alert alert-ok", id: "report-ok" }, committed
      ? `导入成功：共 ${report.rows_total} 行，已排 ${report.created_series_ids.length} 门课程。`
      : `预检通过：共 ${report.rows_total} 行，全部可以导入。请点击“正式导入”。`)
    : el("div", { class: "alert alert-error", id: "report-errors" },
      `${committed ? "导入失败，未写入任何数据" : "预检未通过"}：共 ${report.rows_total} 行，${report.rows_ok} 行通过，${report.errors.length} 处错误。请改正后重新上传。`);
  fill($("report"), summary, report.errors.length ? table([
    { label: "行", value: (e) => `第 ${e.row} 行`, class: "nowrap" },
    { label: "列", value: (e) => e.column || "—", class: "nowrap" },
    { label: "原因", value: (e) => e.reason },
  ], report.errors, { rowAttrs: () => ({ class: "row-error" }) }) : null);
}

async function send(dryRun) {
  const file = $("file").files[0];
  if (!file) { toast("请先选择课表文件", "warn"); return; }
  const body = new FormData();
  body.append("file", file);
  $("dry-run").disabled = $("commit").disabled = true;
  fill($("report"), el("p", { class: "muted" }, dryRun ? "正在预检……" : "正在导入……"));
  try {
    const report = await api("/timetable/import", { method: "POST", body, query: { dry_run: dryRun } });
    showReport(report, { committed: !dryRun });
    checkedFile = dryRun && report.ok ? file : null;
  } catch (err) {
    checkedFile = null;
    if (err instanceof ApiError && err.body.report) showReport(err.body.report, { committed: !dryRun });
    else fill($("report"), errorBox(err));
  } finally {
    $("dry-run").disabled = false;
    $("commit").disabled = !checkedFile;
  }
}

const user = requireLogin(["admin"]);
if (user) {
  mountHeader(user, { title: "导入课表" });
  $("file").addEventListener("change", () => { checkedFile = null; $("commit").disabled = true; fill($("report")); });
  $("dry-run").addEventListener("click", () => send(true));
  $("commit").addEventListener("click", () => send(false));
  fill($("columns"), table([
    { label: "列名", value: (c) => c[0] + (c[2] ? " *" : "") }, { label: "英文列名", value: (c) => c[1] },
    { label: "填写", value: (c) => c[3] || "—" },
  ], COLUMNS));
  $("sample").addEventListener("click", async (e) => {
    e.preventDefault();
    // Built by the server from the caller's own schools, pairings and a free slot: it passes the dry run.
    try {
      const blob = await (await api("/timetable/import/sample.csv", { raw: true })).blob();
      const a = el("a", { href: URL.createObjectURL(blob), download: "课表示例.csv" });
      a.click();
    } catch (err) { fill($("report"), errorBox(err)); }
  });
}
