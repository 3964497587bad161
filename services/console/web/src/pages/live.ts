import { api, q, type AgentLoad, type AgentPresence, type AuditEntry, type Conversation, type WaitingConversation } from "../api";
import { field, formatTime, h } from "../dom";
import { enumLabel, notices, pageHeader } from "./common";

const POLL_MS = 1000;

export function livePage(main: HTMLElement): () => void {
  const note = notices();
  let selected: string | null = null;
  let previous = new Map<string, Conversation>();
  let timer: number | undefined;
  let stopped = false;
  let paused = false;

  const queueSelect = h(
    "select",
    { name: "queue", id: "queue-filter" },
    h("option", { value: "" }, "Any queue"),
    ...["NEW", "PENDING", "RESOLVED"].map((v) => h("option", { value: `CONVERSATION_QUEUE_${v}` }, enumLabel(v, ""))),
  );
  const assigneeInput = h("input", { name: "assignee_id", id: "assignee-filter" });
  const pauseButton = h("button", { type: "button", "aria-pressed": "false" }, "Pause updates");
  const updated = h("p", { class: "hint", id: "live-updated" }, "Loading…");
  const rows = h("tbody", { id: "conversation-rows" });
  const table = h(
    "table",
    { class: "conversations", "aria-labelledby": "conversations-title" },
    h(
      "thead",
      {},
      h("tr", {}, ...["Conversation", "Queue", "Assignee", "Assigned by", "Updated"].map((t) => h("th", { scope: "col" }, t)),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions"))),
    ),
    rows,
  );
  const changes = h("ol", { class: "change-log", id: "change-log" });
  const changeLog = h("div", { role: "log", "aria-label": "Assignment changes" }, changes);
  const agents = h("ul", { class: "agent-list", id: "signed-in-agents", "aria-label": "Signed-in agents" });
  const waiting = h("ol", { class: "audit", id: "waiting-queue", "aria-label": "Waiting for automatic assignment" });
  const loads = h("ul", { class: "agent-list", id: "agent-loads", "aria-label": "Agent loads" });
  const audit = h("section", { class: "card", id: "audit-panel", "aria-labelledby": "audit-title" });
  audit.append(h("h2", { id: "audit-title" }, "Audit trail"), h("p", { class: "hint" }, "Choose a conversation."));

  function logChange(text: string): void {
    changes.prepend(h("li", {}, `${formatTime(new Date().toISOString())} ${text}`));
    while (changes.children.length > 30) changes.lastElementChild?.remove();
  }

  function diff(next: Conversation[]): void {
    if (previous.size === 0) return;
    for (const c of next) {
      const before = previous.get(c.conversation_id);
      if (!before) {
        logChange(`${c.conversation_id} appeared in ${enumLabel(c.queue, "CONVERSATION_QUEUE_")}.`);
      } else if (before.assignee_id !== c.assignee_id) {
        logChange(
          c.assignee_id
            ? `${c.conversation_id} assigned to ${c.assignee_id}.`
            : `${c.conversation_id} unassigned from ${before.assignee_id}.`,
        );
      } else if (before.queue !== c.queue) {
        logChange(`${c.conversation_id} moved to ${enumLabel(c.queue, "CONVERSATION_QUEUE_")}.`);
      }
    }
  }

  function renderRows(list: Conversation[]): void {
    rows.replaceChildren(
      ...list.map((c) => {
        const before = previous.get(c.conversation_id);
        const changed = before !== undefined && (before.assignee_id !== c.assignee_id || before.queue !== c.queue);
        return h(
          "tr",
          { "data-conversation": c.conversation_id, class: changed ? "changed" : null, "aria-selected": String(c.conversation_id === selected) },
          h("th", { scope: "row" }, c.conversation_id),
          h("td", { class: "queue" }, enumLabel(c.queue, "CONVERSATION_QUEUE_")),
          h("td", { class: "assignee" }, c.assignee_id || "unassigned"),
          h("td", {}, c.assigned_by || "—"),
          h("td", {}, formatTime(c.updated_at)),
          h(
            "td",
            {},
            h(
              "button",
              {
                type: "button",
                "aria-label": `Audit trail of ${c.conversation_id}`,
                onclick: () => {
                  selected = c.conversation_id;
                  void poll();
                },
              },
              "Audit trail",
            ),
          ),
        );
      }),
    );
    if (list.length === 0) rows.append(h("tr", {}, h("td", { colspan: 6 }, "No conversations.")));
  }

  function renderAgents(list: AgentPresence[]): void {
    agents.replaceChildren(
      ...list.map((a) =>
        h(
          "li",
          { "data-agent": a.agent_id },
          h("span", {}, a.agent_id),
          h("small", {}, `${enumLabel(a.availability, "AVAILABILITY_")} since ${formatTime(a.since)}`),
          h(
            "button",
            {
              type: "button",
              class: "danger",
              "aria-label": `Sign out ${a.agent_id}`,
              onclick: async () => {
                try {
                  await api("POST", `/presence/agents/${q(a.agent_id)}/force-sign-out`, {});
                  note.info(`Signed out ${a.agent_id}.`);
                  void poll();
                } catch (exc) {
                  note.fail(exc);
                }
              },
            },
            "Sign out",
          ),
        ),
      ),
    );
    if (list.length === 0) agents.append(h("li", {}, "Nobody is signed in."));
  }

  function renderWaiting(list: WaitingConversation[], total: number): void {
    waiting.replaceChildren(
      ...list.map((w) =>
        h(
          "li",
          { "data-conversation": w.conversation_id },
          h("strong", {}, w.conversation_id),
          ` waiting since ${formatTime(w.waiting_since)}${w.team ? ` for team ${w.team}` : ""}`,
          h("div", { class: "hint reason" }, w.reason),
        ),
      ),
    );
    if (list.length === 0) waiting.append(h("li", {}, "Nothing is waiting."));
    else if (total > list.length) waiting.append(h("li", {}, `… ${total - list.length} more.`));
  }

  function renderLoads(list: AgentLoad[]): void {
    loads.replaceChildren(
      ...list.map((a) =>
        h(
          "li",
          { "data-agent": a.agent_id },
          h("span", {}, a.agent_id),
          h(
            "small",
            {},
            `holds ${a.held} of ${a.capacity || "unlimited"}; ${a.signed_in ? (a.available ? "available" : "away") : "signed out"}${a.teams.length ? `; teams ${a.teams.join(", ")}` : ""}`,
          ),
        ),
      ),
    );
    if (list.length === 0) loads.append(h("li", {}, "No agents known yet."));
  }

  function renderAudit(entries: AuditEntry[]): void {
    audit.replaceChildren(
      h("h2", { id: "audit-title" }, `Audit trail of ${selected}`),
      h(
        "ol",
        { class: "audit", id: "audit-entries" },
        ...entries.map((e) =>
          h(
            "li",
            { "data-kind": e.kind },
            h("strong", {}, enumLabel(e.kind, "AUDIT_ENTRY_KIND_")),
            ` ${formatTime(e.occurred_at)} by ${e.actor || "—"}`,
            h("div", { class: "hint" }, auditDetail(e)),
          ),
        ),
      ),
    );
  }

  async function poll(): Promise<void> {
    window.clearTimeout(timer);
    if (stopped) return;
    try {
      const params = new URLSearchParams({ page_size: "200" });
      if (queueSelect.value) params.set("queue", queueSelect.value);
      if (assigneeInput.value.trim()) params.set("assignee_id", assigneeInput.value.trim());
      const [conversations, signedIn, queue, agentLoads] = await Promise.all([
        api<{ conversations: Conversation[] }>("GET", `/conversations?${params}`),
        api<{ agents: AgentPresence[] }>("GET", "/presence/signed-in?page_size=100"),
        api<{ conversations: WaitingConversation[]; total: number }>("GET", "/routing/waiting"),
        api<{ agents: AgentLoad[] }>("GET", "/routing/agent-loads"),
      ]);
      renderWaiting(queue.conversations, queue.total);
      renderLoads(agentLoads.agents);
      diff(conversations.conversations);
      renderRows(conversations.conversations);
      previous = new Map(conversations.conversations.map((c) => [c.conversation_id, c]));
      renderAgents(signedIn.agents);
      if (selected) {
        const trail = await api<{ entries: AuditEntry[] }>("GET", `/conversations/${q(selected)}/audit`);
        renderAudit(trail.entries);
      }
      updated.textContent = `Updated ${formatTime(new Date().toISOString())}; refreshes every second.`;
    } catch (exc) {
      note.fail(exc);
    }
    if (!paused && !stopped) timer = window.setTimeout(() => void poll(), POLL_MS);
  }

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume updates" : "Pause updates";
    if (!paused) void poll();
  });
  const filters = h(
    "form",
    { class: "inline-form filters", "aria-label": "Filter conversations" },
    field("Queue", queueSelect),
    field("Assignee", assigneeInput),
    pauseButton,
  );
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    previous = new Map();
    void poll();
  });
  queueSelect.addEventListener("change", () => {
    previous = new Map();
    void poll();
  });

  main.replaceChildren(
    pageHeader(
      "Conversations",
      "Queues, assignees and the audit trail, live. Sign an agent out to watch Remove assignment unassign their New conversations.",
    ),
    note.el,
    h(
      "div",
      { class: "columns" },
      h(
        "section",
        { class: "card wide", "aria-labelledby": "conversations-title" },
        h("h2", { id: "conversations-title" }, "Conversations"),
        filters,
        updated,
        h("div", { class: "table-scroll" }, table),
      ),
      h(
        "div",
        { class: "side" },
        h("section", { class: "card", "aria-labelledby": "agents-title" }, h("h2", { id: "agents-title" }, "Signed-in agents"), agents),
        h("section", { class: "card", "aria-labelledby": "waiting-title" }, h("h2", { id: "waiting-title" }, "Waiting for automatic assignment"), waiting),
        h("section", { class: "card", "aria-labelledby": "loads-title" }, h("h2", { id: "loads-title" }, "Agent loads"), loads),
        audit,
        h("section", { class: "card", "aria-labelledby": "changes-title" }, h("h2", { id: "changes-title" }, "Recent changes"), changeLog),
      ),
    ),
  );
  void poll();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

function auditDetail(e: AuditEntry): string {
  const queue = (v: string) => enumLabel(v, "CONVERSATION_QUEUE_");
  switch (e.kind) {
    case "AUDIT_ENTRY_KIND_CREATED":
      return `created in ${queue(e.to_queue)}`;
    case "AUDIT_ENTRY_KIND_QUEUE_MOVED":
      return `${queue(e.from_queue)} → ${queue(e.to_queue)} (${e.cause_event_type})`;
    case "AUDIT_ENTRY_KIND_ASSIGNED":
      return `assigned to ${e.assignee_id}${e.previous_assignee_id ? ` (was ${e.previous_assignee_id})` : ""}`;
    case "AUDIT_ENTRY_KIND_UNASSIGNED":
      return `unassigned ${e.previous_assignee_id}`;
    case "AUDIT_ENTRY_KIND_AUTO_UNASSIGNED":
      return `unassigned ${e.previous_assignee_id} automatically: ${enumLabel(e.reason, "AUTO_UNASSIGN_REASON_")}`;
    default:
      return e.cause_event_type;
  }
}
