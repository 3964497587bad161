import "./style.css";
import { api, onSignedOut, session, signIn, signOut } from "./api";
import { field, h, splitList } from "./dom";
import { attributesPage } from "./pages/attributes";
import { livePage } from "./pages/live";
import { repliesPage } from "./pages/replies";
import { routingPage } from "./pages/routing";

interface Page {
  path: string;
  group: string;
  title: string;
  render: (main: HTMLElement) => (() => void) | void;
}

const PAGES: Page[] = [
  { path: "#/attributes", group: "Agent workspace", title: "Contact attributes", render: attributesPage },
  { path: "#/replies", group: "Agent workspace", title: "Saved replies", render: repliesPage },
  { path: "#/routing", group: "Routing and automation", title: "Assignment rules", render: routingPage },
  { path: "#/live", group: "Live", title: "Conversations", render: livePage },
];

const app = document.getElementById("app") as HTMLElement;
let stopPage: (() => void) | void;

function currentPage(): Page {
  return PAGES.find((p) => p.path === location.hash) ?? PAGES[0];
}

async function renderLogin(message?: string): Promise<void> {
  const config = await api<{ dev_mode: boolean }>("GET", "/config").catch(() => ({ dev_mode: false }));
  const error = h("p", { class: "alert", role: "alert", id: "login-error" }, message ?? "");
  if (!message) error.hidden = true;
  const tokenInput = h("textarea", { name: "token", rows: 3, required: true, spellcheck: "false" });
  const tokenForm = h(
    "form",
    { class: "card", "aria-labelledby": "token-title" },
    h("h2", { id: "token-title" }, "Sign in with a token"),
    field("Bearer token", tokenInput, "A JWT from your identity provider (org, sub, role, teams, exp)."),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(tokenInput.value);
    render();
  });
  const forms: HTMLElement[] = [];
  if (config.dev_mode) {
    const org = h("input", { name: "org_id", required: true, value: "org-demo", autocomplete: "organization" });
    const agent = h("input", { name: "agent_id", required: true, value: "admin-1", autocomplete: "username" });
    const role = h(
      "select",
      { name: "role" },
      h("option", { value: "admin", selected: true }, "admin"),
      h("option", { value: "agent" }, "agent"),
    );
    const name = h("input", { name: "name", value: "", autocomplete: "name" });
    const teams = h("input", { name: "teams", value: "" });
    const channels = h("input", { name: "channels", value: "" });
    const devForm = h(
      "form",
      { class: "card", "aria-labelledby": "dev-title", id: "dev-login" },
      h("h2", { id: "dev-title" }, "Development login"),
      h("p", {}, "Development mode only: mints a short-lived token signed with the stack's shared secret."),
      field("Organization id", org),
      field("Agent id", agent),
      field("Role", role),
      field("Display name", name, "Optional; fills {{agent.name}} in saved replies."),
      field("Teams", teams, "Comma-separated team ids."),
      field("Channels", channels, "Comma-separated channel ids the agent may answer on."),
      h("button", { type: "submit", class: "primary" }, "Sign in"),
    );
    devForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const minted = await api<{ token: string }>("POST", "/dev/login", {
          org_id: org.value,
          agent_id: agent.value,
          role: role.value,
          name: name.value,
          teams: splitList(teams.value),
          channels: splitList(channels.value),
        });
        signIn(minted.token);
        render();
      } catch (exc) {
        error.hidden = false;
        error.textContent = exc instanceof Error ? exc.message : String(exc);
      }
    });
    forms.push(devForm);
  }
  forms.push(tokenForm);
  app.replaceChildren(
    h(
      "main",
      { id: "main", class: "login", tabindex: "-1" },
      h("h1", {}, "Inbox admin console"),
      error,
      h("div", { class: "login-forms" }, ...forms),
    ),
  );
}

function render(): void {
  if (stopPage) stopPage();
  stopPage = undefined;
  const who = session();
  if (!who) {
    void renderLogin();
    return;
  }
  const page = currentPage();
  const groups = [...new Set(PAGES.map((p) => p.group))];
  const nav = h(
    "nav",
    { "aria-label": "Admin settings" },
    h("h2", { class: "nav-title" }, "Admin settings"),
    ...groups.map((group) =>
      h(
        "div",
        { class: "nav-group" },
        h("h3", {}, group),
        h(
          "ul",
          {},
          ...PAGES.filter((p) => p.group === group).map((p) =>
            h(
              "li",
              {},
              h("a", { href: p.path, "aria-current": p === page ? "page" : null }, p.title),
            ),
          ),
        ),
      ),
    ),
  );
  const main = h("main", { id: "main", tabindex: "-1" });
  const header = h(
    "header",
    { class: "topbar" },
    h("span", { class: "brand" }, "Inbox admin"),
    h(
      "span",
      { class: "who", id: "who" },
      `${who.agent} · ${who.role} · ${who.org}`,
    ),
    h("button", { type: "button", onclick: () => signOut() }, "Sign out"),
  );
  app.replaceChildren(header, h("div", { class: "layout" }, nav, main));
  document.title = `${page.title} · Inbox admin console`;
  stopPage = page.render(main);
}

onSignedOut(() => render());
window.addEventListener("hashchange", () => {
  render();
  document.getElementById("main")?.focus();
});
render();
