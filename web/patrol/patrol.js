// 巡课 (patrol) for researchers: a wall of 4 / 9 / 16 live lessons of the region, rotating through
// all of them (轮巡) or pinned, filters, one click to watch a lesson in full, silently, with the
// evaluation panel (rubric scores, timestamped notes, server-side snapshots).
//
// Every tile and the full view is a LessonClient in observer mode: it receives only, never publishes
// and is never listed in anyone's roster. A tile takes the lowest simulcast layer; the full view
// asks for the high one (a researcher scoring a lesson needs the best picture the link carries),
// and shows the screen and the on-stage classroom only while there is one. Watching in full opens
// a patrol visit (POST /patrol/lessons/{id}/visits), heartbeats it and ends it on leave; when the
// lesson ends (下课: the room closes) the heartbeats stop and the view says the lesson is over.
import { api, ApiError, el, fill, fmtRange, KIND_LABEL, mountHeader, requireLogin, session, showError, toast }
  from "/assets/api.js";
import { label } from "/assets/icons.js";
import { LessonClient } from "/assets/lesson-client.js";
import { EvaluationPanel, mmss } from "/patrol/evaluation.js";
import { drawInsight } from "/records/insight.js";
import { showQuizResults } from "/lesson/quiz.js";

const SIZES = [4, 9, 16];
const PREFS_KEY = "sanke.patrol.prefs";
const REFRESH_MS = 30000;
const INSIGHT_MS = 15000; // the full view's S-T analysis is read again this often

const $ = (id) => document.getElementById(id);

const state = {
  lessons: [],          // live lessons passing the filters (LessonOut)
  facets: null,
  filters: { school_id: "", kind: "", subject: "", grade: "" },
  size: 9,
  rotate: true,
  interval: 30,
  offset: 0,            // rotation position in the list of unpinned lessons
  pinned: new Set(),    // lesson ids kept on the wall while the rest rotates
  tiles: [],            // [{lessonId, client, node}]
  heartbeatS: 30,
  watching: null,       // {lesson, client, visit, timers, startedAt}
};
let rotateTimer = null;
let refreshTimer = null;

// ------------------------------------------------------------------ helpers

function loadPrefs() {
  try {
    const p = JSON.parse(localStorage.getItem(PREFS_KEY) || "{}");
    if (SIZES.includes(p.size)) state.size = p.size;
    if (typeof p.rotate === "boolean") state.rotate = p.rotate;
    if (Number(p.interval) >= 5) state.interval = Number(p.interval);
  } catch { /* defaults */ }
}

function savePrefs() {
  localStorage.setItem(PREFS_KEY, JSON.stringify({ size: state.size, rotate: state.rotate, interval: state.interval }));
}

function showVideo(video, stream) {
  if (video.srcObject !== stream) video.srcObject = stream;
  video.muted = true;
  video.play().catch(() => { /* plays once data arrives */ });
}

/** The main classroom participant that publishes `source` (a teacher and the terminal may both be "main"). */
function mainPublishing(participants, source = "camera") {
  const mains = [...participants.values()].filter((p) => p.role === "main");
  return mains.find((p) => (p.publications || []).some((x) => x.source === source)) || mains[0] || null;
}

function lessonMeta(l) {
  return `${l.main_school_name} · ${l.teacher_name} · ${KIND_LABEL[l.kind] || l.kind} · ${l.subject} ${l.grade} · ${fmtRange(l.starts_at, l.ends_at)}`;
}

function observerClient(lessonId) {
  // resume: false — a wall tile that rotates away must not leave a session to resume behind it
  return new LessonClient(lessonId, { observer: true, resume: false });
}

// ------------------------------------------------------------------ the wall

async function loadLive() {
  const page = await api("/patrol/live", { query: state.filters });
  state.lessons = page.data;
  state.facets = page.facets;
  state.heartbeatS = page.heartbeat_interval_s || 30;
  const liveIds = new Set(page.data.map((l) => l.id));
  for (const id of [...state.pinned]) if (!liveIds.has(id)) state.pinned.delete(id);
  renderFacets();
}

function renderFacets() {
  const f = state.facets;
  if (!f) return;
  const fillSelect = (select, all, options, current) => {
    fill(select, el("option", { value: "" }, all),
      options.map(([v, label]) => el("option", { value: String(v), selected: String(v) === String(current) }, label)));
  };
  fillSelect($("f-school"), "全部学校", f.schools.map((s) => [s.id, s.name]), state.filters.school_id);
  fillSelect($("f-kind"), "全部类型", f.kinds.map((k) => [k, KIND_LABEL[k] || k]), state.filters.kind);
  fillSelect($("f-subject"), "全部学科", f.subjects.map((s) => [s, s]), state.filters.subject);
  fillSelect($("f-grade"), "全部年级", f.grades.map((g) => [g, g]), state.filters.grade);
}

/** Which lessons the wall shows now: the pinned ones, then the rotation window over the others. */
function chooseLessons() {
  const byId = new Map(state.lessons.map((l) => [l.id, l]));
  const pinned = [...state.pinned].filter((id) => byId.has(id)).slice(0, state.size).map((id) => byId.get(id));
  const others = state.lessons.filter((l) => !state.pinned.has(l.id));
  const free = state.size - pinned.length;
  const window = [];
  if (others.length && free > 0) {
    if (state.offset >= others.length) state.offset = 0;
    for (let i = 0; i < Math.min(free, others.length); i += 1) window.push(others[(state.offset + i) % others.length]);
  }
  return [...pinned, ...window];
}

function layoutWall() {
  if (state.watching) return;  // the wall's connections stay released while one lesson is watched
  const wall = $("wall");
  wall.dataset.size = String(state.size);
  const chosen = chooseLessons();
  const keep = new Map(state.tiles.map((t) => [t.lessonId, t]));
  const next = [];
  for (const lesson of chosen) {
    let tile = keep.get(lesson.id);
    if (tile) keep.delete(lesson.id);
    else tile = makeTile(lesson);
    tile.lesson = lesson;
    tile.node.classList.toggle("pinned", state.pinned.has(lesson.id));
    label(tile.node.querySelector("[data-action=pin]"), "pin", state.pinned.has(lesson.id) ? "已固定" : "固定");
    next.push(tile);
  }
  for (const gone of keep.values()) closeTile(gone);
  state.tiles = next;
  const empties = [];
  for (let i = next.length; i < state.size; i += 1) {
    empties.push(el("div", { class: "wall-tile wall-empty" },
      el("div", { class: "tile-media" }, el("div", { class: "tile-status" }, "空闲画面")), el("figcaption", {})));
  }
  wall.replaceChildren(...next.map((t) => t.node), ...empties);
  const total = state.lessons.length;
  const screens = Math.max(1, Math.ceil(Math.max(0, total - state.pinned.size) / Math.max(1, state.size - state.pinned.size)));
  $("wall-status").textContent = total
    ? `正在上课 ${total} 节 · ${!state.rotate ? "轮巡已暂停" : total > state.size
      ? `轮巡中，共 ${screens} 屏，每 ${state.interval} 秒切换` : "轮巡已开启（课堂不足一屏）"}`
    : "本区域当前没有正在上课的课堂";
  if (!total) wall.replaceChildren(el("p", { class: "empty wall-none" }, "本区域当前没有正在上课的课堂，有课堂开始上课后会自动出现在这里。"));
}

function makeTile(lesson) {
  const video = el("video", { muted: true, playsinline: true, autoplay: true });
  const status = el("div", { class: "tile-status" }, "正在连接…");
  const node = el("figure", { class: "wall-tile", dataset: { lesson: String(lesson.id) } },
    el("div", { class: "tile-media", title: "点击全屏观看", onclick: () => watch(tile.lesson) }, video, status),
    el("figcaption", {},
      el("div", { class: "tile-text" }, el("b", {}, lesson.title), el("small", {}, lessonMeta(lesson))),
      el("div", { class: "tile-buttons" },
        label(el("button", { type: "button", class: "btn btn-ghost", dataset: { action: "pin" }, onclick: () => togglePin(lesson.id) }), "pin", "固定"),
        label(el("button", { type: "button", class: "btn btn-ghost", dataset: { action: "watch" }, onclick: () => watch(tile.lesson) }), "expand", "观看"))));
  const client = observerClient(lesson.id);
  const tile = { lessonId: lesson.id, lesson, client, node, video };
  client.setSubscriptions((participants) => {
    const main = mainPublishing(participants);
    return main ? [{ participant_id: main.participant_id, source: "camera" }] : [];
  });
  client.on("track", ({ source, stream }) => {
    if (source !== "camera") return;
    showVideo(video, stream);
    status.hidden = true;
  });
  client.on("trackended", ({ source }) => { if (source === "camera") { status.hidden = false; status.textContent = "等待主讲画面…"; } });
  client.on("state", ({ state: s, message }) => {
    if (s === "joined") { status.textContent = "等待主讲画面…"; return; }
    if (s === "closed" || s === "failed") video.srcObject = null;  // no frozen picture under the status
    status.hidden = false;
    status.textContent = { connecting: "正在连接…", reconnecting: "网络中断，正在重连…", waiting: "课堂尚未开放",
      closed: "课堂已结束", failed: message || "无法进入课堂" }[s] || "";
  });
  client.connect().catch(() => { /* shown by the state listener */ });
  return tile;
}

function closeTile(tile) {
  tile.client.leave().catch(() => {});
  tile.video.srcObject = null;
}

function closeWall() {
  for (const t of state.tiles) closeTile(t);
  state.tiles = [];
}

function togglePin(id) {
  if (state.pinned.has(id)) state.pinned.delete(id);
  else if (state.pinned.size < state.size) state.pinned.add(id);
  else { toast(`最多固定 ${state.size} 个画面`, "warn"); return; }
  layoutWall();
}

function rotateNow() {
  const others = state.lessons.filter((l) => !state.pinned.has(l.id)).length;
  const free = state.size - Math.min(state.pinned.size, state.size);
  if (others > free && free > 0) state.offset = (state.offset + free) % others;
  layoutWall();
}

function scheduleRotation() {
  clearInterval(rotateTimer);
  rotateTimer = null;
  const btn = $("btn-rotate");
  btn.setAttribute("aria-pressed", String(state.rotate));
  label(btn, state.rotate ? "pause" : "play", state.rotate ? "暂停轮巡" : "开始轮巡");
  if (state.rotate) rotateTimer = setInterval(() => { if (!state.watching) rotateNow(); }, state.interval * 1000);
}

async function refresh() {
  try {
    await loadLive();
    if (!state.watching) layoutWall();
  } catch (e) {
    if (e instanceof ApiError && e.status === 0) $("wall-status").textContent = "无法连接服务器，稍后自动重试…";
    else showError(e);
  }
}

function bindToolbar() {
  for (const [id, key] of [["f-school", "school_id"], ["f-kind", "kind"], ["f-subject", "subject"], ["f-grade", "grade"]]) {
    $(id).addEventListener("change", (e) => { state.filters[key] = e.target.value; state.offset = 0; refresh(); });
  }
  for (const b of document.querySelectorAll(".seg [data-size]")) {
    b.classList.toggle("btn-primary", Number(b.dataset.size) === state.size);
    b.addEventListener("click", () => {
      state.size = Number(b.dataset.size);
      for (const x of document.querySelectorAll(".seg [data-size]")) x.classList.toggle("btn-primary", x === b);
      while (state.pinned.size > state.size) state.pinned.delete([...state.pinned].pop());
      savePrefs();
      layoutWall();
    });
  }
  $("f-interval").value = String(state.interval);
  $("f-interval").addEventListener("change", (e) => { state.interval = Number(e.target.value); savePrefs(); scheduleRotation(); layoutWall(); });
  $("btn-rotate").addEventListener("click", () => { state.rotate = !state.rotate; savePrefs(); scheduleRotation(); layoutWall(); });
}

// ------------------------------------------------------------------ watching one lesson in full

async function watch(lesson) {
  if (state.watching) return;
  closeWall();  // one lesson at full attention: the wall's connections are released meanwhile
  $("wall-view").hidden = true;
  $("watch-view").hidden = false;
  $("watch-title").textContent = lesson.title;
  $("watch-meta").textContent = lesson.title ? lessonMeta(lesson) : "";  // embedded: the page around says it
  const w = { lesson, client: null, visit: null, timers: [], startedAt: Date.now() };
  state.watching = w;
  history.replaceState(null, "", `#lesson=${lesson.id}`);

  const client = observerClient(lesson.id);
  w.client = client;
  window.sankeLesson = client;
  // the full view asks for the high simulcast layer (a wall tile stays on the low one)
  client.setSubscriptions((participants) => {
    const main = mainPublishing(participants);
    const subs = [{ participant_id: "stage", source: "camera", layer: "high" }, { participant_id: "stage", source: "microphone" }];
    if (main) {
      subs.push({ participant_id: main.participant_id, source: "camera", layer: "high" },
        { participant_id: main.participant_id, source: "microphone" },
        { participant_id: main.participant_id, source: "screen", layer: "high" });
    }
    return subs;
  });
  client.on("track", ({ participantId, source, stream, track, key }) => {
    if (source === "microphone") return playAudio(key, track);
    if (participantId === "stage") showVideo($("watch-stage"), stream);
    else if (source === "screen") showVideo($("watch-screen"), stream);
    else showVideo($("watch-camera"), stream);
    renderPanels(w);
  });
  client.on("trackended", ({ source, key }) => {
    if (source === "microphone") return stopAudio(key);
    renderPanels(w);
  });
  for (const type of ["roster", "room", "stage"]) client.on(type, () => renderPanels(w));
  client.on("message", (m) => {  // 随堂测: the results as the teacher sees them (observers get quiz_results)
    if (m.type !== "quiz_results" || state.watching !== w) return;
    $("watch-quiz-card").hidden = false;
    showQuizResults($("watch-quiz"), m);
  });
  client.on("state", ({ state: s, reason, message }) => {
    const banner = $("watch-banner");
    banner.dataset.reason = reason || "";
    const text = { connecting: "正在进入课堂…", reconnecting: "网络中断，正在重新连接…", waiting: "课堂尚未开放",
      closed: "本节课已结束，课堂已关闭", failed: message || "无法进入课堂" }[s];
    banner.hidden = !text;
    banner.textContent = text || "";
    banner.dataset.state = s;
    if (s === "closed" && reason === "room_closed") lessonEnded(w);
  });
  client.connect().catch(() => { /* shown in the banner */ });

  try {
    w.visit = await api(`/patrol/lessons/${lesson.id}/visits`, { method: "POST" });
    if (!w.ended) {
      const beat = setInterval(() => heartbeat(w), (w.visit.heartbeat_interval_s || state.heartbeatS) * 1000);
      w.timers.push(beat);
    }
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) lessonEnded(w);  // the room closed meanwhile
    else showError(e);
  }
  if (!w.ended) {
    const tick = setInterval(() => { $("visit-timer").textContent = mmss((Date.now() - w.startedAt) / 1000); }, 1000);
    w.timers.push(tick);
    // the lesson's S-T analysis so far (the turns of speech its log holds), refreshed while watching
    const insight = () => api(`/records/lessons/${lesson.id}`).then((rec) => {
      if (state.watching === w) drawInsight($("watch-insight"), rec.insight, rec.attendance);
    }).catch(() => { /* a researcher outside the lesson's region sees no record: the panel stays as it is */ });
    insight();
    w.timers.push(setInterval(insight, INSIGHT_MS));
  }
  if (state.watching === w) await panel.open(lesson.id);
}

/** Does `p` publish `source` now? */
function publishes(p, source) {
  return !!p && (p.publications || []).some((x) => x.source === source);
}

/**
 * The screen and the on-stage classroom have a panel only while there is something to show: the
 * main classroom shares its screen, a classroom is on stage with its camera (their m-lines exist
 * from the start, so a track alone says nothing).
 */
function renderPanels(w) {
  if (state.watching !== w || w.ended) return;
  const lc = w.client;
  const main = mainPublishing(lc.participants, "screen");
  const sharing = publishes(main, "screen") && !!lc.remoteTrack(main.participant_id, "screen");
  const onStageId = lc.room && lc.room.on_stage;
  const onStage = onStageId ? lc.participants.get(onStageId) : null;
  const staged = publishes(onStage, "camera") && !!lc.remoteTrack("stage", "camera");
  $("wview-screen").hidden = !sharing;
  $("wview-stage").hidden = !staged;
  $("wview-stage-caption").textContent = staged ? `上台课堂：${onStage.display_name}` : "上台课堂";
}

/** 下课: the room closed. No more heartbeats (the server closes the visit with the room), the view says so. */
function lessonEnded(w) {
  if (w.ended) return;
  w.ended = true;
  for (const t of w.timers) clearInterval(t);
  w.timers = [];
  if (state.watching !== w) return;
  $("wview-screen").hidden = true;
  $("wview-stage").hidden = true;
  $("watch-camera").srcObject = null;  // its track ended with the room: no frozen or black picture
  $("watch-off").hidden = false;
  $("btn-snapshot").disabled = true;
  const banner = $("watch-banner");
  banner.hidden = false;
  banner.dataset.state = "closed";
  banner.textContent = "本节课已结束，课堂已关闭。可继续填写评课，或返回巡课墙。";
  $("watch-view").classList.add("ended");
}

async function heartbeat(w) {
  if (!w.visit || w.ended || state.watching !== w) return;
  try {
    await api(`/patrol/visits/${w.visit.id}/heartbeat`, { method: "POST" });
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 409) || w.ended) return;
    // closed meanwhile: after a long network gap a new visit; when the lesson is over, none
    try {
      w.visit = await api(`/patrol/lessons/${w.lesson.id}/visits`, { method: "POST" });
    } catch (again) {
      if (again instanceof ApiError && again.status === 409) lessonEnded(w);
    }
  }
}

function endVisitOnUnload() {
  const w = state.watching;
  const s = session();
  if (!w || !w.visit || w.ended || !s) return;
  // the page is going away: a keepalive request outlives it (the stale rule closes the visit otherwise)
  fetch(`/api/v1/patrol/visits/${w.visit.id}/end`, { method: "POST", keepalive: true,
    headers: { Authorization: `Bearer ${s.token}` } }).catch(() => {});
}

async function leaveWatch() {
  const w = state.watching;
  if (!w) return;
  state.watching = null;
  panel.close();
  const over = w.ended;  // the lesson ended first: the server closed the visit with the room
  w.ended = true;
  for (const t of w.timers) clearInterval(t);
  await w.client.leave().catch(() => {});
  if (window.sankeLesson === w.client) window.sankeLesson = null;
  document.querySelectorAll("#audio-sinks audio").forEach((a) => { a.srcObject = null; a.remove(); });
  for (const id of ["watch-camera", "watch-screen", "watch-stage"]) $(id).srcObject = null;
  $("wview-screen").hidden = true;
  $("wview-stage").hidden = true;
  $("watch-quiz-card").hidden = true;
  $("watch-quiz").textContent = "";
  $("btn-snapshot").disabled = false;
  $("watch-off").hidden = true;
  $("watch-view").classList.remove("ended");
  $("visit-timer").textContent = "00:00";
  if (w.visit && !over) api(`/patrol/visits/${w.visit.id}/end`, { method: "POST" }).catch(() => {});
  history.replaceState(null, "", location.pathname);
  $("watch-view").hidden = true;
  $("wall-view").hidden = false;
  await refresh();
}

function playAudio(key, track) {
  let box = document.getElementById("audio-sinks");
  if (!box) { box = el("div", { id: "audio-sinks", hidden: true }); document.body.appendChild(box); }
  let audio = box.querySelector(`audio[data-key="${CSS.escape(key)}"]`);
  if (!audio) { audio = el("audio", { dataset: { key }, autoplay: true }); box.appendChild(audio); }
  audio.srcObject = new MediaStream([track]);
  audio.play().catch(() => toast("浏览器阻止了自动播放声音，请点击页面任意位置开启声音", "warn"));
}

function stopAudio(key) {
  const audio = document.querySelector(`#audio-sinks audio[data-key="${CSS.escape(key)}"]`);
  if (audio) { audio.srcObject = null; audio.remove(); }
}

// ------------------------------------------------------------------ the evaluation panel (evaluation.js) and snapshots

let panel = null;  // EvaluationPanel, mode live; created in main()

const snapshotUrls = new Map();

async function renderSnapshots() {
  const ev = panel.evaluation;
  const snaps = (ev && ev.snapshots) || [];
  const box = $("snapshots");
  if (!snaps.length) { fill(box, el("p", { class: "muted small" }, "截取主讲课堂当前画面，保存在本次评课中")); return; }
  const nodes = [];
  for (const s of snaps.slice().reverse()) {
    if (!snapshotUrls.has(s.id)) {
      const resp = await api(s.url, { raw: true });  // the JPEG needs the login: fetched, not linked
      snapshotUrls.set(s.id, URL.createObjectURL(await resp.blob()));
    }
    nodes.push(el("figure", { class: "snap" }, el("img", { src: snapshotUrls.get(s.id), alt: "课堂截图", dataset: { snapshot: String(s.id) } }),
      el("figcaption", {}, s.lesson_offset_seconds != null ? mmss(s.lesson_offset_seconds) : "")));
  }
  fill(box, nodes);
}

async function takeSnapshot(w) {
  const btn = $("btn-snapshot");
  btn.disabled = true;
  try {
    await api(`/patrol/lessons/${w.lesson.id}/snapshots`, { method: "POST" });
    panel.evaluation = await api(`/patrol/lessons/${w.lesson.id}/evaluation`);
    await renderSnapshots();
    toast("已截图", "ok");
  } finally { btn.disabled = false; }
}

function bindWatch() {
  const guarded = (fn) => async () => { const w = state.watching; if (!w) return; try { await fn(w); } catch (e) { showError(e); } };
  $("btn-back").addEventListener("click", () => leaveWatch());
  $("btn-snapshot").addEventListener("click", guarded(takeSnapshot));
  window.addEventListener("pagehide", endVisitOnUnload);
}

// ------------------------------------------------------------------ start

async function main() {
  // embed=1#lesson=<id>: the full view of that one lesson as a pane of another page (教研活动), for a
  // researcher or an invited teacher (the join token decides): no header, no wall, no way back to it
  const embed = new URLSearchParams(location.search).get("embed") === "1";
  const user = requireLogin(embed ? ["researcher", "teacher"] : ["researcher"]);
  if (!user) return;
  if (embed) {
    document.body.classList.add("embed");
    $("app-header").remove();
    $("wall-view").hidden = true;
  } else {
    mountHeader(user, { title: "巡课" });
  }
  loadPrefs();
  panel = new EvaluationPanel({ mode: "live", onRender: () => { renderSnapshots().catch(showError); } });
  bindWatch();
  if (embed) {
    const m = /lesson=(\d+)/.exec(location.hash);
    window.sankePatrol = { state, leave: leaveWatch };
    if (m) await watch({ id: Number(m[1]), title: "" });
    return;
  }
  bindToolbar();
  scheduleRotation();
  window.sankePatrol = { state, watch: (id) => watch(state.lessons.find((l) => l.id === id)), leave: leaveWatch, rotateNow };
  await refresh();
  refreshTimer = setInterval(() => { if (!state.watching) refresh(); }, REFRESH_MS);
  const m = /lesson=(\d+)/.exec(location.hash);
  const wanted = m && state.lessons.find((l) => l.id === Number(m[1]));
  if (wanted) watch(wanted);
}

main().catch(showError);
