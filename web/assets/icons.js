// SanKe's icons: SVG symbols shipped in /assets/icons.svg (no emoji, no icon font, no CDN), so a
// classroom PC without an emoji font still shows every control. One way to draw an icon:
//   static HTML:  <svg class="icon" aria-hidden="true"><use href="/assets/icons.svg#mic"/></svg>
//   scripts:      icon("mic"), or label(button, "mic", "关闭麦克风") to set an icon and a text.

const SVG_NS = "http://www.w3.org/2000/svg";
const SPRITE = "/assets/icons.svg";

/** The icon `name` (a symbol id in icons.svg) as an inline <svg class="icon">. */
export function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  svg.dataset.icon = name;
  const use = document.createElementNS(SVG_NS, "use");
  use.setAttribute("href", `${SPRITE}#${name}`);
  svg.appendChild(use);
  return svg;
}

/** Replace `node`'s content with the icon `name` followed by `text`. */
export function label(node, name, text) {
  node.replaceChildren(icon(name), document.createTextNode(text ? ` ${text}` : ""));
  return node;
}
