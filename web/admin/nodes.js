// /admin/nodes.html — the cluster's server nodes (服务器节点) as the node registry sees them:
// address, load per media worker, rooms, participants, draining, last heartbeat. System admins only
// (GET /nodes); refreshed every few seconds.
import { api, requireLogin, mountHeader, el, fill, ApiError } from "/assets/api.js";
import { table, errorBox } from "/admin/common.js";

const box = document.getElementById("nodes");
const REFRESH_MS = 3000;

const pct = (x) => `${Math.round(x * 100)}%`;

function workerList(n) {
  if (!n.workers.length) return "—";
  return el("ul", { class: "plain" }, n.workers.map((w) => el("li", { "data-worker": String(w.index) },
    `工作进程 ${w.index}：CPU ${pct(w.cpu)} · ${Math.round(w.packets_per_s)} 包/秒 · ${w.consumers} 路转发`)));
}

function state(n) {
  if (n.draining) return el("span", { class: "badge badge-warn" }, "正在下线");
  if (!n.accepting_rooms) return el("span", { class: "badge badge-live" }, "暂停接收新课堂");
  return el("span", { class: "badge badge-ok" }, "正常");
}

/** Draws the list; false when there is no point asking again (not allowed). */
async function draw() {
  let out;
  try {
    out = await api("/nodes");
  } catch (err) {
    fill(box, el("h2", {}, "服务器节点"), errorBox(err));
    return !(err instanceof ApiError && (err.status === 401 || err.status === 403));
  }
  const note = out.clustered
    ? `集群共 ${out.data.length} 个节点（通过 Redis 登记，心跳中断即移除）`
    : "单节点运行（未配置 Redis）";
  fill(box, el("div", { class: "panel-head" }, el("h2", {}, "服务器节点"), el("span", { class: "muted", id: "nodes-note" }, note)),
    table([
      { label: "节点", value: (n) => el("span", {}, n.node_id, n.this_node ? el("small", { class: "muted" }, "（本节点）") : null) },
      { label: "访问地址", value: (n) => n.url },
      { label: "媒体地址", value: (n) => n.media_addresses.join("、") || "—" },
      { label: "状态", value: state },
      { label: "课堂", value: (n) => String(n.rooms) + (n.capacity_max_rooms != null ? ` / ${n.capacity_max_rooms}` : "") },
      { label: "参与者", value: (n) => String(n.participants) },
      { label: "媒体负载", value: workerList },
      { label: "上次心跳", value: (n) => `${n.heartbeat_age_s.toFixed(1)} 秒前` },
    ], out.data, { empty: "没有在线的节点", rowAttrs: (n) => ({ "data-node": n.node_id }) }));
  return true;
}

async function refresh() {
  if (await draw()) setTimeout(refresh, REFRESH_MS);
}

const user = requireLogin(["admin"]);
if (user) {
  mountHeader(user, { title: "服务器节点" });
  refresh();
}
