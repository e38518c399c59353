// Herald console: the live tail (server-sent events) and confirmation
// dialogs. Everything else is plain HTML; every form also works without
// this script (the server then asks for confirmation on a page of its own).
"use strict";

// Confirmation: a form or button with data-confirm opens a dialog; on
// "Confirm" the form is sent with confirmed=1 through the same button.
function confirmDialog(message, onConfirm) {
  const dialog = document.createElement("dialog");
  dialog.id = "confirm";
  const text = document.createElement("p");
  text.textContent = message;
  const actions = document.createElement("div");
  actions.className = "actions";
  const ok = document.createElement("button");
  ok.type = "button"; ok.className = "danger"; ok.id = "confirm-ok"; ok.textContent = "Confirm";
  const cancel = document.createElement("button");
  cancel.type = "button"; cancel.className = "link"; cancel.textContent = "Cancel";
  actions.append(ok, cancel);
  dialog.append(text, actions);
  document.body.append(dialog);
  ok.addEventListener("click", () => { dialog.close(); dialog.remove(); onConfirm(); });
  cancel.addEventListener("click", () => { dialog.close(); dialog.remove(); });
  dialog.showModal();
  ok.focus();
}

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  const submitter = ev.submitter;
  const message = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
  if (!message || form.dataset.confirmed === "1") return;
  ev.preventDefault();
  confirmDialog(message, () => {
    const flag = document.createElement("input");
    flag.type = "hidden"; flag.name = "confirmed"; flag.value = "1";
    form.append(flag);
    form.dataset.confirmed = "1";
    form.requestSubmit(submitter || undefined);
  });
});

// "Select all" checkbox of a table.
document.addEventListener("change", (ev) => {
  const box = ev.target;
  if (!box.matches || !box.matches("[data-select-all]")) return;
  box.closest("table").querySelectorAll("tbody input[type=checkbox]").forEach((b) => { b.checked = box.checked; });
});

// Live tail: the server sends each event as an HTML fragment it rendered
// (and escaped); newest on top, at most 200 kept.
function startTail(box) {
  const status = box.querySelector(".tail-status");
  const source = new EventSource(box.dataset.src);
  source.addEventListener("status", () => { status.textContent = "Live: waiting for events…"; });
  source.addEventListener("event", (ev) => {
    const holder = document.createElement("div");
    holder.innerHTML = ev.data;
    const item = holder.firstElementChild;
    if (!item) return;
    item.classList.add("new");
    status.after(item);
    status.textContent = "Live";
    while (box.children.length > 201) box.lastElementChild.remove();
  });
  source.addEventListener("end", (ev) => {
    status.textContent = "Tail ended: " + ev.data;
    source.close();
  });
  source.onerror = () => { status.textContent = "Reconnecting…"; };
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".tail[data-src]").forEach(startTail);
});
