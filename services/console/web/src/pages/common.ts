import { ApiError } from "../api";
import { h } from "../dom";

/** A status line (polite) and an alert line for one page. */
export function notices(): { el: HTMLElement; info: (text: string) => void; fail: (exc: unknown) => void; clear: () => void } {
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const alert = h("div", { class: "alert", role: "alert" });
  alert.hidden = true;
  const el = h("div", { class: "notices" }, status, alert);
  return {
    el,
    info(text) {
      alert.hidden = true;
      status.textContent = text;
    },
    fail(exc) {
      status.textContent = "";
      alert.hidden = false;
      alert.replaceChildren(exc instanceof ApiError ? exc.describe() : String(exc));
    },
    clear() {
      status.textContent = "";
      alert.hidden = true;
    },
  };
}

export function pageHeader(title: string, intro: string): HTMLElement {
  return h("div", { class: "page-header" }, h("h1", {}, title), h("p", { class: "intro" }, intro));
}

/** Label of an enum value: "CONVERSATION_QUEUE_NEW" → "New". */
export function enumLabel(value: string, prefix: string): string {
  const raw = value.startsWith(prefix) ? value.slice(prefix.length) : value;
  const text = raw.toLowerCase().replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}
