// Peer Energy market view: a sidebar panel of Home Assistant.
//
// A plain ES module web component (no build step, no external resources). Home Assistant
// sets the `hass`, `narrow`, `route` and `panel` properties. The data comes from the
// integration's websocket command `peer_energy/market` (see docs/market_view.md). Texts:
// the reason names come from the integration's entity translations (the Reason sensor's
// states, `frontend/get_translations`), everything else from `translations/<lang>.json`
// next to this file (English, German, Dutch and French; English for other languages).
// All text is inserted with textContent (never as HTML); styles use Home Assistant's theme
// variables; the layout follows the panel's width (CSS container queries), so the same
// page reads on a phone, a tablet and a wide desktop.

const DOMAIN = "peer_energy";
const REFRESH_MS = 15000;
const TR = `component.${DOMAIN}.entity.sensor.`;
const LANGUAGES = ["en", "de", "nl", "fr"];
const BASE_URL = new URL(".", import.meta.url);
const VERSION = new URL(import.meta.url).search;

// How each reason parameter is shown (see PARAM_* texts in the translations). Prices are
// integer minor currency units per kWh; unknown parameters (of a newer engine) are left out.
const PARAM_KINDS = {
  price: "price",
  expected: "price",
  mean: "price",
  threshold: "price",
  floor: "price",
  limit: "price",
  value: "price",
  forecast_wh: "energy",
  own_wh: "energy",
  need_wh: "energy",
  bid_wh: "energy",
  offer_wh: "energy",
  flex_wh: "energy",
  energy_wh: "energy",
  soc_pct: "percent",
  reserve_pct: "percent",
  urgency_pct: "percent",
  delay_used_s: "duration",
  slots_left: "slots",
  missing: "choice",
  void_reason: "choice",
};
// The parameters each reason shows, in this order (the Reason sensor keeps all of them).
const BUY = ["bid_wh", "price"];
const SELL = ["offer_wh", "price"];
const BATTERY = ["soc_pct", "reserve_pct", "expected", "mean", "value"];
const REASON_PARAMS = {
  pv_surplus: ["forecast_wh", "floor"],
  base_load: ["forecast_wh"],
  battery_charge_cheap: BATTERY,
  battery_discharge_dear: BATTERY,
  battery_self_consumption: ["own_wh", ...BATTERY],
  ev_charge: ["need_wh", "slots_left", "urgency_pct"],
  ev_deadline: ["need_wh", "slots_left", "urgency_pct"],
  plug_run: ["expected", "threshold", "delay_used_s", "flex_wh"],
  plug_delay_exhausted: ["expected", "threshold", "delay_used_s", "flex_wh"],
  ev_on_plug_in: ["need_wh"],
  plug_on: ["need_wh"],
  plug_wait: ["expected", "delay_used_s"],
  bought_market: BUY,
  served_internal: BUY,
  grid_fallback: BUY,
  not_served_price: BUY,
  sold_market: SELL,
  used_internal: SELL,
  exported_feed_in: SELL,
  held_back: SELL,
  no_reading: ["missing"],
  slot_void: ["void_reason"],
  manual_order: ["energy_wh", "limit"],
};
const KIND_ICONS = {
  pv: "mdi:solar-power",
  battery: "mdi:home-battery",
  ev_charger: "mdi:ev-station",
  plug: "mdi:power-socket-de",
  grid_meter: "mdi:meter-electric",
  base_load: "mdi:home-lightning-bolt-outline",
  manual: "mdi:hand-coin-outline",
};

const STYLE = `
:host {
  display: block;
  min-height: 100%;
  background: var(--primary-background-color);
  color: var(--primary-text-color);
  font-family: var(--paper-font-body1_-_font-family, var(--ha-font-family-body, Roboto, sans-serif));
  font-size: 14px;
  line-height: 1.4;
}
.toolbar {
  display: flex; align-items: center; gap: 8px;
  height: var(--header-height, 56px); padding: 0 12px; box-sizing: border-box;
  background: var(--app-header-background-color, var(--primary-color));
  color: var(--app-header-text-color, var(--text-primary-color));
  font-size: 20px;
}
.toolbar .title { flex: 1; min-width: 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.toolbar .home { font-size: 14px; opacity: 0.85; margin-left: 6px; }
.page { container-type: inline-size; }
.content {
  padding: 16px; box-sizing: border-box; max-width: 1760px; margin: 0 auto;
  display: grid; gap: 16px; grid-template-columns: minmax(0, 1fr);
}
@container (max-width: 600px) { .content { padding: 8px; gap: 8px; } }
.tiles { display: grid; gap: 12px; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); }
@container (max-width: 600px) {
  .tiles { gap: 8px; }
  .tile { padding: 10px 12px; }
  .tile .value { font-size: 19px; }
  .tile .note { font-size: 12px; }
}
.slots { display: grid; gap: 16px; grid-template-columns: minmax(0, 1fr); }
@container (min-width: 1500px) { .slots { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
.pair { display: grid; gap: 16px; grid-template-columns: minmax(0, 1fr); }
@container (min-width: 900px) { .pair { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
.card {
  background: var(--ha-card-background, var(--card-background-color));
  border-radius: var(--ha-card-border-radius, 12px);
  border: var(--ha-card-border-width, 1px) solid var(--ha-card-border-color, var(--divider-color));
  box-shadow: var(--ha-card-box-shadow, none);
  padding: 16px; min-width: 0; box-sizing: border-box;
  container-type: inline-size;
}
.tile { padding: 12px 16px; }
.tile .label { color: var(--secondary-text-color); font-size: 13px; }
.tile .value { font-size: 24px; margin: 2px 0; font-variant-numeric: tabular-nums; }
.tile .note { color: var(--secondary-text-color); font-size: 13px; }
.tile.future { border-style: dashed; }
h2 { margin: 0 0 4px; font-size: 18px; font-weight: 500; display: flex; flex-wrap: wrap; align-items: center; gap: 4px 8px; }
h3 { margin: 16px 0 6px; font-size: 15px; font-weight: 500; }
.muted { color: var(--secondary-text-color); font-size: 13px; }
.badge {
  display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 400;
  background: var(--secondary-background-color); color: var(--primary-text-color);
}
.badge.void, .badge.warn { background: var(--error-color, #db4437); color: var(--text-primary-color, #fff); }
.badge.clean { background: var(--success-color, #43a047); color: var(--text-primary-color, #fff); }
.badge.community { background: var(--primary-color); color: var(--text-primary-color, #fff); }
.facts { display: grid; gap: 8px 16px; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); margin: 12px 0 4px; }
.fact .k { color: var(--secondary-text-color); font-size: 12px; }
.fact .v { font-variant-numeric: tabular-nums; }
.fact .v.big { font-size: 22px; }
.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.sub { color: var(--secondary-text-color); font-size: 12px; }
.warn-text { color: var(--error-color, #db4437); }
.list { display: grid; margin-top: 8px; }
.row {
  display: grid; gap: 2px 12px; padding: 8px 0; align-items: start;
  border-bottom: 1px solid var(--divider-color);
}
.row:last-child { border-bottom: none; }
.row.head { color: var(--secondary-text-color); font-size: 12px; padding: 4px 0; }
.devices .row { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); grid-template-areas: "dev plan" "why why"; }
.devices .row.head { display: none; }
.devices .c-dev { grid-area: dev; }
.devices .c-plan { grid-area: plan; text-align: right; }
.devices .c-why { grid-area: why; }
.devices .c-res { display: none; }
.devices .row.with-result { grid-template-areas: "dev res" "plan plan" "why why"; }
.devices .row.with-result .c-res { display: block; grid-area: res; text-align: right; }
.devices .row.with-result .c-plan { text-align: left; }
.devices .row.with-result .c-plan .num::before { content: attr(data-label) " "; color: var(--secondary-text-color); }
@container (min-width: 700px) {
  .devices .row, .devices .row.with-result {
    grid-template-columns: minmax(9em, 1.1fr) minmax(8em, 1fr) minmax(8em, 1fr) minmax(14em, 2.6fr);
    grid-template-areas: "dev plan res why";
  }
  .devices .row.head { display: grid; }
  .devices .c-res, .devices .row.with-result .c-res { display: block; grid-area: res; text-align: left; }
  .devices .c-plan, .devices .row.with-result .c-plan { text-align: left; }
  .devices .row.with-result .c-plan .num::before { content: none; }
}
.dev { display: flex; gap: 8px; align-items: flex-start; min-width: 0; }
.dev ha-icon { color: var(--state-icon-color, var(--secondary-text-color)); --mdc-icon-size: 20px; flex: none; }
.dev .name { font-weight: 500; overflow-wrap: anywhere; }
.reason { font-weight: 500; }
a.reason { color: var(--primary-color); cursor: pointer; text-decoration: none; }
.detail { color: var(--secondary-text-color); font-size: 13px; }
.trades .row { grid-template-columns: minmax(0, 1fr) auto; }
.trades .row.head, .trades .wide-only { display: none; }
@container (min-width: 700px) {
  .trades .row { grid-template-columns: minmax(12em, 2fr) minmax(7em, 1fr) minmax(8em, 1fr) minmax(8em, 1fr) minmax(4em, 0.5fr); }
  .trades .row.head { display: grid; }
  .trades .row > .wide-only { display: block; }
  .trades .narrow-only { display: none; }
}
.settlements .row { grid-template-columns: minmax(0, 1fr) auto; }
.settlements .row .why { grid-column: 1 / -1; }
.kv { display: grid; grid-template-columns: minmax(0, auto) minmax(0, 1fr); gap: 4px 12px; align-items: baseline; }
.kv .k { color: var(--secondary-text-color); }
.kv .v { text-align: right; font-variant-numeric: tabular-nums; }
.big { font-size: 28px; }
.explain { margin: 8px 0; }
.error { color: var(--error-color); padding: 16px; }
.chart { width: 100%; }
svg { display: block; overflow: visible; }
svg text { fill: var(--secondary-text-color); font-size: 11px; }
svg .axis { stroke: var(--divider-color); }
svg .grid { stroke: var(--divider-color); stroke-dasharray: 2 3; }
svg .price-line { fill: none; stroke: var(--primary-color); stroke-width: 2; }
svg .price-dot { fill: var(--primary-color); }
svg .bought { fill: var(--success-color, #43a047); }
svg .sold { fill: var(--indigo-color, #3f51b5); }
svg .void-band { fill: var(--error-color, #db4437); opacity: 0.2; }
svg .expected-line { fill: none; stroke: var(--primary-color); stroke-width: 2; stroke-dasharray: 5 3; }
svg .plan-import { fill: var(--energy-grid-consumption-color, #488fc2); opacity: 0.6; }
svg .plan-export { fill: var(--energy-grid-return-color, #8353d1); opacity: 0.6; }
svg .battery-line { fill: none; stroke: var(--energy-battery-out-color, #4db6ac); stroke-width: 2; }
svg .ev-line { fill: none; stroke: var(--orange-color, #ff9800); stroke-width: 2; }
svg .now-line { stroke: var(--primary-text-color); stroke-width: 1; stroke-dasharray: 3 3; opacity: 0.6; }
.legend { display: flex; gap: 12px; flex-wrap: wrap; font-size: 12px; color: var(--secondary-text-color); margin-top: 6px; }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: middle; }
details summary { cursor: pointer; color: var(--primary-color); margin-top: 8px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 4px 8px; text-align: left; border-bottom: 1px solid var(--divider-color); }
th { color: var(--secondary-text-color); font-weight: 500; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; }
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
    if (child === undefined || child === null || child === false || child === "") continue;
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

// "{name}" placeholders of a text filled from ``values``.
function fill(text, values) {
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in values ? String(values[name]) : match));
}

function sum(rows, key) {
  return rows.reduce((total, row) => total + (row[key] || 0), 0);
}

// --- the panel ------------------------------------------------------------------------------

class PeerEnergyPanel extends HTMLElement {
  constructor() {
    super();
    this._hass = null;
    this._narrow = false;
    this._data = null;
    this._error = null;
    this._entityTexts = {};
    this._texts = {};
    this._english = {};
    this._textsLanguage = null;
    this._watched = [];
    this._timer = null;
    this._pending = null;
    this._loading = false;
    this._historyOpen = false;
    this._width = 0;
    this._observer = null;
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
    if (!this._observer && typeof ResizeObserver !== "undefined") {
      // The chart is drawn at the card's real width (its texts keep their size).
      this._observer = new ResizeObserver((entries) => {
        const width = Math.round(entries[0].contentRect.width);
        if (Math.abs(width - this._width) > 8) {
          this._width = width;
          this._render();
        }
      });
      this._observer.observe(this);
    }
    if (this._hass) this._load();
  }

  disconnectedCallback() {
    clearInterval(this._timer);
    this._timer = null;
    clearTimeout(this._pending);
    this._pending = null;
    if (this._observer) this._observer.disconnect();
    this._observer = null;
  }

  _refreshSoon() {
    if (this._pending) return;
    this._pending = setTimeout(() => {
      this._pending = null;
      this._load();
    }, 500);
  }

  // --- texts ----------------------------------------------------------------------------------

  _language() {
    const wanted = (this._hass?.language || "en").toLowerCase();
    if (LANGUAGES.includes(wanted)) return wanted;
    const base = wanted.split("-")[0];
    return LANGUAGES.includes(base) ? base : "en";
  }

  async _fetchTexts(language) {
    const response = await fetch(new URL(`translations/${language}.json${VERSION}`, BASE_URL));
    if (!response.ok) throw new Error(`translations/${language}.json: ${response.status}`);
    return response.json();
  }

  async _loadTexts() {
    if (!this._hass) return;
    const language = this._hass.language || "en";
    this._textsLanguage = language;
    const [entity, english, own] = await Promise.allSettled([
      this._hass.callWS({
        type: "frontend/get_translations",
        language,
        category: "entity",
        integration: [DOMAIN],
      }),
      this._fetchTexts("en"),
      this._language() === "en" ? Promise.resolve(null) : this._fetchTexts(this._language()),
    ]);
    this._entityTexts = entity.status === "fulfilled" ? entity.value?.resources || {} : {};
    this._english = english.status === "fulfilled" ? english.value : {};
    this._texts = own.status === "fulfilled" && own.value ? own.value : this._english;
    this._render();
  }

  // A text of the panel in the user's language (English, then the key, as fallbacks).
  _t(key, values) {
    const text = this._texts[key] ?? this._english[key] ?? key;
    return values ? fill(text, values) : text;
  }

  // A text that depends on a count ("1 slot", "2 slots"): the key's plural form for the
  // count in the user's language (``key.one``, ``key.other``, ...), "other" as fallback.
  _tn(key, count, values) {
    let form = "other";
    try {
      form = new Intl.PluralRules(this._language()).select(count);
    } catch (_err) {
      // an unknown language: the "other" form
    }
    const texts = [this._texts, this._english];
    for (const candidate of [`${key}.${form}`, `${key}.other`]) {
      const text = texts.map((t) => t[candidate]).find((t) => t !== undefined);
      if (text !== undefined) return fill(text, values);
    }
    return this._t(key, values);
  }

  // A translated name or state of the integration's sensors.
  _entityText(key, fallback) {
    const text = this._entityTexts[TR + key];
    return typeof text === "string" && text ? text : fallback;
  }

  _reasonText(code) {
    return this._entityText(`market_reason.state.${code}`, this._entityText("market_reason.state.other", code));
  }

  // --- data -----------------------------------------------------------------------------------

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
      this._error = err || new Error("?"); // worded at render time, in the loaded language
    } finally {
      this._loading = false;
    }
    this._render();
  }

  // A websocket error in the user's language: the integration's errors carry a translation
  // key the panel has a text for; anything else shows Home Assistant's message.
  _errorText(err) {
    const key = err && err.translation_domain === DOMAIN ? err.translation_key : null;
    const text = key ? this._texts[`wserror.${key}`] ?? this._english[`wserror.${key}`] : undefined;
    if (text) return fill(text, err.translation_placeholders || {});
    return (err && (err.message || err.code)) || String(err);
  }

  _moreInfo(entityId) {
    this.dispatchEvent(
      new CustomEvent("hass-more-info", { detail: { entityId }, bubbles: true, composed: true })
    );
  }

  // --- formatting -----------------------------------------------------------------------------

  _locale() {
    return this._hass?.locale?.language || this._hass?.language || undefined;
  }

  _number(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    try {
      return Number(value).toLocaleString(this._locale(), {
        minimumFractionDigits: digits,
        maximumFractionDigits: digits,
      });
    } catch (_err) {
      return Number(value).toFixed(digits);
    }
  }

  _time(iso, withDay) {
    if (!iso) return "—";
    const date = new Date(iso);
    const options = { hour: "2-digit", minute: "2-digit" };
    if (withDay) options.weekday = "short";
    const zone = this._hass?.locale?.time_zone === "server" ? this._hass?.config?.time_zone : undefined;
    try {
      return date.toLocaleTimeString(this._locale(), zone ? { ...options, timeZone: zone } : options);
    } catch (_err) {
      return date.toISOString().slice(11, 16);
    }
  }

  // Energy: Wh below 10 kWh, kWh above (always positive; the words say the direction).
  _energy(wh) {
    if (wh === null || wh === undefined) return "—";
    const size = Math.abs(wh);
    if (size >= 10000) return `${this._number(size / 1000, 1)} kWh`;
    return `${this._number(size, 0)} Wh`;
  }

  _power(watts) {
    const size = Math.abs(watts);
    if (size >= 1000) return `${this._number(size / 1000, 1)} kW`;
    return `${this._number(size, 0)} W`;
  }

  _price(value) {
    if (value === null || value === undefined) return "—";
    return `${this._number(value, 3)} ${this._data.currency}/kWh`;
  }

  // A price in minor units per kWh (reason parameters, steps), shown in the currency.
  _priceMinor(minor) {
    const digits = this._data.price_digits ?? 2;
    return this._price(minor / 10 ** digits);
  }

  // Money in the currency's digits; amounts below one unit with two more (a slot's trade
  // is often a fraction of a cent), so that they do not show as 0.00.
  _money(value) {
    if (value === null || value === undefined) return "—";
    const digits = this._data.price_digits ?? 2;
    const size = Math.abs(value);
    let shown = size !== 0 && size < 1 ? digits + 2 : digits;
    // A tiny amount that is not zero never reads as zero ("0.0000 EUR ... owes your home"):
    // more digits until its first one shows (balances are exact to 1/1000 of a cent).
    while (size !== 0 && shown < 8 && Number(size.toFixed(shown)) === 0) shown += 1;
    return `${this._number(size, shown)} ${this._data.currency}`;
  }

  _signedMoney(value) {
    return `${value < 0 ? "−" : ""}${this._money(value)}`;
  }

  _duration(seconds) {
    const minutes = Math.round(seconds / 60);
    if (minutes < 120) return this._t("unit.minutes", { n: minutes });
    const hours = Math.floor(minutes / 60);
    const rest = minutes % 60;
    return rest ? this._t("unit.hours_minutes", { h: hours, m: rest }) : this._t("unit.hours", { n: hours });
  }

  _neighbour(shortId, name) {
    return name || shortId;
  }

  // --- rendering ------------------------------------------------------------------------------

  _render() {
    const root = this.shadowRoot;
    const data = this._data;
    if (!this._menu) this._menu = document.createElement("ha-menu-button");
    this._menu.hass = this._hass;
    this._menu.narrow = this._narrow;
    const title = el("div", { class: "title" }, "Peer Energy", data ? el("span", { class: "home" }, data.home_name) : null);
    const page = el("div", { class: "page" }, el("div", { class: "toolbar" }, this._menu, title));
    if (!data) {
      page.append(el("div", { class: this._error ? "error" : "muted content" }, this._error ? this._t("error.load", { error: this._errorText(this._error) }) : this._t("loading")));
    } else {
      const content = el(
        "div",
        { class: "content" },
        this._headline(data),
        el("div", { class: "slots" }, this._slotCard(data.current, "running"), this._slotCard(data.next, "next")),
        this._historyCard(data),
        this._tradesCard(data),
        el("div", { class: "pair" }, this._creditCard(data), this._communityCard(data))
      );
      if (this._error) content.append(el("div", { class: "error" }, this._t("error.refresh", { error: this._errorText(this._error) })));
      page.append(content);
    }
    const style = el("style");
    style.textContent = STYLE;
    root.replaceChildren(style, page);
  }

  // --- headline ---------------------------------------------------------------------------------

  _tile(label, value, note, cls) {
    return el("div", { class: `card tile ${cls || ""}` }, el("div", { class: "label" }, label), el("div", { class: "value" }, value), note ? el("div", { class: "note" }, note) : null);
  }

  _headline(data) {
    const tiles = el("div", { class: "tiles" });
    // Savings versus not trading (today, this month, since joining): the websocket field
    // "savings" comes with a later version; the tile shows once it is sent.
    if (data.savings) {
      const saved = data.savings;
      // A loss (delivery settlements can make the savings negative) keeps its sign.
      const signed = (value) => (value === null || value === undefined ? this._money(null) : this._signedMoney(value));
      let note = this._t("savings.note", { month: signed(saved.month?.value), total: signed(saved.since_joining?.value) });
      // Trades a seller delivered short of: their settlements are part of the savings.
      const settled = saved.delivery_settlements;
      if (settled && settled.count > 0) {
        note += ` · ${this._tn("savings.settlements", settled.count, { count: settled.count, amount: this._signedMoney(settled.saving.value) })}`;
      }
      tiles.append(this._tile(this._t("savings.title"), signed(saved.today?.value), note));
    }
    const current = data.current.outcome;
    tiles.append(
      this._tile(
        this._t("tile.price_now"),
        current && current.price.value !== null ? this._price(current.price.value) : "—",
        current ? this._statusText(data.current) : this._t("tile.no_price_yet")
      )
    );
    const next = data.next.outcome;
    tiles.append(
      this._tile(
        this._t("tile.price_next"),
        next && next.price.value !== null ? this._price(next.price.value) : "—",
        next ? this._statusText(data.next) : this._t("tile.known_at", { time: this._time(data.next.gate_closure) })
      )
    );
    const today = this._today(data.history);
    tiles.append(
      this._tile(
        this._t("tile.today"),
        this._t("tile.today_value", { bought: this._energy(today.bought), sold: this._energy(today.sold) }),
        this._t("tile.today_note")
      )
    );
    if (data.credit) {
      tiles.append(this._tile(this._entityText("credit_balance.name", "Credit balance"), this._signedMoney(data.credit.balance), this._balanceWords(data.credit.balance)));
    }
    return tiles;
  }

  // Energy bought and sold with neighbours in today's slots (local midnight onwards).
  _today(history) {
    const midnight = new Date();
    midnight.setHours(0, 0, 0, 0);
    const rows = history.filter((row) => Date.parse(row.slot_start) >= midnight.getTime());
    return { bought: sum(rows, "bought_wh"), sold: sum(rows, "sold_wh") };
  }

  // --- slots ------------------------------------------------------------------------------------

  _statusText(slot) {
    return this._t(`status.${slot.status}`);
  }

  _status(slot) {
    const cls = { void: "badge void", cleared: "badge community" }[slot.status] || "badge";
    return el("span", { class: cls }, this._statusText(slot));
  }

  _fact(label, value, cls) {
    return el("div", { class: "fact" }, el("div", { class: "k" }, label), el("div", { class: `v ${cls || ""}` }, value));
  }

  _slotCard(slot, which) {
    const data = this._data;
    const running = which === "running";
    const card = el("div", { class: "card" });
    const when = `${this._time(slot.slot_start)}–${this._time(slot.slot_end)}`;
    card.append(el("h2", {}, this._t(`slot.${which}`), el("span", { class: "muted" }, when), this._status(slot)));
    const facts = el("div", { class: "facts" });
    const out = slot.outcome;
    if (out) {
      const label = out.local ? this._t("fact.home_price") : this._entityText("clearing_price.name", "Clearing price");
      facts.append(this._fact(label, this._price(out.price.value), "big"));
      if (out.clean_price.value !== null) facts.append(this._fact(this._t("fact.clean_price"), this._price(out.clean_price.value)));
      facts.append(this._fact(this._t("fact.neighbours"), this._tradeWords(out)));
      if (out.void) facts.append(this._fact(this._t("fact.void"), this._t("void.explain", { reason: this._choice("void_reason", out.void_reason) }), "warn-text"));
    } else {
      facts.append(this._fact(this._t("fact.gate"), this._t("fact.gate_value", { time: this._time(slot.gate_closure) })));
    }
    facts.append(this._fact(this._t("fact.order"), this._orderWords(slot.order)));
    if (slot.import_price.value !== null) {
      facts.append(
        this._fact(
          this._t("fact.grid_prices"),
          this._t("fact.grid_prices_value", {
            import: this._price(slot.import_price.value),
            feed_in: this._price(slot.feed_in_tariff.value),
          })
        )
      );
    }
    if (running && data.home_now && data.home_now.grid_power_w !== null) {
      facts.append(this._fact(this._t("fact.grid_now"), this._gridWords(data.home_now)));
    }
    card.append(facts);
    card.append(this._deviceList(slot, running));
    return card;
  }

  _tradeWords(out) {
    const parts = [];
    if (out.bought_wh) parts.push(this._t("trade.bought", { energy: this._energy(out.bought_wh), money: this._money(out.paid) }));
    if (out.sold_wh) parts.push(this._t("trade.sold", { energy: this._energy(out.sold_wh), money: this._money(out.received) }));
    return parts.length ? parts.join(" · ") : this._t("trade.none");
  }

  _orderWords(order) {
    if (!order) return this._t("order.none");
    const prices = order.steps.map((step) => step.price);
    const low = Math.min(...prices);
    const high = Math.max(...prices);
    const values = {
      energy: this._energy(order.energy_wh),
      price: low === high ? this._price(low) : `${this._number(low, 3)}–${this._price(high)}`,
    };
    const text = this._t(order.side === "sell" ? "order.sell" : "order.buy", values);
    return order.clean ? `${text} · ${this._t("order.clean")}` : text;
  }

  _gridWords(now) {
    const watts = now.grid_power_w;
    const text = watts > 0 ? this._t("grid.importing", { power: this._power(watts) }) : watts < 0 ? this._t("grid.exporting", { power: this._power(watts) }) : this._t("grid.zero");
    return now.grid_source === "assets" ? `${text} · ${this._t("grid.estimated")}` : text;
  }

  // Every device with its plan, its result and why; the grid meter only measures and is
  // shown as the slot's "grid now" fact, not as a device that trades.
  _deviceList(slot, running) {
    const list = el("div", { class: "list devices" });
    list.append(
      el(
        "div",
        { class: "row head" },
        el("div", {}, this._t("device.head")),
        el("div", {}, this._t("device.plan")),
        el("div", {}, this._t("device.result")),
        el("div", {}, this._entityText("market_reason.name", "Reason"))
      )
    );
    for (const asset of slot.assets) {
      if (asset.kind === "grid_meter") continue;
      const result = asset.allocation ? this._allocationCell(asset.allocation) : null;
      list.append(
        el(
          "div",
          { class: `row ${result ? "with-result" : ""}` },
          el("div", { class: "c-dev" }, this._deviceCell(asset, running)),
          el("div", { class: "c-plan" }, this._planCell(asset)),
          el("div", { class: "c-res" }, result || el("span", { class: "muted" }, this._t("device.open"))),
          el("div", { class: "c-why" }, this._whyCell(asset))
        )
      );
    }
    return list;
  }

  _deviceCell(asset, running) {
    const name = asset.name || (asset.kind === "base_load" ? this._t("device.base_load") : this._t("device.manual", { n: asset.id.split("_").pop() }));
    const now = running ? this._nowWords(asset) : null;
    return el(
      "div",
      { class: "dev" },
      el("ha-icon", { icon: KIND_ICONS[asset.kind] || "mdi:flash" }),
      el("div", {}, el("div", { class: "name" }, name), now ? el("div", { class: "sub" }, now) : null)
    );
  }

  // What the device does now, from its own sensors (it may differ from the market's plan:
  // in advise mode the devices follow their own control).
  _nowWords(asset) {
    const now = asset.now;
    if (!now || now.power_w === null || now.power_w === undefined) return null;
    const power = this._power(now.power_w);
    const on = now.power_w !== 0;
    let text;
    if (asset.kind === "pv") text = on ? this._t("now.producing", { power }) : this._t("now.pv_idle");
    else if (asset.kind === "battery") {
      text = now.power_w > 0 ? this._t("now.discharging", { power }) : now.power_w < 0 ? this._t("now.charging", { power }) : this._t("now.idle");
      if (now.soc_pct !== null && now.soc_pct !== undefined) text += ` · ${this._t("now.soc", { soc: this._number(now.soc_pct, 0) })}`;
    } else if (asset.kind === "ev_charger") text = on ? this._t("now.charging", { power }) : this._t("now.ev_idle");
    else text = on ? this._t("now.consuming", { power }) : this._t("now.off");
    return this._t("now.label", { what: text });
  }

  _planCell(asset) {
    if (!asset.bids.length) return el("span", { class: "muted" }, this._t("plan.none"));
    const parts = [];
    for (const side of ["buy", "sell"]) {
      const bids = asset.bids.filter((bid) => bid.side === side);
      if (!bids.length) continue;
      const energy = sum(bids, "energy_wh");
      const prices = bids.flatMap((bid) => bid.steps.map((step) => step.price));
      const high = Math.max(...prices);
      const low = Math.min(...prices);
      const price = side === "buy" ? this._t("plan.up_to", { price: this._price(high) }) : this._t("plan.from", { price: this._price(low) });
      parts.push(el("div", {}, el("span", { class: "num", "data-label": this._t("device.plan") }, this._t(`plan.${side}`, { energy: this._energy(energy) })), el("div", { class: "sub" }, price)));
    }
    return parts;
  }

  _allocationCell(alloc) {
    const energy = alloc.energy_wh;
    if (!energy) return el("span", {}, this._t("result.nothing"));
    const taking = energy > 0;
    const parts = [];
    const split = [
      ["market_wh", taking ? "result.from_neighbours" : "result.to_neighbours"],
      ["internal_wh", taking ? "result.from_home" : "result.in_home"],
      ["grid_wh", taking ? "result.from_grid" : "result.to_grid"],
    ];
    for (const [key, text] of split) {
      if (alloc[key]) parts.push(this._t(text, { energy: this._energy(alloc[key]) }));
    }
    return [
      el("span", { class: "num" }, this._t(taking ? "result.takes" : "result.gives", { energy: this._energy(energy) })),
      parts.length ? el("div", { class: "sub" }, parts.join(" · ")) : null,
    ];
  }

  _whyCell(asset) {
    const cell = [];
    const reason = asset.reason;
    if (reason) {
      const text = this._reasonText(reason.code);
      cell.push(asset.reason_entity_id ? el("a", { class: "reason", onclick: () => this._moreInfo(asset.reason_entity_id) }, text) : el("span", { class: "reason" }, text));
      const details = this._reasonDetails(reason);
      if (details) cell.push(el("div", { class: "detail" }, details));
    } else {
      cell.push(el("span", { class: "muted" }, "—"));
    }
    for (const action of asset.actions || []) cell.push(el("div", { class: "detail" }, this._actionWords(action)));
    return cell;
  }

  // A reason's parameters in words, with units and currency.
  _reasonDetails(reason) {
    const params = reason.params || {};
    const keys = REASON_PARAMS[reason.code] || Object.keys(params).filter((key) => key in PARAM_KINDS);
    const parts = [];
    for (const key of keys) {
      if (!(key in params) || !(key in PARAM_KINDS)) continue;
      parts.push(this._t(`param.${key}`, { value: this._paramValue(key, params[key]) }));
    }
    // A battery's next limit: full or at its reserve within the outlook.
    if ((params.event === "full" || params.event === "short") && typeof params.event_in_slots === "number") {
      const seconds = params.event_in_slots * (this._data.slot_seconds || 900);
      parts.push(this._t(`param.event.${params.event}`, { value: this._duration(seconds) }));
    }
    return parts.join(" · ");
  }

  _paramValue(key, value) {
    const kind = PARAM_KINDS[key];
    if (kind === "choice") return this._choice(key, value);
    if (typeof value !== "number") return String(value);
    if (kind === "price") return this._priceMinor(value);
    if (kind === "energy") return this._energy(value);
    if (kind === "percent") return `${this._number(value, 0)} %`;
    if (kind === "duration") return this._duration(value);
    if (kind === "slots") return this._duration(value * (this._data.slot_seconds || 900));
    return String(value);
  }

  _choice(key, value) {
    const text = this._texts[`choice.${key}.${value}`] ?? this._english[`choice.${key}.${value}`];
    return text ?? this._t(`choice.${key}.other`);
  }

  _actionWords(action) {
    const state = action.error ? this._t("action.failed", { error: action.error }) : action.applied ? this._t("action.done") : this._t("action.advice");
    const entity = this._hass?.states?.[action.entity_id]?.attributes?.friendly_name || action.entity_id;
    const values = { entity, value: action.value ?? "" };
    const key = `action.${action.service}`;
    const what = this._texts[key] || this._english[key] ? this._t(key, values) : action.call;
    return `${state}: ${what}`;
  }

  // --- the last day and the plan for the next 24 hours -------------------------------------------

  // The past slots (websocket "history": clearing price, energy bought and sold with the
  // neighbours) and the planner's plan from the next slot on (websocket "plan": expected
  // price, the home's import and export at the grid connection, battery and EV), on one
  // time axis with a line at "now".
  _outlookRows(data) {
    const digits = data.price_digits ?? 2;
    const past = (data.history || []).map((row) => ({ ...row, t: Date.parse(row.slot_start), past: true }));
    const plan = data.plan;
    const future = [];
    if (plan && Array.isArray(plan.start)) {
      const minor = (list, k) => (Array.isArray(list) && list[k] !== null && list[k] !== undefined ? list[k] / 10 ** digits : null);
      const at = (list, k) => (Array.isArray(list) ? list[k] ?? 0 : 0);
      plan.start.forEach((start, k) => {
        future.push({
          t: Date.parse(start),
          slot_start: start,
          expected: minor(plan.expected_price, k),
          import_wh: at(plan.import_wh, k),
          export_wh: at(plan.export_wh, k),
          battery_wh: at(plan.battery_wh, k),
          ev_wh: at(plan.ev_wh, k),
        });
      });
    }
    // The plan starts at the next slot; a history row of that slot is its known price.
    const planStart = future.length ? future[0].t : Infinity;
    return { past: past.filter((row) => row.t < planStart || row.price !== null), future };
  }

  _historyCard(data) {
    const card = el("div", { class: "card outlook" }, el("h2", {}, this._t("outlook.title")));
    const { past, future } = this._outlookRows(data);
    if (!past.length && !future.length) {
      card.append(el("div", { class: "muted" }, this._t("outlook.empty")));
      return card;
    }
    card.append(el("div", { class: "chart" }, this._chart(data, past, future)));
    const sw = (style) => el("span", { class: "sw", style });
    const item = (style, text) => el("span", {}, sw(style), text);
    const legend = el("div", { class: "legend" });
    if (past.length) {
      append(legend, [
        item("background:var(--primary-color)", this._t("chart.price", { currency: data.currency })),
        item("background:var(--success-color, #43a047)", this._t("chart.bought")),
        item("background:var(--indigo-color, #3f51b5)", this._t("chart.sold")),
      ]);
      if (past.some((row) => row.void)) legend.append(item("background:var(--error-color, #db4437);opacity:.25", this._t("chart.void")));
    }
    if (future.length) {
      append(legend, [
        item("background:repeating-linear-gradient(90deg, var(--primary-color) 0 4px, transparent 4px 6px)", this._t("chart.expected", { currency: data.currency })),
        item("background:var(--energy-grid-consumption-color, #488fc2);opacity:.6", this._t("chart.import")),
        item("background:var(--energy-grid-return-color, #8353d1);opacity:.6", this._t("chart.export")),
        item("background:var(--energy-battery-out-color, #4db6ac)", this._t("chart.battery")),
        item("background:var(--orange-color, #ff9800)", this._t("chart.ev")),
      ]);
    }
    card.append(legend);
    if (data.plan && data.plan.fallback) {
      card.append(el("div", { class: "muted" }, this._t("outlook.fallback", { why: this._choice("fallback", data.plan.fallback) })));
    }
    if (!past.length) return card;
    const body = el("tbody");
    for (const row of [...past].reverse()) {
      body.append(
        el(
          "tr",
          {},
          el("td", {}, this._time(row.slot_start, true)),
          el("td", { class: "n" }, row.price === null ? "—" : this._number(row.price, 3)),
          el("td", { class: "n" }, row.clean_price === null ? "—" : this._number(row.clean_price, 3)),
          el("td", { class: "n" }, row.bought_wh === null ? "—" : this._number(row.bought_wh, 0)),
          el("td", { class: "n" }, row.sold_wh === null ? "—" : this._number(row.sold_wh, 0)),
          el("td", {}, row.void ? this._t("status.void") : row.local ? this._t("status.local") : row.local === false ? this._t("status.cleared") : "")
        )
      );
    }
    const head = el(
      "tr",
      {},
      el("th", {}, this._t("table.slot")),
      el("th", { class: "n" }, this._t("table.price", { currency: data.currency })),
      el("th", { class: "n" }, this._t("table.clean_price", { currency: data.currency })),
      el("th", { class: "n" }, this._t("table.bought")),
      el("th", { class: "n" }, this._t("table.sold")),
      el("th", {}, this._t("table.how"))
    );
    card.append(
      el(
        "details",
        { open: this._historyOpen, ontoggle: (ev) => (this._historyOpen = ev.target.open) },
        el("summary", {}, this._tn("history.table", past.length, { n: past.length })),
        el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), body))
      )
    );
    return card;
  }

  // Price per slot (left axis, currency per kWh: the clearing price of the past slots as a
  // line, the plan's expected price dashed) and energy per slot (right axis, Wh or kWh; up
  // into the home, down out of it): bought and sold with neighbours in the past, the planned
  // import and export, and the battery (+ charges) and EV as lines. Each series is a <g
  // data-series="..."> (the browser tests look for them); time below, a line at "now".
  _chart(data, past, future) {
    const width = Math.max(280, (this._width || 760) - 64);
    const narrow = width < 500;
    const left = 56;
    const right = narrow ? 52 : 64;
    const top = 22;
    const priceH = narrow ? 110 : 150;
    const gap = 18;
    const energyH = narrow ? 100 : 130;
    const bottom = 22;
    const height = top + priceH + gap + energyH + bottom;
    const plotW = width - left - right;
    const slotMs = (data.slot_seconds || 900) * 1000;
    const times = [...past, ...future].map((row) => row.t);
    const start = Math.min(...times);
    const end = Math.max(...times) + slotMs;
    const span = Math.max(end - start, slotMs);
    const x = (ms) => left + ((ms - start) / span) * plotW;
    const barW = Math.max((slotMs / span) * plotW - 1, 1);
    const mid = (row) => x(row.t) + barW / 2;
    const prices = [...past.map((row) => row.price), ...future.map((row) => row.expected)].filter((p) => p !== null && p !== undefined);
    const pMin = prices.length ? Math.min(...prices, 0) : 0;
    let pMax = prices.length ? Math.max(...prices) : 0.3;
    if (pMax - pMin < 0.01) pMax = pMin + 0.01;
    const py = (p) => top + priceH - ((p - pMin) / (pMax - pMin)) * priceH;
    const sizes = [
      ...past.map((row) => Math.max(row.bought_wh || 0, row.sold_wh || 0)),
      ...future.map((row) => Math.max(row.import_wh, row.export_wh, Math.abs(row.battery_wh), Math.abs(row.ev_wh))),
    ];
    const eMax = Math.max(1, ...sizes);
    const kwh = eMax >= 10000;
    const eUnit = kwh ? "kWh" : "Wh";
    const eMid = top + priceH + gap + energyH / 2;
    const ey = (wh) => (Math.min(Math.abs(wh), eMax) / eMax) * (energyH / 2);
    const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": this._t("chart.label") });
    const series = (name) => {
      const group = svg("g", { "data-series": name });
      chart.append(group);
      return group;
    };
    const voids = series("void");
    for (const row of past) {
      if (row.void) voids.append(svg("rect", { x: x(row.t), y: top, width: barW, height: priceH + gap + energyH, class: "void-band" }));
    }
    // Price axis (left): three ticks with the unit above.
    chart.append(svg("text", { x: 0, y: 10 }, `${data.currency}/kWh`));
    for (const p of [pMin, (pMin + pMax) / 2, pMax]) {
      chart.append(svg("line", { x1: left, x2: width - right, y1: py(p), y2: py(p), class: "grid" }));
      chart.append(svg("text", { x: left - 6, y: py(p) + 4, "text-anchor": "end" }, this._number(p, 3)));
    }
    // Energy axis (right): into the home up, out of it down, with the unit above.
    const eLabel = (wh) => this._number(kwh ? wh / 1000 : wh, kwh ? 1 : 0);
    const axisX = width - right + 6;
    chart.append(svg("text", { x: axisX, y: top + priceH + gap - 4 }, eUnit));
    chart.append(svg("line", { x1: left, x2: width - right, y1: eMid, y2: eMid, class: "axis" }));
    chart.append(svg("text", { x: axisX, y: eMid - energyH / 2 + 10 }, `↑ ${eLabel(eMax)}`));
    chart.append(svg("text", { x: axisX, y: eMid + 4 }, "0"));
    chart.append(svg("text", { x: axisX, y: eMid + energyH / 2 - 4 }, `↓ ${eLabel(eMax)}`));
    // Bars: up (into the home) and down (out of it).
    const bars = (rows, name, key, up, cls, label) => {
      const group = series(name);
      for (const row of rows) {
        const wh = row[key];
        if (!wh) continue;
        const h = ey(wh);
        const title = svg("title", {}, `${this._time(row.slot_start)}: ${label} ${this._energy(wh)}`);
        group.append(svg("rect", { x: x(row.t), y: up ? eMid - h : eMid, width: barW, height: h, class: cls }, title));
      }
    };
    // A line through the slots' centres; a value without a neighbour on either side is a dot.
    const line = (rows, name, value, cls, dotCls) => {
      const group = series(name);
      const points = rows.map((row) => {
        const v = value(row);
        return v === null || v === undefined ? null : [mid(row), v];
      });
      let path = "";
      points.forEach((point, k) => {
        if (!point) return;
        if (dotCls && !points[k - 1] && !points[k + 1]) group.append(svg("circle", { cx: point[0], cy: point[1], r: 3, class: dotCls }));
        path += `${points[k - 1] ? "L" : "M"}${point[0].toFixed(1)} ${point[1].toFixed(1)} `;
      });
      if (path) group.append(svg("path", { d: path.trim(), class: cls }));
    };
    if (past.length) {
      bars(past, "bought", "bought_wh", true, "bought", this._t("chart.bought"));
      bars(past, "sold", "sold_wh", false, "sold", this._t("chart.sold"));
      line(past, "price", (row) => (row.price === null || row.price === undefined ? null : py(row.price)), "price-line", "price-dot");
    }
    if (future.length) {
      bars(future, "import", "import_wh", true, "plan-import", this._t("chart.import"));
      bars(future, "export", "export_wh", false, "plan-export", this._t("chart.export"));
      line(future, "expected", (row) => (row.expected === null ? null : py(row.expected)), "expected-line", "price-dot");
      line(future, "battery", (row) => eMid - Math.sign(row.battery_wh) * ey(row.battery_wh), "battery-line");
      line(future, "ev", (row) => eMid - ey(row.ev_wh), "ev-line");
    }
    // Now: the boundary between what happened and what is planned.
    const now = Date.parse(data.now);
    if (now >= start && now <= end) {
      const nx = x(now);
      chart.append(svg("line", { x1: nx, x2: nx, y1: top - 14, y2: top + priceH + gap + energyH, class: "now-line" }));
      chart.append(svg("text", { x: nx + 3, y: top - 12 }, this._t("outlook.now")));
    }
    // Time axis: ticks at round times, about one per 90 px.
    const base = top + priceH + gap + energyH;
    chart.append(svg("line", { x1: left, x2: width - right, y1: base, y2: base, class: "axis" }));
    const steps = [60e3, 5 * 60e3, 15 * 60e3, 30 * 60e3, 3600e3, 2 * 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3];
    const wanted = span / Math.max(2, Math.floor(plotW / 90));
    const tick = steps.find((s) => s >= wanted) || steps[steps.length - 1];
    for (let t = Math.ceil(start / tick) * tick; t <= end; t += tick) {
      chart.append(svg("line", { x1: x(t), x2: x(t), y1: base, y2: base + 4, class: "axis" }));
      chart.append(svg("text", { x: x(t), y: base + 16, "text-anchor": "middle" }, this._time(new Date(t).toISOString())));
    }
    return chart;
  }

  // --- trades and their delivery ----------------------------------------------------------------

  _tradesCard(data) {
    const card = el("div", { class: "card" }, el("h2", {}, this._t("trades.title")));
    if (!data.trades.length) {
      card.append(el("div", { class: "muted" }, this._t(data.community ? "trades.empty" : "trades.no_community")));
    } else {
      const list = el("div", { class: "list trades" });
      list.append(
        el(
          "div",
          { class: "row head" },
          el("div", {}, this._t("trades.with")),
          el("div", {}, this._t("table.slot")),
          el("div", {}, this._t("trades.price")),
          el("div", {}, this._t("trades.amount")),
          el("div", {}, "")
        )
      );
      for (const trade of data.trades) {
        const who = this._neighbour(trade.counterparty, trade.counterparty_name);
        const selling = trade.role === "seller";
        const when = this._time(trade.slot_start, true);
        const clean = trade.clean ? el("span", { class: "badge clean" }, this._t("trades.clean")) : "";
        list.append(
          el(
            "div",
            { class: "row" },
            el(
              "div",
              {},
              el("div", {}, this._t(selling ? "trades.sold_to" : "trades.bought_from", { who, energy: this._energy(trade.energy_wh) })),
              el("div", { class: "sub narrow-only" }, `${when} · ${this._price(trade.price)} `, clean)
            ),
            el("div", { class: "wide-only" }, when),
            el("div", { class: "wide-only num" }, this._price(trade.price)),
            el("div", { class: "num" }, this._t(selling ? "trades.received" : "trades.paid", { money: this._money(trade.amount) })),
            el("div", { class: "wide-only" }, clean)
          )
        );
      }
      card.append(list);
    }
    if (data.settlements.length) card.append(this._settlements(data));
    return card;
  }

  _settlements(data) {
    const box = el("div", {}, el("h3", {}, this._t("settle.title")), el("div", { class: "muted" }, this._t("settle.explain")));
    const list = el("div", { class: "list settlements" });
    for (const s of data.settlements) {
      const who = this._neighbour(s.counterparty, s.counterparty_name);
      const selling = s.role === "seller";
      const head = this._t(selling ? "settle.sold" : "settle.bought", {
        who,
        energy: this._energy(s.energy_wh),
        delivered: this._energy(s.delivered_wh),
      });
      let money = this._t("settle.in_full");
      if (s.shortfall_wh) {
        money = this._t(selling ? "settle.paid_back" : "settle.got_back", { energy: this._energy(s.shortfall_wh), money: this._money(s.payment) });
      }
      list.append(
        el(
          "div",
          { class: "row" },
          el("div", {}, el("div", {}, head), el("div", { class: "sub" }, this._time(s.slot_start, true))),
          el("div", { class: `num ${s.shortfall_wh && selling ? "warn-text" : ""}` }, money),
          s.disputed || s.shortfall_wh ? el("div", { class: "why detail" }, s.disputed ? el("span", { class: "badge warn" }, this._t("settle.disputed")) : null, " ", this._shortfallWords(s, who)) : null
        )
      );
    }
    box.append(list);
    return box;
  }

  _shortfallWords(s, who) {
    if (s.shortfall_reason === "disputed") return this._t("settle.why_disputed", { who });
    if (s.shortfall_reason !== "seller_metered") return "";
    const metered = this._energy(s.seller_metered_wh);
    if (s.role === "seller") {
      const text = this._t("settle.why_own", { metered });
      return this._data.control_mode === "advise" ? `${text} ${this._t("settle.why_advise")}` : text;
    }
    return this._t("settle.why_seller", { who, metered, price: this._price(s.import_price) });
  }

  // --- credit and community ---------------------------------------------------------------------

  _balanceWords(balance) {
    if (balance < 0) return this._t("credit.owes", { money: this._money(balance) });
    if (balance > 0) return this._t("credit.owed", { money: this._money(balance) });
    return this._t("credit.even");
  }

  _creditCard(data) {
    const card = el("div", { class: "card" }, el("h2", {}, this._t("credit.title")));
    if (data.credit) {
      card.append(el("div", { class: "big num" }, this._signedMoney(data.credit.balance)));
      card.append(el("p", { class: "explain" }, this._balanceWords(data.credit.balance)));
      card.append(
        el(
          "p",
          { class: "explain" },
          this._t("credit.limit", { limit: this._money(data.credit.limit), available: this._money(data.credit.available ?? data.credit.limit + data.credit.balance) })
        )
      );
    } else {
      card.append(el("p", { class: "explain muted" }, this._t("credit.none")));
    }
    const totals = data.totals;
    card.append(
      el(
        "p",
        { class: "explain muted" },
        this._t("credit.totals", {
          sold: this._energy(totals.sold_wh),
          earned: this._money(totals.earned),
          bought: this._energy(totals.bought_wh),
          spent: this._money(totals.spent),
        })
      )
    );
    return card;
  }

  _communityCard(data) {
    const community = data.community;
    const card = el("div", { class: "card" }, el("h2", {}, community ? community.name || this._t("community.title") : this._t("community.title")));
    const kv = el("div", { class: "kv" });
    const row = (k, v) => append(kv, [el("div", { class: "k" }, k), el("div", { class: "v" }, v)]);
    if (!community) {
      card.append(el("p", { class: "explain muted" }, this._t("community.none")));
    } else {
      const others = Math.max(community.members - 1, 0);
      row(this._entityText("peers_online.name", "Peers online"), this._tn("community.online", others, { online: community.peers_online, others }));
      const away = community.unreachable || [];
      row(
        this._entityText("unreachable_neighbours.name", "Unreachable neighbours"),
        away.length ? el("span", { class: "warn-text" }, away.map((peer) => this._neighbour(peer.member, peer.name)).join(", ")) : this._t("community.unreachable_none")
      );
    }
    row(this._t("community.this_home"), el("code", {}, data.member_id));
    row(this._t("community.control"), this._t(`control.${data.control_mode}`));
    row(this._t("community.slot_length"), this._duration(data.slot_seconds));
    const own = data.reputation.own;
    row(this._entityText("reputation.name", "Reputation"), own === null ? this._t("reputation.not_rated") : `${this._number(own, 1)} %`);
    card.append(kv);
    if (community) card.append(el("p", { class: "explain muted" }, this._t("reputation.explain")));
    if (data.reputation.peers.length) {
      card.append(el("h3", {}, this._t("reputation.neighbours")));
      const list = el("div", { class: "kv" });
      for (const peer of data.reputation.peers) {
        const score = peer.score === null || peer.score === undefined
          ? this._t("reputation.not_rated")
          : [`${this._number(peer.score, 1)} %`, this._entityText(`reputation_status.state.${peer.status}`, "")].filter(Boolean).join(" · ");
        append(list, [el("div", { class: "k" }, this._neighbour(peer.member, peer.name)), el("div", { class: "v" }, score)]);
      }
      card.append(list);
    }
    return card;
  }
}

if (!customElements.get("peer-energy-panel")) {
  customElements.define("peer-energy-panel", PeerEnergyPanel);
}
