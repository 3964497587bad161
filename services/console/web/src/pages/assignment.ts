import { api, type AssignmentSettings } from "../api";
import { field, formatTime, h } from "../dom";
import { notices } from "./common";

/** "key = value" per line → a map; throws on a malformed line. */
export function parsePairs(text: string, what: string): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (!line) continue;
    const at = line.indexOf("=");
    const key = at < 0 ? "" : line.slice(0, at).trim();
    const value = at < 0 ? "" : line.slice(at + 1).trim();
    if (!key || !value) throw new Error(`${what}, line ${index + 1}: write it as "id = value"`);
    pairs[key] = value;
  }
  return pairs;
}

function formatPairs(map: Record<string, string | number>): string {
  return Object.entries(map)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} = ${v}`)
    .join("\n");
}

/** The org's automatic-assignment settings (PRODUCT.md §4) as one form, loaded and saved whole. */
export function assignmentSection(): HTMLElement {
  const note = notices();
  const enabled = h("input", { type: "checkbox", id: "auto-assign-enabled", name: "enabled" });
  const capacity = h("input", { type: "number", id: "auto-assign-capacity", name: "default_capacity", min: 0, max: 10000, step: 1, value: "0", required: true });
  const teams = h("textarea", { id: "auto-assign-teams", name: "team_capacities", rows: 3 });
  const channels = h("textarea", { id: "auto-assign-channels", name: "channel_teams", rows: 3 });
  const changed = h("p", { class: "hint", id: "assignment-changed" }, "Loading…");
  const save = h("button", { type: "submit" }, "Save automatic assignment");

  function render(settings: AssignmentSettings): void {
    enabled.checked = settings.enabled;
    capacity.value = String(settings.default_capacity);
    teams.value = formatPairs(settings.team_capacities);
    channels.value = formatPairs(settings.channel_teams);
    changed.textContent = settings.updated_by
      ? `Last changed by ${settings.updated_by} at ${formatTime(settings.updated_at)}.`
      : "Never changed (off by default).";
  }

  const form = h(
    "form",
    { id: "assignment-form", "aria-labelledby": "assignment-title" },
    h("div", { class: "field checkbox" }, enabled, h("label", { for: enabled.id }, "Assign waiting conversations automatically")),
    field("Default capacity per agent", capacity, "The most New and Pending conversations an agent holds before nothing more is assigned to them automatically; 0 = unlimited."),
    field("Capacity per team", teams, "One per line: team id = capacity (1 to 10000). Overrides the default for conversations waiting for that team."),
    field("Channel → team", channels, "One per line: channel id = team id. Conversations on an unmapped channel go to anyone in the org."),
    save,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    save.disabled = true;
    try {
      const teamCapacities = Object.fromEntries(
        Object.entries(parsePairs(teams.value, "Capacity per team")).map(([team, value]) => {
          const n = Number(value);
          if (!Number.isInteger(n)) throw new Error(`Capacity per team: ${team} needs a whole number`);
          return [team, n];
        }),
      );
      const updated = await api<AssignmentSettings>("PUT", "/routing/assignment-settings", {
        enabled: enabled.checked,
        default_capacity: Number(capacity.value || "0"),
        team_capacities: teamCapacities,
        channel_teams: parsePairs(channels.value, "Channel → team"),
      });
      render(updated);
      note.info(`Automatic assignment saved: ${updated.enabled ? "on" : "off"}.`);
    } catch (exc) {
      note.fail(exc);
    } finally {
      save.disabled = false;
    }
  });

  api<AssignmentSettings>("GET", "/routing/assignment-settings").then(render, (exc) => note.fail(exc));
  return h(
    "section",
    { class: "card", "aria-labelledby": "assignment-title" },
    h("h2", { id: "assignment-title" }, "Automatic assignment"),
    h("p", { class: "hint" }, "When on, each waiting conversation (New and unassigned) goes to a signed-in, Available agent of its team who holds fewer than their capacity: oldest waiting first, to the agent holding fewest."),
    note.el,
    form,
    changed,
  );
}
