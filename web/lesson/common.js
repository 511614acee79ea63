// Pieces shared by the lesson pages (main.js, receiving.js, student.js): video tiles, audio
// playback, the state banner, the chat panel, countdowns and the link-quality dot.
import { el, fill, fmtTime } from "/assets/api.js";
import { icon } from "/assets/icons.js";

export const QUALITY_LABEL = { excellent: "网络极好", good: "网络良好", poor: "网络较差", lost: "网络中断" };
export const SOURCE_LABEL = { camera: "摄像头", microphone: "麦克风", screen: "屏幕共享" };

/** A quality dot + label element; update with setQuality(node, quality). */
export function qualityDot(quality = null) {
  const node = el("span", { class: "quality", dataset: { quality: quality || "unknown" } }, el("i"), el("span", { class: "q-label" }, ""));
  setQuality(node, quality);
  return node;
}

export function setQuality(node, quality) {
  node.dataset.quality = quality || "unknown";
  node.querySelector(".q-label").textContent = quality ? QUALITY_LABEL[quality] || quality : "网络检测中";
  node.title = node.querySelector(".q-label").textContent;
}

/** Show a MediaStream in a <video> (always muted: sound goes through playAudio). */
export function showVideo(video, stream) {
  if (video.srcObject !== stream) video.srcObject = stream;
  video.muted = true;
  video.playsInline = true;
  video.autoplay = true;
  video.play().catch(() => { /* muted video: plays once data arrives */ });
}

const audioBox = () => document.getElementById("audio-sinks") || document.body.appendChild(el("div", { id: "audio-sinks", hidden: true }));

/** Play a remote audio track; if the browser blocks autoplay, a button asks for one tap. */
export function playAudio(key, track) {
  let audio = document.querySelector(`audio[data-key="${CSS.escape(key)}"]`);
  if (!audio) {
    audio = el("audio", { dataset: { key }, autoplay: true });
    audioBox().appendChild(audio);
  }
  audio.srcObject = new MediaStream([track]);
  audio.play().catch(() => askForSound());
}

export function stopAudio(key) {
  const audio = document.querySelector(`audio[data-key="${CSS.escape(key)}"]`);
  if (audio) { audio.srcObject = null; audio.remove(); }
}

/** The browser refused to play sound before a tap: a button asks for one (it also unmutes a stream's
 *  <video data-sound>, which plays muted meanwhile). */
export function askForSound() {
  if (document.getElementById("sound-unlock")) return;
  const btn = el("button", { id: "sound-unlock", class: "btn btn-primary btn-lg sound-unlock", onclick: () => {
    document.querySelectorAll("#audio-sinks audio").forEach((a) => a.play().catch(() => {}));
    document.querySelectorAll("video[data-sound]").forEach((v) => { v.muted = false; delete v.dataset.sound; v.play().catch(() => {}); });
    btn.remove();
  } }, icon("volume"), " 点击开启声音");
  document.body.appendChild(btn);
}

/** The state banner: text for every LessonClient state, with a retry countdown. */
export function stateText({ state, reason, message, retryInMs, opensAt }) {
  switch (state) {
    case "connecting": return ["info", "正在进入课堂…"];
    case "joined": return null;
    case "waiting": return ["info", opensAt ? `课堂尚未开放，将于 ${fmtTime(opensAt)} 开放，届时自动进入` : "课堂尚未开放，开放后自动进入"];
    case "reconnecting":
      if (reason === "unreachable") return ["warn", `无法连接服务器，${Math.ceil((retryInMs || 0) / 1000)} 秒后重试…`];
      if (reason === "offline") return ["warn", "网络已断开，正在重新连接…"];
      if (reason === "room_moving") return ["info", message || "服务器维护中，课堂正在切换到其他服务器，请稍候…"];
      return ["warn", "网络中断，正在重新连接…"];
    case "closed":
      if (reason === "room_closed") return ["info", "本节课已结束，课堂已关闭"];
      if (reason === "replaced") return ["warn", "同一账号已在其他设备进入课堂，本页已退出"];
      if (reason === "kicked") return ["warn", "已被移出课堂"];
      return ["info", message || "已离开课堂"];
    case "failed":
      if (reason === "token_expired" || reason === "token_invalid") return ["error", "登录或入场凭证已失效，请重新登录"];
      if (reason === "not_allowed") return ["error", message || "当前账号无权进入本节课"];
      if (reason === "lesson_over") return ["info", message || "本节课已结束"];
      return ["error", message || "无法进入课堂"];
    default: return null;
  }
}

export function renderBanner(node, st) {
  const t = stateText(st);
  node.hidden = !t;
  if (!t) return;
  node.className = `lesson-banner banner-${t[0]}`;
  node.dataset.state = st.state;
  node.textContent = t[1];
}

/** Media permission errors in words. */
export function mediaErrorText(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") return "摄像头或麦克风权限被拒绝：请在浏览器地址栏左侧允许使用摄像头和麦克风，然后刷新页面";
  if (name === "NotFoundError" || name === "OverconstrainedError") return "未找到摄像头或麦克风，请检查设备连接";
  if (name === "NotReadableError") return "摄像头或麦克风被其他程序占用";
  return `无法打开摄像头或麦克风（${(err && err.message) || err}）`;
}

/** A chat panel bound to a LessonClient: list + input. Returns the root element. */
export function chatPanel(lc) {
  const list = el("ol", { class: "chat-list", "aria-live": "polite" });
  const input = el("input", { class: "chat-input", maxlength: 500, placeholder: "输入消息，回车发送", "aria-label": "聊天消息" });
  const sendBtn = el("button", { class: "btn btn-primary", type: "button", onclick: () => send() }, "发送");
  // One line at a time: the box clears when the server acks the line (everyone has it then), and
  // says so when it is refused or unanswered; text typed meanwhile is kept.
  const send = async () => {
    const text = input.value.trim();
    if (!text || sendBtn.disabled) return;
    sendBtn.disabled = true;
    try {
      await lc.chat(text);
      if (input.value.trim() === text) input.value = "";
    } catch (e) {
      addLine({ from_name: "系统", text: `发送失败：${e.message}`, ts: Date.now() }, true);
    } finally {
      sendBtn.disabled = false;
    }
  };
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") send(); });
  // The room's lines, each shown once: a line is known by its sender, server time and text (the
  // room keeps them as they were sent, also across a move to another node), so the `recent_chat`
  // of every `joined` (first join, rejoin after a failover, a fresh session) only adds the lines
  // this pane has not shown, in the room's order (server time); system lines stay where they are.
  const shown = new Set();
  const lineKey = (m) => `${m.ts}|${m.from_participant_id}|${m.text}`;
  const addLine = (m, system = false) => {
    const t = new Date(m.ts);
    const hhmm = `${String(t.getHours()).padStart(2, "0")}:${String(t.getMinutes()).padStart(2, "0")}`;
    const li = el("li", { class: system ? "chat-system" : "" }, el("b", {}, m.from_name), " ", el("small", { class: "muted" }, hhmm), el("div", {}, m.text));
    if (system) {
      list.appendChild(li);
    } else {
      const key = lineKey(m);
      if (shown.has(key)) return;
      shown.add(key);
      li.dataset.ts = String(m.ts);
      // after the last room line not later than this one (live lines arrive in order: the end)
      let after = null;
      for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
        if (node.dataset.ts !== undefined && Number(node.dataset.ts) <= m.ts) { after = node; break; }
      }
      const first = [...list.children].find((n) => n.dataset.ts !== undefined);
      if (after) after.after(li);
      else if (first) list.insertBefore(li, first);
      else list.appendChild(li);
    }
    list.scrollTop = list.scrollHeight;
  };
  const addRecent = (joined) => { for (const m of (joined && joined.recent_chat) || []) addLine(m); };
  lc.on("chat", (m) => addLine(m));
  lc.on("joined", addRecent);  // `joined` or `resumed` (a reloaded page resumes its session)
  addRecent(lc.joined);
  return el("section", { class: "card chat" }, el("h3", {}, "聊天"), list,
    el("div", { class: "row chat-send" }, input, sendBtn));
}

/** "mm:ss" / "h:mm:ss" of a duration in ms. */
export function fmtDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${two(m)}:${two(r)}`;
}

/** The instant of an API datetime ("2026-09-07T08:00:00+08:00": it carries the timetable zone's offset). */
export function wall(s) { return new Date(s); }

export { el, fill };
