// Shared by the records pages: ECharts, rates, file downloads.
import * as echarts from "/vendor/echarts.esm.min.js";
import { api } from "/assets/api.js";

export { echarts };

/** "93.5%" or "—" for a rate in 0..1 (null: nothing to divide by). */
export function pct(rate) {
  return rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)}%`;
}

/** A rate as a percentage number for charts (null stays null: a gap). */
export function pctNum(rate) {
  return rate === null || rate === undefined ? null : Math.round(rate * 1000) / 10;
}

export function minutes(seconds) {
  return seconds === null || seconds === undefined ? "—" : (seconds / 60).toFixed(1);
}

/** Download a report file: GET path?query&format=fmt with the login, saved under the server's name. */
export async function download(path, query, fmt) {
  const resp = await api(path, { query: { ...query, format: fmt }, raw: true });
  const blob = await resp.blob();
  const cd = resp.headers.get("content-disposition") || "";
  const m = /filename="([^"]+)"/.exec(cd);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = m ? m[1] : `report.${fmt}`;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

/** One chart per container, resized with the window; returns the instance. */
export function chartIn(node) {
  const chart = echarts.getInstanceByDom(node) || echarts.init(node, null, { renderer: "canvas" });
  if (!node.dataset.resizing) {
    node.dataset.resizing = "1";
    window.addEventListener("resize", () => chart.resize());
  }
  return chart;
}

export const COLORS = ["#2563eb", "#16a34a", "#f59e0b", "#9333ea", "#dc2626", "#0891b2"];
