import {
  api,
  ApiError,
  q,
  type Collection,
  type Rendered,
  type SavedReply,
  type SearchResult,
} from "../api";
import { field, h, splitList } from "../dom";
import { enumLabel, notices, pageHeader } from "./common";

const PREVIEW_CONTACT_KEY = "inbox.console.preview-contact";

export function repliesPage(main: HTMLElement): void {
  const note = notices();
  let collections: Collection[] = [];
  let selected: string | null = null;
  const collectionList = h("ul", { class: "collection-list", id: "collection-list", "aria-label": "Collections" });
  const detail = h("section", { class: "card", id: "collection-detail", "aria-labelledby": "collection-title" });

  async function loadCollections(keep?: string): Promise<void> {
    try {
      collections = (await api<{ collections: Collection[] }>("GET", "/collections")).collections;
      selected = keep ?? selected ?? collections[0]?.collection_id ?? null;
      renderCollections();
      await renderDetail();
    } catch (exc) {
      note.fail(exc);
    }
  }

  function renderCollections(): void {
    collectionList.replaceChildren(
      ...collections.map((c) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "collection-button",
              "aria-pressed": String(c.collection_id === selected),
              onclick: () => {
                selected = c.collection_id;
                renderCollections();
                void renderDetail();
              },
            },
            h("span", {}, c.name),
            h("small", {}, c.kind === "COLLECTION_KIND_PERSONAL" ? "personal" : sharingText(c)),
          ),
        ),
      ),
    );
  }

  async function renderDetail(): Promise<void> {
    const c = collections.find((x) => x.collection_id === selected);
    if (!c) {
      detail.replaceChildren(h("h2", { id: "collection-title" }, "No collection selected"));
      return;
    }
    let replies: SavedReply[] = [];
    try {
      replies = (await api<{ replies: SavedReply[] }>("GET", `/collections/${q(c.collection_id)}/replies?page_size=100`)).replies;
    } catch (exc) {
      note.fail(exc);
    }
    const shared = c.kind === "COLLECTION_KIND_SHARED";
    detail.replaceChildren(
      h("h2", { id: "collection-title" }, c.name),
      h("p", { class: "hint" }, shared ? sharingText(c) : "Your personal collection: only you see it."),
      shared ? sharingForm(c) : "",
      h("h3", {}, "Replies"),
      replies.length
        ? h("ul", { class: "reply-list", id: "reply-list" }, ...replies.map((r) => replyItem(r)))
        : h("p", { class: "hint" }, "No replies yet."),
      replyForm(c),
    );
  }

  function sharingForm(c: Collection): HTMLElement {
    const name = h("input", { name: "name", value: c.name, required: true, maxlength: 200 });
    const description = h("input", { name: "description", value: c.description, maxlength: 2000 });
    const teams = h("input", { name: "team_ids", value: c.team_ids.join(", ") });
    const channels = h("input", { name: "channel_ids", value: c.channel_ids.join(", ") });
    const form = h(
      "form",
      { class: "sub-form", "aria-label": `Sharing of ${c.name}` },
      h(
        "div",
        { class: "grid" },
        field("Name", name),
        field("Description", description),
        field("Shared with teams", teams, "Comma-separated team ids."),
        field("Shared with channels", channels, "Comma-separated channel ids."),
      ),
      h("button", { type: "submit" }, "Save collection"),
      h(
        "button",
        {
          type: "button",
          class: "danger",
          onclick: async () => {
            if (!confirm(`Delete “${c.name}” and every reply in it?`)) return;
            try {
              await api("DELETE", `/collections/${q(c.collection_id)}`);
              selected = null;
              await loadCollections();
              note.info(`Deleted ${c.name}.`);
            } catch (exc) {
              note.fail(exc);
            }
          },
        },
        "Delete collection",
      ),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("PUT", `/collections/${q(c.collection_id)}`, {
          name: name.value,
          description: description.value,
          team_ids: splitList(teams.value),
          channel_ids: splitList(channels.value),
        });
        await loadCollections(c.collection_id);
        note.info(`Saved ${name.value}.`);
      } catch (exc) {
        note.fail(exc);
      }
    });
    return form;
  }

  function editReply(r: SavedReply, item: HTMLElement): void {
    const title = h("input", { name: "title", value: r.title, required: true, maxlength: 500 });
    const body = h("textarea", { name: "body", required: true, maxlength: 2000, rows: 4 });
    body.value = r.body;
    const shortcut = h("input", { name: "shortcut", value: r.shortcut });
    const tags = h("input", { name: "tags", value: r.tags.join(", ") });
    const form = h(
      "form",
      { class: "sub-form", "aria-label": `Edit ${r.title}` },
      field("Title", title),
      field("Body", body),
      h("div", { class: "grid" }, field("Shortcut", shortcut), field("Tags", tags, "Comma-separated.")),
      h("button", { type: "submit", class: "primary" }, "Save reply"),
      h("button", { type: "button", onclick: () => void renderDetail() }, "Cancel"),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("PUT", `/replies/${q(r.reply_id)}`, {
          title: title.value,
          body: body.value,
          shortcut: shortcut.value,
          tags: splitList(tags.value),
        });
        await renderDetail();
        note.info(`Saved “${title.value}”.`);
      } catch (exc) {
        note.fail(exc);
      }
    });
    item.replaceChildren(form);
    title.focus();
  }

  function replyItem(r: SavedReply): HTMLElement {
    const item = h(
      "li",
      { "data-reply": r.reply_id },
      h(
        "div",
        {},
        h("strong", {}, r.title),
        r.shortcut ? h("code", { class: "shortcut" }, `/${r.shortcut}`) : null,
        r.tags.length ? h("span", { class: "tags" }, r.tags.join(", ")) : null,
      ),
      h("p", { class: "reply-body" }, r.body),
      h(
        "div",
        { class: "toolbar" },
        h("button", { type: "button", onclick: () => void preview(r), "aria-label": `Preview ${r.title}` }, "Preview"),
        h("button", { type: "button", onclick: () => editReply(r, item), "aria-label": `Edit ${r.title}` }, "Edit"),
        h(
          "button",
          {
            type: "button",
            class: "danger",
            "aria-label": `Delete ${r.title}`,
            onclick: async () => {
              if (!confirm(`Delete the reply “${r.title}”?`)) return;
              try {
                await api("DELETE", `/replies/${q(r.reply_id)}`);
                await renderDetail();
                note.info(`Deleted ${r.title}.`);
              } catch (exc) {
                note.fail(exc);
              }
            },
          },
          "Delete",
        ),
      ),
    );
    return item;
  }

  function replyForm(c: Collection): HTMLElement {
    const title = h("input", { name: "title", required: true, maxlength: 500 });
    const body = h("textarea", { name: "body", required: true, maxlength: 2000, rows: 4 });
    const shortcut = h("input", { name: "shortcut", pattern: "/?[a-z0-9][a-z0-9_\\-]{0,31}" });
    const tags = h("input", { name: "tags" });
    const form = h(
      "form",
      { class: "sub-form", id: "create-reply", "aria-labelledby": "create-reply-title" },
      h("h3", { id: "create-reply-title" }, `Create a saved reply in ${c.name}`),
      field("Title", title),
      field("Body", body, 'Placeholders: {{contact.name | fallback: "there"}}, {{agent.name}}.'),
      h("div", { class: "grid" }, field("Shortcut", shortcut, "Typed as /shortcut."), field("Tags", tags, "Comma-separated.")),
      h("button", { type: "submit", class: "primary" }, "Create saved reply"),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("POST", "/replies", {
          collection_id: c.collection_id,
          title: title.value,
          body: body.value,
          shortcut: shortcut.value,
          tags: splitList(tags.value),
        });
        const done = `Created “${title.value}”.`;
        await renderDetail();
        note.info(done);
      } catch (exc) {
        note.fail(exc);
      }
    });
    return form;
  }

  // --- create a shared collection ---
  const newName = h("input", { name: "name", required: true, maxlength: 200 });
  const newDescription = h("input", { name: "description", maxlength: 2000 });
  const newTeams = h("input", { name: "team_ids" });
  const newChannels = h("input", { name: "channel_ids" });
  const createCollection = h(
    "form",
    { class: "card", id: "create-collection", "aria-labelledby": "create-collection-title" },
    h("h2", { id: "create-collection-title" }, "Create a collection"),
    field("Name", newName),
    field("Description", newDescription),
    field("Share with teams", newTeams, "Comma-separated team ids."),
    field("Share with channels", newChannels, "Comma-separated channel ids."),
    h("button", { type: "submit", class: "primary" }, "Create collection"),
  );
  createCollection.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const made = await api<Collection>("POST", "/collections", {
        name: newName.value,
        description: newDescription.value,
        team_ids: splitList(newTeams.value),
        channel_ids: splitList(newChannels.value),
      });
      createCollection.reset();
      await loadCollections(made.collection_id);
      note.info(`Created the collection ${made.name}.`);
    } catch (exc) {
      note.fail(exc);
    }
  });

  // --- search and preview ---
  const searchInput = h("input", { type: "search", name: "query", id: "reply-search", placeholder: "/shortcut or words" });
  const results = h("ul", { class: "reply-list", id: "search-results", "aria-live": "polite" });
  const searchForm = h(
    "form",
    { class: "card", role: "search", "aria-labelledby": "search-title" },
    h("h2", { id: "search-title" }, "Find a reply"),
    h("div", { class: "inline-form" }, field("Search replies", searchInput), h("button", { type: "submit" }, "Search")),
    results,
  );
  searchForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const found = await api<{ results: SearchResult[] }>("GET", `/replies:search?query=${q(searchInput.value)}`);
      results.replaceChildren(
        ...(found.results.length
          ? found.results.map((hit) =>
              h(
                "li",
                { "data-reply": hit.reply.reply_id },
                h("strong", {}, hit.reply.title),
                hit.reply.shortcut ? h("code", { class: "shortcut" }, `/${hit.reply.shortcut}`) : null,
                h("small", { class: "match" }, enumLabel(hit.match, "MATCH_KIND_")),
                h("button", { type: "button", onclick: () => void preview(hit.reply), "aria-label": `Preview ${hit.reply.title}` }, "Preview"),
              ),
            )
          : [h("li", {}, "No reply matches.")]),
      );
    } catch (exc) {
      note.fail(exc);
    }
  });

  const previewContact = h("input", {
    name: "contact_id",
    id: "preview-contact",
    value: sessionStorage.getItem(PREVIEW_CONTACT_KEY) ?? "",
  });
  const previewTitle = h("p", { class: "hint", id: "preview-title" }, "Choose Preview on a reply.");
  const previewOut = h("output", { id: "reply-preview", class: "preview", "aria-live": "polite" });
  const previewPanel = h(
    "section",
    { class: "card", "aria-labelledby": "preview-heading" },
    h("h2", { id: "preview-heading" }, "Preview for a contact"),
    field("Contact id", previewContact, "The reply is rendered with this contact's attributes."),
    previewTitle,
    previewOut,
  );

  async function preview(r: SavedReply): Promise<void> {
    const contactId = previewContact.value.trim();
    sessionStorage.setItem(PREVIEW_CONTACT_KEY, contactId);
    try {
      const rendered = await api<Rendered>("POST", `/replies/${q(r.reply_id)}/render`, { contact_id: contactId });
      previewTitle.textContent = `${r.title}${contactId ? ` for ${contactId}` : ""}${
        contactId && !rendered.contact_found ? " (contact not found)" : ""
      }:`;
      previewOut.textContent = rendered.text;
    } catch (exc) {
      previewOut.textContent = "";
      previewTitle.textContent = exc instanceof ApiError ? exc.describe() : String(exc);
    }
  }

  main.replaceChildren(
    pageHeader(
      "Saved replies",
      "Pre-written replies agents insert with a /shortcut. Shared collections are visible to the teams and channels they are shared with; every agent also has a personal collection.",
    ),
    note.el,
    h(
      "div",
      { class: "columns" },
      h(
        "div",
        { class: "side" },
        h("section", { class: "card", "aria-labelledby": "collections-title" }, h("h2", { id: "collections-title" }, "Collections"), collectionList),
        createCollection,
      ),
      h("div", { class: "wide" }, detail),
      h("div", { class: "side" }, searchForm, previewPanel),
    ),
  );
  void loadCollections();
}

function sharingText(c: Collection): string {
  const parts = [];
  if (c.team_ids.length) parts.push(`teams ${c.team_ids.join(", ")}`);
  if (c.channel_ids.length) parts.push(`channels ${c.channel_ids.join(", ")}`);
  return parts.length ? `Shared with ${parts.join(" and ")}` : "Shared with nobody yet";
}
