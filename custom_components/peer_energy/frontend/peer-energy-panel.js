// Peer Energy market view: a sidebar panel of Home Assistant.
//
// A plain ES module web component (no build step, no external resources). Home Assistant
// sets the `hass`, `narrow`, `route` and `panel` properties. The data comes from the
// integration's websocket command `peer_energy/market` (see docs/market_view.md); the
// reason texts and section labels come from the integration's translations
// (`frontend/get_translations`, category "entity"), so the panel speaks the user's
// language where a translation exists. All text is inserted with textContent (never as
// HTML); styles use Home Assistant's theme variables.

const DOMAIN = "peer_energy";
const REFRESH_MS = 15000;
const TR = `component.${DOMAIN}.entity.sensor.`;
// Reason parameters that are prices (integer minor currency units per kWh).
const PRICE_PARAMS = new Set(["price", "expected", "mean", "spread", "threshold", "floor", "limit"]);

const STYLE = `
:host {
  display: block;
  min-height: 100%;
  background: var(--primary-background-color);
  color: var(--primary-text-color);
  font-family: var(--paper-font-body1_-_font-family, var(--ha-font-family-body, Roboto, sans-serif));
}
.toolbar {
  display: flex;
  align-items: center;
  height: var(--header-height, 56px);
  padding: 0 12px;
  box-sizing: border-box;
  background: var(--app-header-background-color, var(--primary-color));
  color: var(--app-header-text-color, var(--text-primary-color));
  font-size: 20px;
  gap: 8px;
}
.toolbar .title { flex: 1; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.toolbar .sub { font-size: 14px; opacity: 0.8; }
.content {
  padding: 16px;
  display: grid;
  grid-template-columns: repeat(auto-fit, minmax(320px, 1fr));
  gap: 16px;
  max-width: 1400px;
  margin: 0 auto;
  box-sizing: border-box;
}
.narrow .content { padding: 8px; gap: 8px; grid-template-columns: 1fr; }
.card {
  background: var(--ha-card-background, var(--card-background-color));
  border-radius: var(--ha-card-border-radius, 12px);
  border: var(--ha-card-border-width, 1px) solid var(--ha-card-border-color, var(--divider-color));
  box-shadow: var(--ha-card-box-shadow, none);
  padding: 16px;
  min-width: 0;
}
.card.wide { grid-column: 1 / -1; }
h2 { margin: 0 0 12px; font-size: 18px; font-weight: 500; }
h3 { margin: 12px 0 6px; font-size: 15px; font-weight: 500; }
.kv { display: grid; grid-template-columns: auto 1fr; gap: 4px 12px; align-items: baseline; }
.kv .k { color: var(--secondary-text-color); }
.kv .v { text-align: right; font-variant-numeric: tabular-nums; }
.big { font-size: 28px; font-weight: 400; }
.muted { color: var(--secondary-text-color); font-size: 13px; }
.badge {
  display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  background: var(--secondary-background-color); color: var(--primary-text-color);
}
.badge.void { background: var(--error-color); color: var(--text-primary-color, #fff); }
.badge.clean { background: var(--success-color, #43a047); color: var(--text-primary-color, #fff); }
.badge.local { background: var(--info-color, #039be5); color: var(--text-primary-color, #fff); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { padding: 6px 8px; text-align: left; border-bottom: 1px solid var(--divider-color); }
th { color: var(--secondary-text-color); font-weight: 500; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.void td { color: var(--secondary-text-color); font-style: italic; }
.reason { font-weight: 500; }
.params { color: var(--secondary-text-color); font-size: 12px; }
.pos { color: var(--success-color, #43a047); }
.neg { color: var(--error-color, #db4437); }
.error { color: var(--error-color); padding: 16px; }
svg { width: 100%; height: auto; display: block; }
svg text { fill: var(--secondary-text-color); font-size: 10px; }
svg .axis { stroke: var(--divider-color); }
svg .price-line { fill: none; stroke: var(--primary-color); stroke-width: 2; }
svg .bought { fill: var(--success-color, #43a047); }
svg .sold { fill: var(--warning-color, #ffa600); }
svg .void-band { fill: var(--error-color, #db4437); opacity: 0.25; }
.legend { display: flex; gap: 12px; flex-wrap: wrap; font-size: 12px; color: var(--secondary-text-color); }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: middle; }
details summary { cursor: pointer; color: var(--primary-color); margin-top: 8px; }
a { color: var(--primary-color); cursor: pointer; text-decoration: none; }
`;

// --- small DOM helpers (text only, never HTML) ---------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  append(node, children);
  return node;
}

// --- formatting -----------------------------------------------------------------------------

function fmtNumber(hass, value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const locale = hass?.locale?.language || hass?.language || undefined;
  try {
    return Number(value).toLocaleString(locale, {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
  } catch (_err) {
    return Number(value).toFixed(digits);
  }
}

function fmtTime(hass, iso, withDay) {
  if (!iso) return "—";
  const date = new Date(iso);
  const locale = hass?.locale?.language || hass?.language || undefined;
  const options = { hour: "2-digit", minute: "2-digit" };
  if (withDay) Object.assign(options, { weekday: "short" });
  try {
    const zone = hass?.locale?.time_zone === "server" ? hass?.config?.time_zone : undefined;
    return date.toLocaleTimeString(locale, zone ? { ...options, timeZone: zone } : options);
  } catch (_err) {
    return date.toISOString().slice(11, 16);
  }
}

function fmtWh(hass, wh) {
  if (wh === null || wh === undefined) return "—";
  if (Math.abs(wh) >= 10000) return `${fmtNumber(hass, wh / 1000, 1)} kWh`;
  return `${fmtNumber(hass, wh, 0)} Wh`;
}

// A scrolling table: ``head`` lists the header cells (a string, or [text, attributes]).
function scrollTable(head, body) {
  const cells = head.map((h) => (Array.isArray(h) ? el("th", h[1], h[0]) : el("th", {}, h)));
  return el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ...cells)), body));
}

// The first cells of a trade or settlement row: slot, direction, counterparty.
function partyCells(hass, item) {
  return [
    el("td", {}, fmtTime(hass, item.slot_start, true)),
    el("td", {}, item.role === "seller" ? "sold to" : "bought from"),
    el("td", {}, el("code", {}, item.counterparty)),
  ];
}

function signClass(value) {
  if (!value) return "";
  return value > 0 ? "pos" : "neg";
}

// --- the panel ------------------------------------------------------------------------------

class PeerEnergyPanel extends HTMLElement {
  constructor() {
    super();
    this._hass = null;
    this._narrow = false;
    this._data = null;
    this._error = null;
    this._texts = {};
    this._textsLanguage = null;
    this._watched = [];
    this._timer = null;
    this._pending = null;
    this._loading = false;
    this._historyOpen = false;
    this.attachShadow({ mode: "open" });
  }

  set hass(hass) {
    const old = this._hass;
    this._hass = hass;
    if (this._menu) this._menu.hass = hass;
    if (!old) {
      this._load();
      return;
    }
    if (hass.language !== this._textsLanguage) this._loadTexts();
    // A market entity changed (a slot cleared, an allocation or reason moved): refresh soon.
    if (this._watched.some((id) => old.states[id] !== hass.states[id])) this._refreshSoon();
  }

  get hass() {
    return this._hass;
  }

  set narrow(value) {
    this._narrow = Boolean(value);
    if (this._menu) this._menu.narrow = this._narrow;
    this._render();
  }

  get narrow() {
    return this._narrow;
  }

  set panel(value) {
    this._panel = value;
  }

  connectedCallback() {
    if (!this._timer) this._timer = setInterval(() => this._load(), REFRESH_MS);
    if (this._hass) this._load();
  }

  disconnectedCallback() {
    clearInterval(this._timer);
    this._timer = null;
    clearTimeout(this._pending);
    this._pending = null;
  }

  _refreshSoon() {
    if (this._pending) return;
    this._pending = setTimeout(() => {
      this._pending = null;
      this._load();
    }, 500);
  }

  async _loadTexts() {
    if (!this._hass) return;
    const language = this._hass.language || "en";
    this._textsLanguage = language;
    try {
      const result = await this._hass.callWS({
        type: "frontend/get_translations",
        language,
        category: "entity",
        integration: [DOMAIN],
      });
      this._texts = (result && result.resources) || {};
    } catch (_err) {
      this._texts = {};
    }
    this._render();
  }

  async _load() {
    if (!this._hass || this._loading) return;
    if (this._textsLanguage === null) this._loadTexts();
    this._loading = true;
    try {
      const message = { type: `${DOMAIN}/market` };
      const entryId = this._panel?.config?.entry_id;
      if (entryId) message.entry_id = entryId;
      this._data = await this._hass.callWS(message);
      this._watched = this._data.entities || [];
      this._error = null;
    } catch (err) {
      this._error = (err && (err.message || err.code)) || String(err);
    } finally {
      this._loading = false;
    }
    this._render();
  }

  // A translated text of the integration's sensors, else the English fallback.
  _t(key, fallback) {
    const text = this._texts[TR + key];
    return typeof text === "string" && text ? text : fallback;
  }

  _reasonText(code) {
    return this._t(`market_reason.state.${code}`, this._t("market_reason.state.other", code));
  }

  _moreInfo(entityId) {
    this.dispatchEvent(
      new CustomEvent("hass-more-info", { detail: { entityId }, bubbles: true, composed: true })
    );
  }

  _price(value) {
    const data = this._data;
    if (value === null || value === undefined) return "—";
    return `${fmtNumber(this._hass, value, 3)} ${data.currency}/kWh`;
  }

  // Money in the currency's digits; amounts below one unit with two more (a slot's trade
  // is often a fraction of a cent), so that they do not show as 0.00.
  _money(value) {
    if (value === null || value === undefined) return "—";
    const digits = this._data.price_digits ?? 2;
    const shown = value !== 0 && Math.abs(value) < 1 ? digits + 2 : digits;
    return `${fmtNumber(this._hass, value, shown)} ${this._data.currency}`;
  }

  // --- rendering ----------------------------------------------------------------------------

  _render() {
    const root = this.shadowRoot;
    const data = this._data;
    const hass = this._hass;
    if (!this._menu) {
      this._menu = document.createElement("ha-menu-button");
    }
    this._menu.hass = hass;
    this._menu.narrow = this._narrow;
    const title = el("div", { class: "title" }, "Peer Energy");
    if (data) {
      append(title, [" ", el("span", { class: "sub" }, data.home_name)]);
    }
    const page = el(
      "div",
      { class: this._narrow ? "narrow" : "" },
      el("div", { class: "toolbar" }, this._menu, title)
    );
    if (this._error && !data) {
      page.append(el("div", { class: "error" }, `Market view unavailable: ${this._error}`));
    } else if (!data) {
      page.append(el("div", { class: "muted", style: "padding:16px" }, "Loading…"));
    } else {
      page.append(
        el(
          "div",
          { class: "content" },
          this._slotCard(data.current, "Running slot"),
          this._slotCard(data.next, "Next slot"),
          this._historyCard(data),
          this._tradesCard(data),
          this._creditCard(data),
          this._communityCard(data)
        )
      );
      if (this._error) {
        page.append(el("div", { class: "error" }, `Last refresh failed: ${this._error}`));
      }
    }
    const style = el("style");
    style.textContent = STYLE;
    root.replaceChildren(style, page);
  }

  _status(slot) {
    const labels = {
      open: "orders open",
      unknown: "no plan",
      void: "void: grid only",
      local: "home only",
      cleared: "cleared",
    };
    const cls = slot.status === "void" ? "badge void" : slot.status === "local" ? "badge local" : "badge";
    return el("span", { class: cls }, labels[slot.status] || slot.status);
  }

  _slotCard(slot, heading) {
    const hass = this._hass;
    const card = el("div", { class: "card" });
    const when = `${fmtTime(hass, slot.slot_start)}–${fmtTime(hass, slot.slot_end)}`;
    card.append(el("h2", {}, heading, " · ", when, " ", this._status(slot)));
    const out = slot.outcome;
    const kv = el("div", { class: "kv" });
    const row = (k, v, cls) => append(kv, [el("div", { class: "k" }, k), el("div", { class: `v ${cls || ""}` }, v)]);
    if (out) {
      row(this._t("clearing_price.name", "Clearing price"), el("span", { class: "big" }, this._price(out.price.value)));
      if (out.clean_price.value !== null) row("Clean price", this._price(out.clean_price.value));
      if (out.own_price.value !== null) row("Own price", this._price(out.own_price.value));
      row(this._t("net_position.name", "Net position"), fmtWh(hass, out.position_wh), signClass(-out.position_wh));
      if (out.bought_wh) row(this._t("energy_bought_peers.name", "Bought from peers"), `${fmtWh(hass, out.bought_wh)} · ${this._money(-out.paid)}`);
      if (out.sold_wh) row(this._t("energy_sold_peers.name", "Sold to peers"), `${fmtWh(hass, out.sold_wh)} · ${this._money(out.received)}`);
      if (out.void) row("Void", out.void_reason || "—", "neg");
    } else {
      row("Gate closure", fmtTime(hass, slot.gate_closure));
    }
    if (slot.order) {
      const side = slot.order.side === "sell" ? "sell" : "buy";
      row("Home order", `${side} ${fmtWh(hass, slot.order.energy_wh)}${slot.order.clean ? " (clean)" : ""}`);
    } else {
      row("Home order", "—");
    }
    if (slot.import_price.value !== null) {
      row("Grid import / feed-in", `${this._price(slot.import_price.value)} / ${this._price(slot.feed_in_tariff.value)}`);
    }
    card.append(kv);
    card.append(el("h3", {}, "Assets"));
    card.append(this._assetTable(slot));
    return card;
  }

  _assetTable(slot) {
    const hass = this._hass;
    const body = el("tbody");
    for (const asset of slot.assets) {
      const alloc = asset.allocation;
      const name = asset.name || this._assetLabel(asset);
      const reason = asset.reason;
      const reasonCell = el("td");
      if (reason) {
        const text = this._reasonText(reason.code);
        reasonCell.append(
          asset.reason_entity_id
            ? el("a", { class: "reason", onclick: () => this._moreInfo(asset.reason_entity_id) }, text)
            : el("span", { class: "reason" }, text)
        );
        const params = Object.entries(reason.params || {});
        if (params.length) {
          reasonCell.append(el("div", { class: "params" }, params.map(([k, v]) => this._param(k, v)).join(" · ")));
        }
      } else {
        reasonCell.append("—");
      }
      for (const action of asset.actions || []) {
        const state = action.error ? `failed: ${action.error}` : action.applied ? "done" : "advice";
        reasonCell.append(el("div", { class: "params" }, `${action.call} (${state})`));
      }
      const order = asset.order_wh;
      body.append(
        el(
          "tr",
          {},
          el("td", {}, name),
          el("td", { class: "n" }, order === null ? "—" : fmtWh(hass, order)),
          el("td", { class: `n ${alloc ? signClass(alloc.energy_wh) : ""}` }, alloc ? fmtWh(hass, alloc.energy_wh) : "—"),
          el("td", { class: "n" }, alloc ? fmtWh(hass, alloc.market_wh) : "—"),
          reasonCell
        )
      );
    }
    return scrollTable(
      [
        "Asset",
        [this._t("market_order.name", "Order"), { class: "n", title: "positive buys, negative offers" }],
        [this._t("allocation.name", "Allocation"), { class: "n" }],
        ["Peers", { class: "n", title: "with neighbours" }],
        this._t("market_reason.name", "Reason"),
      ],
      body
    );
  }

  // A reason parameter for people: prices (integer minor units per kWh) in the currency,
  // energy in Wh, shares in %, durations in minutes; anything else as it is.
  _param(key, value) {
    const hass = this._hass;
    if (typeof value !== "number") return `${key}: ${value}`;
    if (PRICE_PARAMS.has(key)) {
      const digits = this._data.price_digits ?? 2;
      return `${key}: ${fmtNumber(hass, value / 10 ** digits, digits + 1)} ${this._data.currency}/kWh`;
    }
    if (key.endsWith("_wh")) return `${key.slice(0, -3)}: ${fmtWh(hass, value)}`;
    if (key.endsWith("_pct")) return `${key.slice(0, -4)}: ${value} %`;
    if (key.endsWith("_s")) return `${key.slice(0, -2)}: ${fmtNumber(hass, value / 60, 0)} min`;
    return `${key}: ${value}`;
  }

  _assetLabel(asset) {
    if (asset.id === "base_load") return "Base load";
    if (asset.id.startsWith("manual")) return `Manual order ${asset.id.split("_").pop()}`;
    return asset.id;
  }

  _historyCard(data) {
    const hass = this._hass;
    const card = el("div", { class: "card wide" }, el("h2", {}, "Last 24 hours"));
    const rows = data.history;
    if (!rows.length) {
      card.append(el("div", { class: "muted" }, "No slots cleared yet."));
      return card;
    }
    card.append(this._chart(rows));
    card.append(
      el(
        "div",
        { class: "legend" },
        el("span", {}, el("span", { class: "sw", style: "background:var(--primary-color)" }), "price"),
        el("span", {}, el("span", { class: "sw", style: "background:var(--success-color, #43a047)" }), "bought Wh"),
        el("span", {}, el("span", { class: "sw", style: "background:var(--warning-color, #ffa600)" }), "sold Wh"),
        el("span", {}, el("span", { class: "sw", style: "background:var(--error-color, #db4437);opacity:.25" }), "void slot")
      )
    );
    const body = el("tbody");
    for (const row of [...rows].reverse()) {
      body.append(
        el(
          "tr",
          { class: row.void ? "void" : "" },
          el("td", {}, fmtTime(hass, row.slot_start, true)),
          el("td", { class: "n" }, row.price === null ? "—" : fmtNumber(hass, row.price, 3)),
          el("td", { class: "n" }, row.clean_price === null ? "—" : fmtNumber(hass, row.clean_price, 3)),
          el("td", { class: "n" }, row.bought_wh === null ? "—" : fmtNumber(hass, row.bought_wh, 0)),
          el("td", { class: "n" }, row.sold_wh === null ? "—" : fmtNumber(hass, row.sold_wh, 0)),
          el("td", {}, row.void ? `void (${row.void_reason || "?"})` : row.local ? "home only" : row.local === false ? "community" : "")
        )
      );
    }
    card.append(
      el(
        "details",
        { open: this._historyOpen, ontoggle: (ev) => (this._historyOpen = ev.target.open) },
        el("summary", {}, `Table (${rows.length} slots)`),
        scrollTable(
          [
            "Slot",
            [`Price ${data.currency}/kWh`, { class: "n" }],
            ["Clean", { class: "n" }],
            ["Bought Wh", { class: "n" }],
            ["Sold Wh", { class: "n" }],
            "",
          ],
          body
        )
      )
    );
    return card;
  }

  _chart(rows) {
    const hass = this._hass;
    const width = 720;
    const priceH = 110;
    const energyH = 70;
    const left = 44;
    const right = 8;
    const top = 8;
    const gap = 16;
    const height = top + priceH + gap + energyH + 18;
    const start = Date.parse(rows[0].slot_start);
    const end = Date.parse(rows[rows.length - 1].slot_start);
    const slotMs = (this._data.slot_seconds || 900) * 1000;
    const span = Math.max(end - start + slotMs, slotMs);
    const plotW = width - left - right;
    const x = (iso) => left + ((Date.parse(iso) - start) / span) * plotW;
    const barW = Math.max((slotMs / span) * plotW - 1, 0.5);
    const prices = rows.map((r) => r.price).filter((p) => p !== null);
    let pMin = prices.length ? Math.min(...prices) : 0;
    let pMax = prices.length ? Math.max(...prices) : 1;
    if (pMax === pMin) {
      pMax += 0.01;
      pMin = Math.max(0, pMin - 0.01);
    }
    const py = (p) => top + priceH - ((p - pMin) / (pMax - pMin)) * priceH;
    const eMax = Math.max(1, ...rows.map((r) => Math.max(r.bought_wh || 0, r.sold_wh || 0)));
    const eMid = top + priceH + gap + energyH / 2;
    const ey = (wh) => (wh / eMax) * (energyH / 2);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "price and energy per slot" });
    for (const row of rows) {
      if (row.void) {
        chart.append(svg("rect", { x: x(row.slot_start), y: top, width: barW, height: priceH + gap + energyH, class: "void-band" }));
      }
    }
    chart.append(svg("line", { x1: left, x2: width - right, y1: top + priceH, y2: top + priceH, class: "axis" }));
    chart.append(svg("line", { x1: left, x2: width - right, y1: eMid, y2: eMid, class: "axis" }));
    chart.append(svg("text", { x: 2, y: top + 8 }, fmtNumber(hass, pMax, 3)));
    chart.append(svg("text", { x: 2, y: top + priceH }, fmtNumber(hass, pMin, 3)));
    chart.append(svg("text", { x: 2, y: eMid - energyH / 2 + 8 }, `+${fmtNumber(hass, eMax, 0)}`));
    chart.append(svg("text", { x: 2, y: eMid + energyH / 2 }, `-${fmtNumber(hass, eMax, 0)}`));
    let path = "";
    let pen = false;
    for (const row of rows) {
      if (row.price === null) {
        pen = false;
        continue;
      }
      const px = x(row.slot_start) + barW / 2;
      path += `${pen ? "L" : "M"}${px.toFixed(1)} ${py(row.price).toFixed(1)} `;
      pen = true;
    }
    if (path) {
      chart.append(svg("path", { d: path.trim(), class: "price-line" }));
    }
    for (const row of rows) {
      const bx = x(row.slot_start);
      if (row.bought_wh) {
        chart.append(svg("rect", { x: bx, y: eMid - ey(row.bought_wh), width: barW, height: ey(row.bought_wh), class: "bought" }, svg("title", {}, `${fmtTime(hass, row.slot_start)} bought ${row.bought_wh} Wh`)));
      }
      if (row.sold_wh) {
        chart.append(svg("rect", { x: bx, y: eMid, width: barW, height: ey(row.sold_wh), class: "sold" }, svg("title", {}, `${fmtTime(hass, row.slot_start)} sold ${row.sold_wh} Wh`)));
      }
    }
    chart.append(svg("text", { x: left, y: height - 4 }, fmtTime(hass, rows[0].slot_start, true)));
    chart.append(svg("text", { x: width - right, y: height - 4, "text-anchor": "end" }, fmtTime(hass, rows[rows.length - 1].slot_start, true)));
    return chart;
  }

  _tradesCard(data) {
    const hass = this._hass;
    const card = el("div", { class: "card wide" }, el("h2", {}, "Trades with neighbours"));
    if (!data.trades.length) {
      card.append(el("div", { class: "muted" }, "No trades with neighbours in the last 24 hours."));
    } else {
      const body = el("tbody");
      for (const trade of data.trades) {
        body.append(
          el(
            "tr",
            {},
            ...partyCells(hass, trade),
            el("td", { class: "n" }, fmtWh(hass, trade.energy_wh)),
            el("td", { class: "n" }, fmtNumber(hass, trade.price, 3)),
            el("td", { class: `n ${signClass(trade.amount)}` }, this._money(trade.amount)),
            el("td", {}, trade.clean ? el("span", { class: "badge clean" }, "clean") : "")
          )
        );
      }
      card.append(
        scrollTable(
          [
            "Slot",
            "",
            "Neighbour",
            ["Energy", { class: "n" }],
            [`Price ${data.currency}/kWh`, { class: "n" }],
            ["Amount", { class: "n" }],
            "",
          ],
          body
        )
      );
    }
    if (data.settlements.length) {
      card.append(el("h3", {}, "Delivery settlements"));
      const body = el("tbody");
      for (const s of data.settlements) {
        body.append(
          el(
            "tr",
            {},
            ...partyCells(hass, s),
            el("td", { class: "n" }, fmtWh(hass, s.energy_wh)),
            el("td", { class: "n" }, fmtWh(hass, s.delivered_wh)),
            el("td", { class: `n ${s.shortfall_wh ? "neg" : ""}` }, fmtWh(hass, s.shortfall_wh)),
            el("td", { class: `n ${signClass(s.payment)}` }, this._money(s.payment)),
            el("td", {}, s.disputed ? el("span", { class: "badge void" }, "disputed") : "")
          )
        );
      }
      card.append(
        scrollTable(
          [
            "Slot",
            "",
            "Neighbour",
            ["Traded", { class: "n" }],
            ["Delivered", { class: "n" }],
            ["Shortfall", { class: "n" }],
            ["Payment", { class: "n" }],
            "",
          ],
          body
        )
      );
    }
    return card;
  }

  _creditCard(data) {
    const hass = this._hass;
    const card = el("div", { class: "card" }, el("h2", {}, "Credit"));
    const kv = el("div", { class: "kv" });
    const row = (k, v, cls) => append(kv, [el("div", { class: "k" }, k), el("div", { class: `v ${cls || ""}` }, v)]);
    if (data.credit) {
      row(this._t("credit_balance.name", "Credit balance"), el("span", { class: "big" }, this._money(data.credit.balance)), signClass(data.credit.balance));
      row("Credit limit", this._money(-data.credit.limit));
    } else {
      row(this._t("credit_balance.name", "Credit balance"), "—");
    }
    row(this._t("credit_earned.name", "Earned"), this._money(data.totals.earned), "pos");
    row(this._t("credit_spent.name", "Spent"), this._money(data.totals.spent), "neg");
    row(this._t("energy_bought_peers.name", "Bought from peers"), fmtWh(hass, data.totals.bought_wh));
    row(this._t("energy_sold_peers.name", "Sold to peers"), fmtWh(hass, data.totals.sold_wh));
    card.append(kv);
    return card;
  }

  _communityCard(data) {
    const hass = this._hass;
    const community = data.community;
    const card = el("div", { class: "card" }, el("h2", {}, community ? community.name || "Community" : "Community"));
    const kv = el("div", { class: "kv" });
    const row = (k, v) => append(kv, [el("div", { class: "k" }, k), el("div", { class: "v" }, v)]);
    if (!community) {
      card.append(el("div", { class: "muted" }, "This home is in no community: its assets trade with each other and the grid only."));
    } else {
      row(this._t("peers_online.name", "Peers online"), `${community.peers_online} / ${Math.max(community.members - 1, 0)}`);
      row("Members", String(community.members));
    }
    row("This home", el("code", {}, data.member_id));
    row("Control mode", data.control_mode);
    row("Slot length", `${Math.round(data.slot_seconds / 60)} min`);
    const own = data.reputation.own;
    row(this._t("reputation.name", "Reputation"), own === null ? "—" : `${fmtNumber(hass, own, 1)} %`);
    card.append(kv);
    if (data.reputation.peers.length) {
      card.append(el("h3", {}, "Neighbours' reputation"));
      const body = el("tbody");
      for (const peer of data.reputation.peers) {
        body.append(el("tr", {}, el("td", {}, el("code", {}, peer.member)), el("td", { class: "n" }, `${fmtNumber(hass, peer.score, 1)} %`)));
      }
      card.append(el("table", {}, body));
    }
    return card;
  }
}

if (!customElements.get("peer-energy-panel")) {
  customElements.define("peer-energy-panel", PeerEnergyPanel);
}
