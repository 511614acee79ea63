// /admin/webhooks.html — Webhook subscriptions of the bureau's other systems and the delivery log
// (system admins only): register a receiver (its signing secret is shown once), disable it, send a
// test ping, read every delivery with its attempts, retry a failed one.
import { api, requireLogin, mountHeader, el, fill, toast, openDialog, fmtDateTime, adminScope } from "/assets/api.js";
import { table, formDialog, guarded } from "/admin/common.js";

const subsBox = document.getElementById("subscriptions");
const logBox = document.getElementById("deliveries");
const DELIVERY_STATUS = { pending: "等待重试", delivering: "发送中", delivered: "已送达", failed: "失败" };
const STATUS_BADGE = { pending: "badge-warn", delivering: "badge-warn", delivered: "badge-ok", failed: "badge-danger" };
const PAGE = 50;
let eventTypes = [];
let typeName = {};
const filter = { status: "", event_type: "", offset: 0 };

const badge = (status) => el("span", { class: "badge " + (STATUS_BADGE[status] || ""), dataset: { status } },
  DELIVERY_STATUS[status] || status);
const answerText = (d) => d.last_status_code ? `HTTP ${d.last_status_code}` : (d.last_error ? "无应答" : "—");

async function drawSubscriptions() {
  const subs = await api("/webhooks");
  fill(subsBox, el("div", { class: "panel-head" }, el("h2", {}, "Webhook 订阅"),
    el("button", { type: "button", class: "btn btn-primary", id: "new-subscription", onclick: () => guarded(create) }, "新建订阅")),
  el("p", { class: "muted small" }, "课堂开放、开始上课、课程结束、教学记录生成、录播就绪、评课提交时，三课向订阅的地址发送签名的 POST 请求；" +
    "接收方不可用时按退避间隔重试，不会丢失事件。验证签名的方法见运维文档“Webhooks”一节。"),
  table([
    { label: "名称", value: (s) => s.name },
    { label: "接收地址", value: (s) => el("code", {}, s.url) },
    { label: "订阅事件", value: (s) => eventTypes.filter((t) => s.event_types.includes(t.type)).map((t) => t.name).join("、") },
    { label: "状态", value: (s) => el("span", { class: "badge " + (s.active ? "badge-ok" : "") }, s.active ? "启用" : "已停用") },
    { label: "创建时间", value: (s) => fmtDateTime(s.created_at) },
  ], subs.data, {
    empty: "还没有订阅",
    rowAttrs: (s) => ({ dataset: { subscription: s.id } }),
    actions: (s) => [
      el("button", { type: "button", class: "btn", onclick: () => guarded(() => ping(s)) }, "发送测试"),
      el("button", { type: "button", class: "btn", onclick: () => guarded(() => toggle(s)) }, s.active ? "停用" : "启用"),
    ],
  }));
}

async function create() {
  const out = await formDialog({
    title: "新建 Webhook 订阅", okLabel: "创建",
    fields: [
      { name: "name", label: "名称", required: true, placeholder: "市教育局数据中心" },
      { name: "url", label: "接收地址", required: true, wide: true, placeholder: "https://data.example.edu.cn/sanke/hooks",
        hint: "http:// 或 https://；三课不跟随重定向" },
      ...eventTypes.map((t) => ({ name: "ev:" + t.type, label: `${t.name}（${t.type}）`, type: "checkbox", value: true })),
    ],
    submit: (v) => api("/webhooks", { method: "POST", body: {
      name: v.name, url: v.url, event_types: eventTypes.map((t) => t.type).filter((t) => v["ev:" + t]) } }),
  });
  if (!out) return;
  openDialog({
    title: "订阅已创建",
    body: [el("p", {}, `“${out.name}”的签名密钥如下，只显示这一次，请立即交给接收方保存：`),
      el("pre", { class: "secret" }, el("code", { id: "new-secret" }, out.secret)),
      el("p", { class: "muted small" }, "接收方用它验证请求头 SanKe-Signature（HMAC-SHA256，覆盖 SanKe-Timestamp、“.” 和请求体）。")],
    actions: [{ label: "我已保存", kind: "primary", onClick: () => true }],
  });
  toast("订阅已创建", "ok");
  await drawSubscriptions();
}

async function ping(s) {
  await api(`/webhooks/${s.id}/ping`, { method: "POST" });
  toast(`已向“${s.name}”发送测试事件`, "ok");
  filter.offset = 0;
  await drawLog();
}

async function toggle(s) {
  await api(`/webhooks/${s.id}`, { method: "PATCH", body: { active: !s.active } });
  toast(s.active ? "订阅已停用" : "订阅已启用", "ok");
  await drawSubscriptions();
}

async function drawLog() {
  const page = await api("/webhooks/deliveries", { query: {
    status: filter.status || undefined, event_type: filter.event_type || undefined, offset: filter.offset, limit: PAGE } });
  const statusSel = el("select", { id: "status-filter", "aria-label": "状态",
    onchange: (e) => { filter.status = e.target.value; filter.offset = 0; guarded(drawLog); } },
  [["", "全部"], ...Object.entries(DELIVERY_STATUS)].map(([v, l]) => el("option", { value: v, selected: v === filter.status }, l)));
  const typeSel = el("select", { id: "type-filter", "aria-label": "事件",
    onchange: (e) => { filter.event_type = e.target.value; filter.offset = 0; guarded(drawLog); } },
  [["", "全部"], ...eventTypes.map((t) => [t.type, t.name]), ["ping", "测试"]].map(([v, l]) =>
    el("option", { value: v, selected: v === filter.event_type }, l)));
  const last = filter.offset + page.data.length;
  fill(logBox, el("div", { class: "panel-head" }, el("h2", {}, "投递记录"),
    el("label", { class: "field" }, el("span", {}, "状态"), statusSel),
    el("label", { class: "field" }, el("span", {}, "事件"), typeSel),
    el("button", { type: "button", class: "btn", id: "refresh-log", onclick: () => guarded(drawLog) }, "刷新")),
  table([
    { label: "事件", value: (d) => typeName[d.event_type] || d.event_type },
    { label: "事件 ID", value: (d) => el("code", {}, d.event_id) },
    { label: "订阅", value: (d) => d.subscription_name },
    { label: "状态", value: (d) => badge(d.status) },
    { label: "尝试", value: (d) => `${d.attempts} 次` },
    { label: "最近应答", value: (d) => el("span", { title: d.last_error || "" }, answerText(d)) },
    { label: "下次尝试", value: (d) => d.next_attempt_at ? fmtDateTime(d.next_attempt_at) : "—" },
    { label: "送达时间", value: (d) => d.delivered_at ? fmtDateTime(d.delivered_at) : "—" },
  ], page.data, {
    empty: "没有投递记录",
    rowAttrs: (d) => ({ dataset: { delivery: d.id, status: d.status } }),
    actions: (d) => [
      el("button", { type: "button", class: "btn", onclick: () => guarded(() => detail(d.id)) }, "详情"),
      d.status === "failed" ? el("button", { type: "button", class: "btn", onclick: () => guarded(() => retry(d)) }, "重试") : null,
    ],
  }),
  el("div", { class: "panel-head" }, el("p", { class: "muted small" },
    page.count ? `第 ${filter.offset + 1}–${last} 条，共 ${page.count} 条` : ""),
  filter.offset > 0 ? el("button", { type: "button", class: "btn", onclick: () => { filter.offset = Math.max(0, filter.offset - PAGE); guarded(drawLog); } }, "上一页") : null,
  last < page.count ? el("button", { type: "button", class: "btn", onclick: () => { filter.offset += PAGE; guarded(drawLog); } }, "下一页") : null));
}

async function detail(id) {
  const d = await api(`/webhooks/deliveries/${id}`);
  openDialog({
    title: `投递 #${d.id}`, wide: true,
    body: [
      el("dl", { class: "kv" },
        el("dt", {}, "事件"), el("dd", {}, `${typeName[d.event_type] || d.event_type}（${d.event_id}）`),
        el("dt", {}, "订阅"), el("dd", {}, d.subscription_name),
        el("dt", {}, "状态"), el("dd", {}, badge(d.status)),
        el("dt", {}, "发生时间"), el("dd", {}, fmtDateTime(d.occurred_at))),
      table([
        { label: "开始", value: (a) => fmtDateTime(a.started_at) },
        { label: "节点", value: (a) => a.node },
        { label: "结果", value: (a) => a.ok ? "成功" : (a.finished_at ? "失败" : "中断") },
        { label: "应答", value: (a) => a.status_code ? `HTTP ${a.status_code}` : "—" },
        { label: "错误", value: (a) => a.error || "" },
      ], d.attempts_log, { empty: "尚未尝试" }),
      el("details", {}, el("summary", {}, "请求体"), el("pre", { class: "secret" }, d.body)),
    ],
  });
}

async function retry(d) {
  await api(`/webhooks/deliveries/${d.id}/retry`, { method: "POST" });
  toast("已重新排队发送", "ok");
  await drawLog();
}

const user = requireLogin(["admin"]);
if (user) {
  mountHeader(user, { title: "Webhook" });
  if (adminScope(user) !== "sysadmin") {
    fill(subsBox, el("div", { class: "alert alert-error", role: "alert" }, "只有系统管理员可以管理 Webhook 订阅"));
  } else {
    guarded(async () => {
      eventTypes = await api("/webhooks/event-types");
      typeName = { ...Object.fromEntries(eventTypes.map((t) => [t.type, t.name])), ping: "测试" };
      await drawSubscriptions();
      await drawLog();
    });
  }
}
