import { api, ApiError, q, type AttributeDefinition, type ContactCard, type Definitions } from "../api";
import { field, h, splitList, toggle } from "../dom";
import { enumLabel, notices, pageHeader } from "./common";

const TYPES = ["TEXT", "NUMBER", "EMAIL", "PHONE", "URL", "DATE", "BOOLEAN", "LIST"];
const CARD_CONTACT_KEY = "inbox.console.card-contact";

export function attributesPage(main: HTMLElement): void {
  let loaded: Definitions = { definitions: [], version: "0" };
  let order: AttributeDefinition[] = [];
  let reordering = false;
  const note = notices();
  const list = h("ul", { class: "attribute-list", id: "attribute-list", "aria-label": "Contact attributes" });
  const reorderButton = h("button", { type: "button", id: "reorder" }, "Reorder");
  const saveButton = h("button", { type: "button", class: "primary", id: "save-order" }, "Save order");
  const cancelButton = h("button", { type: "button" }, "Cancel");
  const reorderHelp = h(
    "p",
    { class: "hint", id: "reorder-help" },
    "Drag an attribute by its handle, or focus a handle and press the Up and Down arrow keys. Then save the order.",
  );
  const toolbar = h("div", { class: "toolbar" }, reorderButton, saveButton, cancelButton);

  function setReordering(on: boolean): void {
    reordering = on;
    reorderButton.hidden = on;
    saveButton.hidden = !on;
    cancelButton.hidden = !on;
    reorderHelp.hidden = !on;
    list.classList.toggle("reordering", on);
    if (!on) order = [...loaded.definitions];
    renderList();
  }

  async function load(message?: string): Promise<void> {
    try {
      loaded = await api<Definitions>("GET", "/attributes");
      order = [...loaded.definitions];
      renderList();
      if (message) note.info(message);
      await refreshCard();
    } catch (exc) {
      note.fail(exc);
    }
  }

  function staleNotice(): void {
    const reload = h("button", { type: "button", id: "reload" }, "Reload");
    reload.addEventListener("click", async () => {
      setReordering(false);
      await load("Reloaded.");
    });
    note.fail("");
    const alert = note.el.querySelector(".alert") as HTMLElement;
    alert.replaceChildren(
      h("span", {}, "The attributes changed meanwhile, reload and try again. "),
      reload,
    );
  }

  async function write(action: () => Promise<unknown>, done: string): Promise<void> {
    try {
      await action();
      await load(done);
    } catch (exc) {
      if (exc instanceof ApiError && exc.isConflict) staleNotice();
      else note.fail(exc);
    }
  }

  function move(index: number, to: number): void {
    if (to < 0 || to >= order.length || to === index) return;
    const [item] = order.splice(index, 1);
    order.splice(to, 0, item);
    renderList();
    const handle = list.querySelector<HTMLButtonElement>(`li[data-key="${item.key}"] .handle`);
    handle?.focus();
    note.info(`${item.label} moved to position ${to + 1} of ${order.length}.`);
  }

  function startDrag(event: PointerEvent, li: HTMLLIElement): void {
    if (!reordering || event.button !== 0) return;
    event.preventDefault();
    li.classList.add("dragging");
    // Listen on the window, not the handle: moving the item in the DOM drops pointer capture.
    const onMove = (e: PointerEvent): void => {
      const siblings = [...list.children].filter((c) => c !== li) as HTMLElement[];
      const before = siblings.find((s) => {
        const box = s.getBoundingClientRect();
        return e.clientY < box.top + box.height / 2;
      });
      if (before === undefined && list.lastElementChild !== li) list.append(li);
      else if (before !== undefined && li.nextElementSibling !== before) list.insertBefore(li, before);
    };
    const onUp = (): void => {
      window.removeEventListener("pointermove", onMove);
      window.removeEventListener("pointerup", onUp);
      window.removeEventListener("pointercancel", onUp);
      li.classList.remove("dragging");
      const keys = [...list.children].map((c) => (c as HTMLElement).dataset.key);
      order = keys.map((k) => order.find((d) => d.key === k) as AttributeDefinition);
      const position = keys.indexOf(li.dataset.key) + 1;
      renderList();
      note.info(`${li.dataset.label} moved to position ${position} of ${keys.length}.`);
    };
    window.addEventListener("pointermove", onMove);
    window.addEventListener("pointerup", onUp);
    window.addEventListener("pointercancel", onUp);
  }

  function renameForm(def: AttributeDefinition, li: HTMLLIElement): void {
    const input = h("input", { name: "label", value: def.label, required: true, maxlength: 100 });
    const form = h(
      "form",
      { class: "inline-form" },
      field(`New label for ${def.label}`, input),
      h("button", { type: "submit", class: "primary" }, "Save"),
      h("button", { type: "button", onclick: () => renderList() }, "Cancel"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void write(
        () => api("PATCH", `/attributes/${q(def.key)}`, { label: input.value, expected_version: loaded.version }),
        `Renamed ${def.key} to “${input.value}”.`,
      );
    });
    li.querySelector(".attribute-actions")?.replaceChildren(form);
    input.focus();
  }

  function renderList(): void {
    list.replaceChildren(
      ...order.map((def, index) => {
        const li = h("li", { "data-key": def.key, "data-label": def.label, class: def.enabled ? "" : "disabled" });
        const handle = h(
          "button",
          {
            type: "button",
            class: "handle",
            "aria-label": `Move ${def.label} (position ${index + 1} of ${order.length})`,
            "aria-describedby": "reorder-help",
            hidden: !reordering,
          },
          "⠿",
        );
        handle.addEventListener("pointerdown", (e) => startDrag(e, li));
        handle.addEventListener("keydown", (e) => {
          if (e.key === "ArrowUp") {
            e.preventDefault();
            move(index, index - 1);
          } else if (e.key === "ArrowDown") {
            e.preventDefault();
            move(index, index + 1);
          }
        });
        const actions = h(
          "div",
          { class: "attribute-actions" },
          toggle(`Show ${def.label} to agents`, def.enabled, (next) =>
            write(
              () => api("PATCH", `/attributes/${q(def.key)}`, { enabled: next }),
              `${def.label} is now ${next ? "shown" : "hidden"}.`,
            ),
          ),
          h("button", { type: "button", onclick: () => renameForm(def, li), "aria-label": `Rename ${def.label}` }, "Rename"),
          def.built_in
            ? null
            : h(
                "button",
                {
                  type: "button",
                  class: "danger",
                  "aria-label": `Delete ${def.label}`,
                  onclick: () => {
                    if (!confirm(`Delete the attribute “${def.label}”? Its values are no longer shown anywhere.`)) return;
                    void write(
                      () => api("DELETE", `/attributes/${q(def.key)}?expected_version=${q(loaded.version)}`),
                      `Deleted ${def.label}.`,
                    );
                  },
                },
                "Delete",
              ),
        );
        actions.hidden = reordering; // a toggle or rename would reload and drop the pending order
        li.append(
          handle,
          h(
            "div",
            { class: "attribute-text" },
            h("span", { class: "attribute-label" }, def.label),
            h(
              "span",
              { class: "attribute-meta" },
              h("code", {}, def.key),
              ` · ${enumLabel(def.type, "ATTRIBUTE_TYPE_")}`,
              def.built_in ? " · built-in" : "",
              def.options.length ? ` · ${def.options.join(", ")}` : "",
            ),
          ),
          actions,
        );
        return li;
      }),
    );
  }

  reorderButton.addEventListener("click", () => setReordering(true));
  cancelButton.addEventListener("click", () => {
    setReordering(false);
    note.info("Order unchanged.");
  });
  saveButton.addEventListener("click", async () => {
    try {
      await api("PUT", "/attributes:reorder", { keys: order.map((d) => d.key), expected_version: loaded.version });
      setReordering(false);
      await load("Order saved.");
    } catch (exc) {
      if (exc instanceof ApiError && exc.isConflict) staleNotice();
      else note.fail(exc);
    }
  });

  // --- create ---
  const keyInput = h("input", { name: "key", required: true, pattern: "[a-z][a-z0-9_]{0,63}", maxlength: 64 });
  const labelInput = h("input", { name: "label", required: true, maxlength: 100 });
  const typeSelect = h("select", { name: "type" }, ...TYPES.map((t) => h("option", { value: t }, enumLabel(t, ""))));
  const optionsInput = h("input", { name: "options" });
  const optionsField = field("Options", optionsInput, "Comma-separated; list type only.");
  optionsField.hidden = true;
  typeSelect.addEventListener("change", () => (optionsField.hidden = typeSelect.value !== "LIST"));
  const createForm = h(
    "form",
    { class: "card", "aria-labelledby": "create-attribute-title", id: "create-attribute" },
    h("h2", { id: "create-attribute-title" }, "Create a custom attribute"),
    h(
      "div",
      { class: "grid" },
      field("Key", keyInput, "Lower case letters, digits and _; never changes."),
      field("Label", labelInput),
      field("Type", typeSelect),
      optionsField,
    ),
    h("button", { type: "submit", class: "primary" }, "Create attribute"),
  );
  createForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const body: Record<string, unknown> = {
      key: keyInput.value,
      label: labelInput.value,
      type: `ATTRIBUTE_TYPE_${typeSelect.value}`,
    };
    if (typeSelect.value === "LIST") body.options = splitList(optionsInput.value);
    void write(async () => {
      await api("POST", "/attributes", body);
      createForm.reset();
      optionsField.hidden = true;
    }, `Created ${body.key}.`);
  });

  // --- the contact card as agents see it ---
  const contactInput = h("input", {
    name: "contact_id",
    id: "card-contact",
    value: sessionStorage.getItem(CARD_CONTACT_KEY) ?? "",
  });
  const card = h("dl", { class: "contact-card", id: "card-preview", "aria-live": "polite" });
  const cardNote = h("p", { class: "hint", id: "card-note" }, "Enter a contact id to see its card.");
  async function refreshCard(): Promise<void> {
    const id = contactInput.value.trim();
    if (!id) return;
    sessionStorage.setItem(CARD_CONTACT_KEY, id);
    try {
      const result = await api<ContactCard>("GET", `/contacts/${q(id)}/card`);
      cardNote.textContent = `What agents see for ${result.contact_id}:`;
      card.replaceChildren(
        ...result.fields.flatMap((f) => [
          h("dt", { "data-key": f.key }, f.label),
          h("dd", {}, f.has_value ? (f.value?.display ?? "") : "—"),
        ]),
      );
    } catch (exc) {
      card.replaceChildren();
      cardNote.textContent = exc instanceof ApiError ? exc.describe() : String(exc);
    }
  }
  const cardForm = h(
    "form",
    { class: "card contact-card-panel", "aria-labelledby": "card-title" },
    h("h2", { id: "card-title" }, "Contact card preview"),
    h("div", { class: "inline-form" }, field("Contact id", contactInput), h("button", { type: "submit" }, "Show card")),
    cardNote,
    card,
  );
  cardForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void refreshCard();
  });

  main.replaceChildren(
    pageHeader(
      "Contact attributes",
      "Choose which contact attributes agents see on the right of the conversation view, and in which order. This applies to every agent of the organization.",
    ),
    note.el,
    h(
      "div",
      { class: "columns" },
      h("section", { class: "card", "aria-labelledby": "attributes-title" }, h("h2", { id: "attributes-title" }, "Attributes"), toolbar, reorderHelp, list),
      h("div", { class: "side" }, cardForm, createForm),
    ),
  );
  setReordering(false);
  void load();
}
