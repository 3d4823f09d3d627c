// The sandbox page: one small script, no build step. Everything people wrote is put in with
// textContent; only HTML the server cleaned (the bot's messages, Planfix comments) is inserted as
// HTML. Actions are POSTs to the sandbox, which drives the fake Telegram and fake Planfix.
"use strict";

// selected: bumped whenever the user picks a group or topic, so that a refresh that was already
// on its way (asking for the old one) does not put the old selection back.
const state = { chat: null, thread: null, mode: null, target: null, view: null, lastJson: "", selected: 0 };
const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "html") node.innerHTML = value; // only server-cleaned HTML comes here
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

async function post(url, form) {
  const response = await fetch(url, { method: "POST", body: form, headers: { "X-Sandbox": "1" } });
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

// --- state ---------------------------------------------------------------------------------

function select(chat, thread) {
  state.chat = chat;
  state.thread = thread;
  state.lastJson = "";
  state.selected += 1;
}

async function refresh() {
  const selected = state.selected;
  const query = new URLSearchParams();
  if (state.chat !== null) query.set("chat", state.chat);
  if (state.thread !== null) query.set("thread", state.thread);
  const response = await fetch("/api/state?" + query);
  if (!response.ok) return;
  const text = await response.text();
  if (selected !== state.selected || text === state.lastJson) return;
  state.lastJson = text;
  const view = JSON.parse(text);
  state.view = view;
  state.chat = view.chat.chat_id;
  state.thread = view.thread_id;
  render(view);
}

let refreshTimer = null;
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, 150);
}

function render(view) {
  renderGroups(view);
  renderPeople(view);
  renderMessages(view);
  renderTask(view);
  fillSelect($("person"), view.people.map((p) => [p.key, p.name]));
  fillSelect($("employee"), view.employees.map((e) => [e.id, e.name]));
}

function fillSelect(select, options) {
  if (select.options.length === options.length) return;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value, text: label })));
}

function renderGroups(view) {
  $("groups").replaceChildren(...view.groups.map((group) =>
    el("button", {
      type: "button", class: group.chat_id === view.chat.chat_id ? "active" : "",
      "data-chat": group.chat_id, text: group.title + (group.forum ? " (forum)" : ""),
      onclick: () => { select(group.chat_id, null); refresh(); },
    })));
  $("topic-bar").hidden = !view.chat.forum;
  const topics = [{ thread_id: null, name: "General" }, ...view.chat.topics];
  $("topics").replaceChildren(...topics.map((topic) =>
    el("button", {
      type: "button", class: topic.thread_id === view.thread_id ? "active" : "", text: topic.name,
      onclick: () => { select(state.chat, topic.thread_id); refresh(); },
    })));
}

// Each person: linked to a Planfix employee or not, and one click to link (/link in their
// private chat, the code written as a comment in Planfix by their employee) or unlink.
function renderPeople(view) {
  $("people").replaceChildren(...view.people.map((p) => {
    const linked = p.linked;
    const label = linked ? `${p.name}: ${linked.name} (${linked.planfix_id}, ${linked.how})` : `${p.name}: not linked`;
    const action = linked ? "unlink" : "link";
    return el("span", { class: "person " + (linked ? "linked" : "unlinked"), "data-person": p.key },
      el("span", { text: label }),
      el("button", {
        type: "button", class: "link", "data-action": action, text: linked ? "Unlink" : "Link",
        onclick: async (event) => {
          event.target.disabled = true;
          try { await post("/api/people/" + p.key + "/" + action, new FormData()); }
          finally { refreshSoon(); }
        },
      }));
  }));
}

function renderMessages(view) {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const byId = new Map(view.messages.map((m) => [m.id, m]));
  box.replaceChildren(...view.messages.map((m) => bubble(m, byId)));
  if (!view.messages.length) box.append(el("div", { class: "hint", text: "No messages yet." }));
  if (atBottom || !box.dataset.seen) box.scrollTop = box.scrollHeight;
  box.dataset.seen = "1";
}

function bubble(m, byId) {
  const node = el("div", { class: "bubble" + (m.from_bot ? " bot" : ""), "data-message-id": m.id });
  node.append(el("div", { class: "author", text: m.author }));
  if (m.reply_to && byId.has(m.reply_to)) {
    const answered = byId.get(m.reply_to);
    const words = answered.text || (answered.html ? stripTags(answered.html) : "") || "(file)";
    node.append(el("div", { class: "quote", text: answered.author + ": " + words.slice(0, 80) }));
  }
  if (m.from_bot) {
    const url = m.file_id ? "/api/files/telegram/" + encodeURIComponent(m.file_id) : null;
    if (m.kind === "photo" && url) node.append(el("img", { src: url, alt: m.file_name || "photo" }));
    else if (m.kind !== "text" && url) node.append(el("a", { href: url, text: fileLabel(m.kind, m.file_name, m.file_size) }));
    else if (m.kind !== "text") node.append(el("div", { class: "file", text: fileLabel(m.kind, m.file_name, m.file_size) }));
    if (m.html) node.append(el("div", { class: "text", html: m.html }));
  } else {
    if (m.photo) node.append(el("img", { src: "/api/files/telegram/" + encodeURIComponent(m.photo), alt: "photo" }));
    if (m.document) {
      node.append(el("a", { href: "/api/files/telegram/" + encodeURIComponent(m.document_id), text: "📄 " + m.document }));
    }
    if (m.text) node.append(el("div", { class: "text", text: m.text }));
  }
  const actions = el("span", { class: "actions" },
    el("button", { type: "button", class: "link", text: "reply", onclick: () => startContext("reply", m) }));
  if (!m.from_bot) {
    actions.append(el("button", { type: "button", class: "link", text: "edit", onclick: () => startContext("edit", m) }));
  }
  node.append(el("div", { class: "meta" }, actions, document.createTextNode(
    " #" + m.id + (m.edited ? " · edited" : "") + (m.time ? " · " + m.time : ""))));
  return node;
}

function stripTags(html) {
  const scratch = document.createElement("div");
  scratch.innerHTML = html; // server-cleaned
  return scratch.textContent;
}

function fileLabel(kind, name, size) {
  const icon = { photo: "🖼", video: "🎬", audio: "🎵", voice: "🎤" }[kind] || "📄";
  return icon + " " + (name || kind) + (size ? " (" + Math.max(1, Math.round(size / 1024)) + " KB)" : "");
}

function renderTask(view) {
  const head = $("task-head");
  const comments = $("comments");
  if (!view.task) {
    head.replaceChildren(el("h2", { text: "Not bound to a Planfix task" }));
    const tasks = view.tasks.map((t) => "#" + t.number + " " + t.name).join("; ");
    comments.replaceChildren(el("div", { class: "hint", text:
      "As an admin (Anna), write “/task <title>” to create a task, or “/task <number>” to bind an existing one" +
      (tasks ? " (" + tasks + ")." : ".") }));
    $("comment-form").hidden = true;
    return;
  }
  head.replaceChildren(el("h2", {},
    el("span", { class: "number", text: "#" + view.task.number + " " }), document.createTextNode(view.task.name)));
  const atBottom = comments.scrollHeight - comments.scrollTop - comments.clientHeight < 40;
  comments.replaceChildren(...view.task.comments.map((c) => {
    const files = el("div", { class: "files" });
    for (const f of c.files) {
      const url = "/api/files/planfix/" + f.id;
      files.append(f.image ? el("img", { src: url, alt: f.name }) : el("a", { href: url, text: "📄 " + f.name }));
    }
    return el("div", { class: "comment" + (c.deleted ? " deleted" : ""), "data-comment-id": c.id },
      el("div", {},
        el("span", { class: "who", text: c.author }, c.by_bridge ? el("span", { class: "robot", text: "API" }) : null),
        el("span", { class: "when", text: c.time + (c.rewritten ? " · changed" : "") + (c.deleted ? " · deleted" : "") })),
      el("div", { class: "body", html: c.html }),
      c.files.length ? files : null);
  }));
  if (!view.task.comments.length) comments.append(el("div", { class: "hint", text: "No comments yet." }));
  if (atBottom) comments.scrollTop = comments.scrollHeight;
  $("comment-form").hidden = false;
}

// --- actions -------------------------------------------------------------------------------

function startContext(mode, message) {
  state.mode = mode;
  state.target = message.id;
  const words = message.text || (message.html ? stripTags(message.html) : "");
  $("compose-context-text").textContent = (mode === "edit" ? "Editing #" : "Replying to #") + message.id + ": " + words.slice(0, 60);
  $("compose-context").hidden = false;
  if (mode === "edit") {
    $("message-text").value = message.text;
    const person = state.view.people.find((p) => p.key === message.person);
    if (person) $("person").value = person.key;
  }
  $("message-text").focus();
}

function endContext() {
  state.mode = null;
  state.target = null;
  $("compose-context").hidden = true;
}

// A form's submit: its action, any error shown, then the page refreshed.
function onSubmit(action) {
  return async (event) => {
    event.preventDefault();
    try {
      await action();
    } catch (error) {
      alert(error.message);
    }
    refreshSoon();
  };
}

async function sendMessage() {
  const form = new FormData($("compose"));
  const base = "/api/groups/" + state.chat + "/messages";
  if (state.mode === "edit") {
    const edit = new FormData();
    edit.set("text", form.get("text"));
    await post(base + "/" + state.target + "/edit", edit);
  } else {
    if (state.mode === "reply") form.set("reply_to", state.target);
    if (state.thread !== null) form.set("thread", state.thread);
    await post(base, form);
  }
  $("message-text").value = "";
  $("message-file").value = "";
  endContext();
}

async function addComment() {
  await post("/api/tasks/" + state.view.task.number + "/comments", new FormData($("comment-form")));
  $("comment-text").value = "";
  $("comment-file").value = "";
}

async function newGroup() {
  const result = await post("/api/groups", new FormData($("new-group")));
  $("new-group").reset();
  select(result.chat_id, null);
}

async function newTopic() {
  const form = new FormData($("new-topic"));
  form.set("person", $("person").value);
  const result = await post("/api/groups/" + state.chat + "/topics", form);
  $("new-topic").reset();
  select(state.chat, result.thread_id);
}

// --- timeline ------------------------------------------------------------------------------

const seen = new Set();

function matches(row, needle) {
  if (!needle) return true;
  return [row.subject, row.type, row.correlation_id, row.summary].some((v) => v.toLowerCase().includes(needle));
}

function applyFilter() {
  const needle = $("filter").value.trim().toLowerCase();
  let shown = 0;
  for (const tr of $("events").children) {
    const visible = matches(tr.row, needle);
    tr.hidden = !visible;
    if (visible) shown += 1;
  }
  $("event-count").textContent = shown + " of " + seen.size + " events";
}

function addEvent(row) {
  if (seen.has(row.key)) return;
  seen.add(row.key);
  const tr = el("tr", { "data-key": row.key, "data-type": row.type, onclick: () => showEvent(row, tr) },
    el("td", { text: row.time.slice(11, 23) }),
    el("td", { text: row.subject }),
    el("td", { class: "t-" + row.type.split(".")[0], text: row.type }),
    el("td", {}, el("span", { class: "corr", title: "show only this story", text: row.correlation_id.slice(0, 12),
      onclick: (event) => { event.stopPropagation(); $("filter").value = row.correlation_id; applyFilter(); } })),
    el("td", { class: "summary", text: row.summary }));
  tr.row = row;
  // Newest first; streams are read side by side, so place by time.
  const body = $("events");
  let before = body.firstChild;
  while (before && before.row.time > row.time) before = before.nextSibling;
  body.insertBefore(tr, before);
  const needle = $("filter").value.trim().toLowerCase();
  tr.hidden = !matches(row, needle);
  $("event-count").textContent = seen.size + " events";
}

async function showEvent(row, tr) {
  for (const selected of document.querySelectorAll("#events tr.selected")) selected.classList.remove("selected");
  tr.classList.add("selected");
  const response = await fetch("/api/events/" + row.stream + "/" + row.seq);
  $("event-json").textContent = response.ok ? JSON.stringify(await response.json(), null, 2) : await response.text();
}

function followEvents() {
  const source = new EventSource("/api/events");
  source.onmessage = (message) => {
    addEvent(JSON.parse(message.data));
    refreshSoon(); // most events mean something changed in the group or the task
  };
}

// --- start ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("compose").addEventListener("submit", onSubmit(sendMessage));
  $("message-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("compose").requestSubmit(); }
  });
  $("compose-cancel").addEventListener("click", endContext);
  $("comment-form").addEventListener("submit", onSubmit(addComment));
  $("new-group").addEventListener("submit", onSubmit(newGroup));
  $("new-topic").addEventListener("submit", onSubmit(newTopic));
  $("filter").addEventListener("input", applyFilter);
  followEvents();
  refresh();
  setInterval(refresh, 1500);
});
