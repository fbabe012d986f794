// Render the market view panel in node with a minimal DOM stand-in (no browser needed).
//
// Usage: node tests/market_view_render.mjs PANEL_JS VIEW_JSON TRANSLATIONS_JSON [LANGUAGE]
// Loads the panel module, gives it a fake `hass` whose callWS answers `peer_energy/market`
// with VIEW_JSON and `frontend/get_translations` with TRANSLATIONS_JSON (the `resources`
// object Home Assistant would send), serves the panel's own texts (fetch of
// `translations/<lang>.json` next to the module) from disk, waits for the render and
// prints the panel's text content (one line per element with text) to stdout, then a line
// `SERIES name=marks,...` with the chart's series. Any
// exception makes node exit non-zero. Used by tests/test_market_view.py when node exists.

import { readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

class FakeNode {
  constructor(tag) {
    this.tagName = tag;
    this.children = [];
    this.attributes = {};
    this.listeners = {};
    this.className = "";
    this._text = null;
  }
  setAttribute(key, value) {
    if (typeof value !== "string") throw new Error(`attribute ${key} is not a string`);
    this.attributes[key] = value;
  }
  addEventListener(type, fn) {
    (this.listeners[type] ||= []).push(fn);
  }
  append(...nodes) {
    // As the DOM's append: nodes, and strings as text nodes; anything else is a bug.
    for (const node of nodes) {
      if (typeof node === "string") this.children.push(new FakeText(node));
      else if (node instanceof FakeNode) this.children.push(node);
      else throw new Error(`append of ${typeof node}`);
    }
  }
  replaceChildren(...nodes) {
    this.children = [];
    this.append(...nodes);
  }
  set textContent(value) {
    this._text = String(value);
    this.children = [];
  }
  get textContent() {
    if (this._text !== null) return this._text;
    return this.children.map((c) => c.textContent).join("");
  }
  dispatchEvent(_event) {
    return true;
  }
}

class FakeText extends FakeNode {
  constructor(text) {
    super("#text");
    this._text = text;
  }
}

globalThis.Node = FakeNode;
globalThis.HTMLElement = class extends FakeNode {
  constructor() {
    super("peer-energy-panel");
  }
  attachShadow() {
    this.shadowRoot = new FakeNode("#shadow");
    return this.shadowRoot;
  }
};
globalThis.CustomEvent = class {
  constructor(type, init) {
    this.type = type;
    this.detail = init?.detail;
  }
};
const registry = new Map();
globalThis.customElements = {
  define: (name, cls) => registry.set(name, cls),
  get: (name) => registry.get(name),
};
globalThis.document = {
  createElement: (tag) => new FakeNode(tag),
  createElementNS: (_ns, tag) => new FakeNode(tag),
  createTextNode: (text) => new FakeText(text),
};

const fetched = [];
globalThis.fetch = async (url) => {
  const path = fileURLToPath(new URL(String(url)).href.split("?")[0]);
  fetched.push(path.split("/").slice(-2).join("/"));
  const body = readFileSync(path, "utf-8");
  return { ok: true, status: 200, json: async () => JSON.parse(body) };
};

const [panelPath, viewPath, textsPath, language = "en"] = process.argv.slice(2);
const view = JSON.parse(readFileSync(viewPath, "utf-8"));
const resources = JSON.parse(readFileSync(textsPath, "utf-8"));
await import(pathToFileURL(panelPath).href);
const Panel = customElements.get("peer-energy-panel");
const panel = new Panel();
const calls = [];
panel.hass = {
  language,
  locale: { language, time_zone: "server" },
  config: { time_zone: "UTC" },
  states: {},
  callWS: async (msg) => {
    calls.push(msg.type);
    if (msg.type === "peer_energy/market") {
      // A view {"__error__": {...}} stands for the error result Home Assistant would send.
      if (view.__error__) throw view.__error__;
      return view;
    }
    if (msg.type === "frontend/get_translations") {
      if (msg.category !== "entity" || msg.integration[0] !== "peer_energy") {
        throw new Error("translations of the wrong category or integration");
      }
      return { resources };
    }
    throw new Error(`unexpected command ${msg.type}`);
  },
};
panel.narrow = true;
panel.connectedCallback();
for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setTimeout(resolve, 5));
panel.disconnectedCallback();

const lines = [];
function walk(node) {
  if (node instanceof FakeText || (node._text !== null && node.children.length === 0)) {
    const text = node.textContent.trim();
    if (text && node.tagName !== "style") lines.push(text);
    return;
  }
  for (const child of node.children) walk(child);
}
walk(panel.shadowRoot);
// The chart's series (<g data-series="...">) with how many marks each drew.
const series = [];
function findSeries(node) {
  if (node.attributes && node.attributes["data-series"]) series.push(`${node.attributes["data-series"]}=${node.children.length}`);
  for (const child of node.children || []) findSeries(child);
}
findSeries(panel.shadowRoot);
lines.push(`SERIES ${series.join(",")}`);
console.log(`CALLS ${[...new Set(calls)].sort().join(",")}`);
console.log(`FETCHED ${[...new Set(fetched)].sort().join(",")}`);
console.log(lines.join("\n"));
