// Main-classroom terminal (主讲课堂): today's lessons, start, preview, devices, screen share,
// the grid of receiving classrooms with link quality, home students as a list, on stage,
// mute / mute all, hands, chat, timer. Lessons the teacher assists (助教), or the terminal's
// classroom receives, are listed with a link to the receiving classroom page.
import { api, ApiError, requireLogin, mountHeader, showError, toast, confirmDialog, todayISO, fmtRange, statusBadge, KIND_LABEL,
  seatIn, lessonPageFor, streamFromChoices, streamFromText } from "/assets/api.js";
import { LessonClient } from "/assets/lesson-client.js";
import { quizTeacherPanel } from "/lesson/quiz.js";
import { Board, COLORS, TOOLS, enableDrawing } from "/lesson/annotation.js";
import { icon, label } from "/assets/icons.js";
import { el, fill, qualityDot, setQuality, showVideo, playAudio, stopAudio, renderBanner, mediaErrorText, chatPanel, fmtDuration, wall, SOURCE_LABEL } from "/lesson/common.js";

const $ = (id) => document.getElementById(id);
const user = requireLogin(["teacher", "terminal"]);
let lessons = []; // given here: this teacher's lessons, or those of this terminal's classroom
let received = []; // taken elsewhere's: lessons this teacher assists, or this terminal's classroom receives
let lc = null;
let current = null;
let startedAt = null; // ms: when the lesson started (the server's started_at), for the timer
let endedShown = false;
const tiles = new Map(); // participant_id → {root, video, quality, ...}
const quality = new Map(); // participant_id → quality

if (user) {
  mountHeader(user, { title: "主讲课堂" });
  loadLessons();
  setInterval(tick, 1000);
  setInterval(() => { if (!lc) loadLessons(); }, 15000);
}

async function loadLessons() {
  const query = { date_from: todayISO(), date_to: todayISO(), limit: 500 };
  if (user.role === "terminal") query.classroom_id = user.classroom_id;
  let rows;
  try {
    rows = (await api("/lessons", { query })).data.filter((l) => l.status !== "cancelled");
  } catch (e) {
    $("picker-note").textContent = e instanceof ApiError && e.status === 0 ? "无法连接服务器，稍后自动重试" : `读取课程失败：${e.message}`;
    return;
  }
  lessons = rows.filter((l) => seatIn(user, l) === "main");
  received = rows.filter((l) => ["assistant", "receiving"].includes(seatIn(user, l)));
  // a link to a lesson this user takes part in from a receiving classroom: that page
  const wanted = Number(new URLSearchParams(location.search).get("lesson"));
  const there = received.find((l) => l.id === wanted);
  if (there) { location.replace(lessonPageFor(seatIn(user, there), there.id)); return; }
  const who = user.role === "terminal" ? "本教室" : "您";
  $("picker-note").textContent = lessons.length ? "课堂在上课前 10 分钟开放，开放后即可开始上课。"
    : `今天没有${who}主讲的课程。` + (received.length ? `${who}接收的课程见下方。` : "");
  fill($("lesson-list"), ...lessons.map(lessonCard));
  $("assist").hidden = !received.length;
  $("assist-title").textContent = user.role === "terminal" ? "本教室接收的课程" : "接收课堂（助教）";
  fill($("assist-list"), ...received.map(receivedCard));
  tick();
  // a page reload in the middle of a lesson: go straight back in (the session resumes)
  const back = lessons.find((l) => sessionStorage.getItem(`sanke.lesson.${l.id}`) && l.room_open);
  if (back && !lc) enterClass(back);
}

function lessonCard(l) {
  const btn = el("button", { class: "btn btn-primary btn-lg", type: "button", dataset: { action: "start", lesson: l.id }, onclick: () => start(l) }, l.status === "live" ? "进入课堂" : "开始上课");
  return el("article", { class: "lesson-card", dataset: { lesson: l.id } },
    el("div", { class: "lesson-time" }, fmtRange(l.starts_at, l.ends_at)),
    el("div", { class: "lesson-info" },
      el("h3", {}, l.title, " ", statusBadge(l.status)),
      el("div", { class: "muted" }, `${KIND_LABEL[l.kind] || l.kind} · ${l.main_classroom_name} · ${l.teacher_name}`),
      el("div", { class: "muted small" }, "接收课堂：", l.receivers.map((r) => `${r.school_name} ${r.classroom_name}`).join("、") || "无")),
    el("div", { class: "lesson-go" }, el("div", { class: "countdown", dataset: { countdown: l.id } }), btn));
}

function receivedCard(l) {
  return el("article", { class: "lesson-card", dataset: { lesson: l.id, seat: seatIn(user, l) } },
    el("div", { class: "lesson-time" }, fmtRange(l.starts_at, l.ends_at)),
    el("div", { class: "lesson-info" },
      el("h3", {}, l.title, " ", statusBadge(l.status)),
      el("div", { class: "muted" }, `${KIND_LABEL[l.kind] || l.kind} · 主讲：${l.main_school_name} ${l.teacher_name}`),
      el("div", { class: "muted small" }, "接收课堂：", l.receivers.map((r) => `${r.school_name} ${r.classroom_name}`).join("、") || "无")),
    el("div", { class: "lesson-go" },
      el("a", { class: "btn btn-primary btn-lg", href: lessonPageFor(seatIn(user, l), l.id), dataset: { action: "receive" } }, "进入接收课堂")));
}

function tick() {
  const now = Date.now();
  for (const l of lessons) {
    const node = document.querySelector(`[data-countdown="${l.id}"]`);
    const btn = document.querySelector(`[data-action="start"][data-lesson="${l.id}"]`);
    if (!node || !btn) continue;
    const toStart = wall(l.starts_at) - now;
    const ended = wall(l.ends_at) - now < 0;
    const over = l.status === "held" || l.status === "missed"; // 下课 (maybe early), or never held
    btn.disabled = !l.room_open || over;
    btn.hidden = over;
    if (over) node.textContent = l.status === "held" ? "已下课" : "未开课";
    else if (l.status === "live") node.textContent = "上课中";
    else if (ended) node.textContent = "已过上课时间";
    else if (!l.room_open) node.textContent = `课堂未开放 · 距上课 ${fmtDuration(toStart)}`;
    else node.textContent = toStart > 0 ? `课堂已开放 · 距上课 ${fmtDuration(toStart)}` : "已到上课时间";
  }
  if (startedAt) $("timer").textContent = fmtDuration(Date.now() - startedAt);
}

async function start(lesson) {
  try {
    const l = await api(`/lessons/${lesson.id}/start`, { method: "POST" });
    enterClass(l);
  } catch (e) { showError(e); }
}

async function enterClass(lesson) {
  current = lesson;
  const started = lesson.started_at ? wall(lesson.started_at).getTime() : NaN;
  startedAt = Number.isFinite(started) && started <= Date.now() ? started : Date.now();
  endedShown = false;
  $("picker").hidden = true;
  $("classroom").hidden = false;
  $("lesson-title").textContent = lesson.title;
  $("lesson-meta").textContent = `${fmtRange(lesson.starts_at, lesson.ends_at)} · ${lesson.main_classroom_name}`;
  const myQuality = qualityDot();
  fill($("my-quality"), myQuality);

  // a 名校网络课堂 goes out as an HLS stream too, which carries H.264 as sent (VP8 only as the fallback)
  lc = new LessonClient(lesson.id, { preferH264: lesson.kind === "famous_school" });
  window.sankeLesson = lc; // for the operator's console and the browser tests
  lc.on("state", (st) => {
    if (endedShown) return; // the end screen says it all (下课 also leaves: a second "closed")
    renderBanner($("banner"), st);
    if (st.state === "closed" || st.state === "failed") showEnded(st);
  });
  lc.on("localquality", (q) => setQuality(myQuality, q.quality));
  lc.on("roster", renderGrid);
  lc.on("room", renderRoom);
  lc.on("hand", renderHands);
  lc.on("linkquality", (m) => { quality.set(m.participant_id, m.quality); const t = tiles.get(m.participant_id); if (t) setQuality(t.quality, m.quality); });
  lc.on("track", onTrack);
  lc.on("trackended", (t) => { if (t.source === "microphone") stopAudio(t.key); });
  lc.on("local", ({ source, track }) => {
    if (source === "camera" && track) showVideo($("local-video"), new MediaStream([track]));
    if (source === "screen") {
      $("screen-view").hidden = !track;
      if (track) showVideo($("screen-video"), new MediaStream([track]));
      label($("btn-screen"), track ? "stop" : "screen", track ? "停止共享" : "共享屏幕");
    }
  });
  lc.on("error", (m) => toast(m.message || m.code, "error"));
  fill($("chat-box"), chatPanel(lc));
  fill($("quiz-box"), quizTeacherPanel(lc, lesson.id));
  annotateBar(lc);
  lc.setSubscriptions((participants) => {
    const subs = [];
    for (const p of participants.values()) {
      if (p.role !== "receiving" && p.role !== "student") continue;
      subs.push({ participant_id: p.participant_id, source: "camera" }, { participant_id: p.participant_id, source: "microphone" });
    }
    return subs;
  });
  bindControls();
  try {
    await lc.connect();
  } catch (e) { return; } // the state banner says why
  try {
    await lc.publishUserMedia({ video: { width: 1280, height: 720 }, audio: true });
  } catch (e) {
    renderBanner($("banner"), { state: "failed", reason: "media", message: mediaErrorText(e) });
    $("banner").dataset.state = "media-denied";
  }
  fillDevices();
}

function bindControls() {
  $("btn-mic").onclick = async () => {
    const mic = lc.local.get("microphone");
    if (!mic) return;
    try { await lc.setMuted("microphone", mic.enabled); } catch (e) { showError(e); }
    label($("btn-mic"), mic.enabled ? "mic" : "mic-off", mic.enabled ? "关闭麦克风" : "打开麦克风");
  };
  $("btn-screen").onclick = async () => {
    try {
      if (lc.local.get("screen")) await lc.unpublish("screen");
      else await lc.publishScreen();
    } catch (e) {
      if (e && e.name === "NotAllowedError") toast("已取消屏幕共享", "info");
      else showError(e);
    }
  };
  $("btn-mute-all").onclick = async () => {
    try { await lc.muteAll(!(lc.room && lc.room.muted_all)); } catch (e) { showError(e); }
  };
  $("btn-unstage").onclick = () => lc.setOnStage(null).catch(showError);
  $("btn-end").onclick = async () => {
    if (!(await confirmDialog("确定下课吗？下课后本课堂将关闭，所有接收课堂一同退出。", { okLabel: "下课", kind: "danger" }))) return;
    try {
      await api(`/lessons/${current.id}/end`, { method: "POST" }); // closes the room for everyone
    } catch (e) {
      showError(e);
    }
    await lc.leave();
  };
  $("camera-select").onchange = (e) => lc.switchDevice("camera", e.target.value).catch((err) => toast(mediaErrorText(err), "error"));
  $("mic-select").onchange = (e) => lc.switchDevice("microphone", e.target.value).catch((err) => toast(mediaErrorText(err), "error"));
}

async function fillDevices() {
  let devices = [];
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch { return; }
  const opts = (kind, source) => {
    const currentId = lc.local.get(source) && lc.local.get(source).getSettings().deviceId;
    return devices.filter((d) => d.kind === kind).map((d, i) => el("option", { value: d.deviceId, selected: d.deviceId === currentId },
      d.label || `${kind === "videoinput" ? "摄像头" : "麦克风"} ${i + 1}`));
  };
  fill($("camera-select"), ...opts("videoinput", "camera"));
  fill($("mic-select"), ...opts("audioinput", "microphone"));
}

/** Receiving classrooms: a tile each (camera, quality, controls). */
function remotes() {
  return [...lc.participants.values()].filter((p) => p.role === "receiving");
}

/** Home students (and attending teachers): no camera unless on stage, so a list, not tiles. */
function students() {
  return [...lc.participants.values()].filter((p) => p.role === "student");
}

function renderGrid() {
  const list = remotes();
  // the receiving classrooms' grid: when the lesson has receiving classrooms (or one is in)
  $("remote-section").hidden = !list.length && !(current && current.receivers && current.receivers.length);
  $("remote-empty").hidden = list.length > 0;
  $("remote-count").textContent = list.length ? `（${list.length}）` : "";
  for (const [pid, t] of tiles) if (!lc.participants.has(pid)) { t.root.remove(); tiles.delete(pid); stopAudio(`${pid}/microphone`); }
  for (const p of list) {
    let t = tiles.get(p.participant_id);
    if (!t) {
      t = makeTile(p);
      tiles.set(p.participant_id, t);
      $("remote-grid").appendChild(t.root);
      const cam = lc.remoteTrack(p.participant_id, "camera");
      if (cam) showVideo(t.video, cam.stream);
    }
    const micOff = (p.muted_by_teacher || []).includes("microphone") || (p.publications || []).some((x) => x.source === "microphone" && x.muted);
    t.name.textContent = p.display_name;
    t.root.classList.toggle("on-stage", p.on_stage);
    t.root.classList.toggle("hand-up", p.hand_raised);
    t.root.dataset.muted = micOff ? "true" : "false";
    t.hand.hidden = !p.hand_raised;
    if (micOff) label(t.micState, "mic-off", "已静音"); else fill(t.micState, icon("mic"));
    t.stageBtn.textContent = p.on_stage ? "下台" : "上台";
    t.muteBtn.textContent = (p.muted_by_teacher || []).includes("microphone") ? "取消静音" : "静音";
  }
  renderStudents();
  renderStage();
  renderHands();
}

/** 名校网络课堂, the teacher: how home students not on stage watch (the series' `stream_from`). */
function renderStreamFrom() {
  const field = $("stream-from-field");
  field.hidden = !(current && current.kind === "famous_school" && user.role === "teacher");
  if (field.hidden) return;
  const select = $("stream-from");
  const value = current.stream_from ?? null;
  if (select.dataset.value === String(value)) return;
  select.dataset.value = String(value);
  fill(select, ...streamFromChoices(value).map(([v, text]) => el("option", { value: v, selected: v === (value === null ? "" : String(value)) }, text)));
  select.onchange = async () => {
    const want = select.value === "" ? null : Number(select.value);
    try {
      const out = await api(`/series/${current.series_id}/stream-from`, { method: "PUT", body: { stream_from: want } });
      current = { ...current, stream_from: out.stream_from };
      toast(`在家学生：${streamFromText(out.stream_from)}`, "ok");
    } catch (e) {
      showError(e);
      select.value = current.stream_from === null || current.stream_from === undefined ? "" : String(current.stream_from);
    }
    renderStreamFrom();
  };
}

function renderStudents() {
  const list = students();
  renderStreamFrom();
  $("students").hidden = !list.length && $("stream-from-field").hidden;
  $("student-count").textContent = String(list.length);
  fill($("student-list"), ...list.map((p) => {
    const micOff = (p.muted_by_teacher || []).includes("microphone") || (p.publications || []).some((x) => x.source === "microphone" && x.muted);
    return el("li", { dataset: { participant: p.participant_id }, class: p.on_stage ? "on-stage" : "" },
      el("span", { class: "student-name" }, p.display_name),
      p.hand_raised ? el("span", { class: "student-hand", title: "举手" }, icon("hand")) : null,
      p.on_stage ? el("span", { class: "student-mic" }, micOff ? icon("mic-off") : icon("mic")) : null,
      el("button", { class: "btn", type: "button", dataset: { action: "stage" },
        onclick: () => lc.setOnStage(p.on_stage ? null : p.participant_id).catch(showError) }, p.on_stage ? "下台" : "上台"));
  }));
}

function makeTile(p) {
  const pid = p.participant_id;
  const video = el("video", { muted: true, playsinline: true, autoplay: true });
  const name = el("span", { class: "tile-name" });
  const q = qualityDot(quality.get(pid));
  const hand = el("span", { class: "tile-hand", hidden: true, title: "举手" }, icon("hand"));
  const micState = el("span", { class: "tile-mic" });
  const stageBtn = el("button", { class: "btn", type: "button", dataset: { action: "stage" }, onclick: () => {
    const p2 = lc.participants.get(pid);
    lc.setOnStage(p2 && p2.on_stage ? null : pid).catch(showError);
  } }, "上台");
  const muteBtn = el("button", { class: "btn", type: "button", dataset: { action: "mute" }, onclick: () => {
    const p2 = lc.participants.get(pid);
    const muted = p2 && (p2.muted_by_teacher || []).includes("microphone");
    lc.mute(pid, "microphone", !muted).catch(showError);
  } }, "静音");
  const root = el("figure", { class: "remote-tile", dataset: { participant: pid } },
    el("div", { class: "tile-video" }, video, hand),
    el("figcaption", {}, el("div", { class: "tile-head" }, name, micState, q), el("div", { class: "tile-actions" }, stageBtn, muteBtn)));
  return { root, video, name, quality: q, hand, micState, stageBtn, muteBtn };
}

function onTrack(t) {
  if (t.source === "microphone") { playAudio(t.key, t.track); return; }
  const tile = tiles.get(t.participantId);
  if (t.source === "camera" && tile) showVideo(tile.video, t.stream);
  renderStage();
}

function renderStage() {
  const pid = lc && lc.room && lc.room.on_stage;
  const p = pid && lc.participants.get(pid);
  $("stage-view").hidden = !p;
  $("btn-unstage").hidden = !p;
  if (!p) return;
  $("stage-caption").textContent = `上台：${p.display_name}`;
  const cam = lc.remoteTrack(pid, "camera");
  if (cam) showVideo($("stage-video"), cam.stream);
}

function renderRoom(room) {
  // 名校网络课堂: a source its HLS stream cannot carry (VP8), and why; home students then watch by WebRTC
  const refused = Object.entries(room.stream_refused || {});
  $("stream-notice").hidden = !refused.length;
  $("stream-notice").textContent = refused.length
    ? `直播流不可用（${refused.map(([source]) => SOURCE_LABEL[source] || source).join("、")}）：${refused[0][1]}` : "";
  label($("btn-mute-all"), room.muted_all ? "volume" : "volume-off", room.muted_all ? "取消全体静音" : "全体静音");
  $("btn-mute-all").classList.toggle("btn-danger", room.muted_all);
  renderStage();
  renderHands();
}

function renderHands() {
  const queue = (lc && lc.handQueue) || [];
  $("hand-count").textContent = String(queue.length);
  if (!queue.length) { fill($("hand-list"), el("li", { class: "muted" }, "暂无举手")); return; }
  fill($("hand-list"), ...queue.map((pid) => {
    const p = lc.participants.get(pid);
    return el("li", { dataset: { participant: pid } }, el("span", {}, icon("hand"), " ", p ? p.display_name : pid),
      el("button", { class: "btn btn-primary", type: "button", onclick: () => lc.setOnStage(pid).catch(showError) }, "请上台"));
  }));
}

/**
 * The end screen, for the first end only: 下课 ends the lesson twice here (the room closes for
 * everyone, then this page leaves), and the duration is taken once, from the lesson's start to now.
 */
function showEnded(st) {
  if (endedShown) return;
  endedShown = true;
  $("banner").hidden = true;
  $("classroom").hidden = true;
  $("ended").hidden = false;
  const failed = st.state === "failed";
  $("ended-title").textContent = failed ? "无法进入课堂" : "本节课已结束";
  const ms = startedAt === null ? NaN : Date.now() - startedAt;
  $("ended-duration").hidden = failed || !Number.isFinite(ms) || ms < 0;
  $("ended-duration").textContent = `上课时长 ${fmtDuration(ms)}`;
  $("ended-note").textContent = failed ? (st.message || "") : st.reason === "room_closed" ? "课堂已关闭，接收课堂已一同退出。"
    : st.reason === "client_left" ? "您已离开课堂。" : (st.message || "");
  startedAt = null;
  for (const a of document.querySelectorAll("#audio-sinks audio")) a.remove();
}

// ------------------------------------------------------------------ 同屏批注: drawing over the shared screen

/** The toolbar over the shared screen: a tool (click again: stop drawing), a colour, undo, clear. */
function annotateBar(lc) {
  const board = new Board($("screen-video"));
  window.sankeBoard = board; // for the browser tests
  lc.on("message", (m) => { if (m.type === "annotation") board.apply(m); });
  const pick = { tool: null, color: COLORS[0] };
  const annotate = (body) => lc.request({ type: "annotate", ...body }).catch((e) => toast(e.message || String(e), "error"));
  enableDrawing(board, {
    tool: () => pick.tool, color: () => pick.color,
    send: (stroke) => annotate({ action: "stroke", stroke }),
    askText: async () => window.prompt("批注文字") || "",
  });
  const bar = $("annotate-bar");
  const render = () => {
    board.canvas.classList.toggle("drawing", !!pick.tool);
    fill(bar,
      ...Object.entries(TOOLS).map(([t, name]) => el("button", { type: "button", class: `btn btn-sm${pick.tool === t ? " active" : ""}`,
        dataset: { tool: t }, "aria-pressed": String(pick.tool === t),
        onclick: () => { pick.tool = pick.tool === t ? null : t; render(); } }, name)),
      ...COLORS.map((c) => el("button", { type: "button", class: `swatch${pick.color === c ? " active" : ""}`, title: c,
        dataset: { color: c }, style: `background:${c}`, "aria-label": `颜色 ${c}`,
        onclick: () => { pick.color = c; render(); } })),
      el("button", { type: "button", class: "btn btn-sm", dataset: { action: "undo" }, onclick: () => annotate({ action: "undo" }) }, "撤销"),
      el("button", { type: "button", class: "btn btn-sm", dataset: { action: "clear" }, onclick: () => annotate({ action: "clear" }) }, "清屏"));
  };
  render();
}
