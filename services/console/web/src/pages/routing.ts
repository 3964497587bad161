import { api, type RoutingSettings } from "../api";
import { formatTime, h, toggle } from "../dom";
import { assignmentSection } from "./assignment";
import { notices, pageHeader } from "./common";

export function routingPage(main: HTMLElement): void {
  const note = notices();
  const section = h("section", { class: "card", "aria-labelledby": "remove-title" });

  function renderSettings(settings: RoutingSettings): void {
    const switchButton = toggle(
      "Remove assignment when an agent signs out",
      settings.remove_assignment_on_sign_out,
      async (next) => {
        try {
          const updated = await api<RoutingSettings>("PUT", "/routing/settings", {
            remove_assignment_on_sign_out: next,
          });
          renderSettings(updated);
          note.info(`Remove assignment is now ${next ? "on" : "off"}.`);
        } catch (exc) {
          note.fail(exc);
        }
      },
      { id: "remove-assignment" },
    );
    section.replaceChildren(
      h("h2", { id: "remove-title" }, "Remove assignment"),
      h(
        "div",
        { class: "setting" },
        h(
          "div",
          {},
          h("p", { class: "setting-label" }, "Remove assignment when an agent signs out"),
          h(
            "p",
            { class: "hint" },
            "When on and an agent signs out, their conversations in the New queue are unassigned at once, so another agent can pick them up. Pending conversations stay assigned. If an inbound message moves one of their conversations to New while they are signed out, it is unassigned too.",
          ),
        ),
        switchButton,
      ),
      h(
        "p",
        { class: "hint", id: "settings-changed" },
        settings.updated_by
          ? `Last changed by ${settings.updated_by} at ${formatTime(settings.updated_at)}.`
          : "Never changed (off by default).",
      ),
    );
  }

  main.replaceChildren(
    pageHeader("Routing and automation", "What routing does on its own when agents come and go."),
    note.el,
    section,
    assignmentSection(),
  );
  api<RoutingSettings>("GET", "/routing/settings").then(renderSettings, (exc) => note.fail(exc));
}
