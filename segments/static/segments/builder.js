/* Segment builder: keeps the definition JSON (textarea#id_definition) and a tree of
   inputs in step. Typed values live in the state object, so adding or removing a
   condition re-renders without losing anything. Every change fires "change" on the
   form, which htmx turns into a debounced live count. */
(function () {
  "use strict";
  const form = document.getElementById("segment-form");
  const root = document.getElementById("builder");
  const textarea = document.getElementById("id_definition");
  if (!form || !root || !textarea) return;
  document.documentElement.classList.add("js");
  const choices = JSON.parse(document.getElementById("builder-choices").textContent);
  const propTypes = Object.fromEntries(choices.properties.map((p) => [p.name, p.type]));
  const OP_LABELS = {
    equals: "equals", not_equals: "does not equal", contains: "contains",
    not_contains: "does not contain", starts_with: "starts with", in: "is one of",
    exists: "exists", not_exists: "does not exist", "=": "=", "!=": "≠", ">": ">", ">=": "≥",
    "<": "<", "<=": "≤", between: "between", is_true: "is true", is_false: "is false",
    before: "before", after: "after", in_last_days: "in the last N days",
    in_next_days: "in the next N days", contains_any: "contains any of",
    contains_all: "contains all of", contains_none: "contains none of",
  };
  const SYSTEM = {
    age: { label: "Age", ops: ["between", ">=", "<=", "="], type: "number" },
    profile_type: { label: "Profile type", ops: ["equals"], type: "profile_type" },
    test_profile: { label: "Test profile", ops: ["is_true", "is_false"], type: "boolean" },
    reachable: { label: "Reachable on", ops: ["equals"], type: "channel" },
    first_seen: { label: "First seen", ops: ["in_last_days", "before", "after", "between"], type: "date" },
    last_seen: { label: "Last seen", ops: ["in_last_days", "before", "after", "between"], type: "date" },
  };
  const EVENT_PROP_OPS = ["equals", "not_equals", "contains", "starts_with", "in", "=", "!=", ">",
    ">=", "<", "<=", "between", "is_true", "is_false", "exists", "not_exists"];
  let state;

  function parse() {
    try {
      const value = JSON.parse(textarea.value || '{"all": []}');
      return value && (value.all || value.any) ? value : { all: [value] };
    } catch (e) {
      return null;
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else if (key === "text") node.textContent = value;
      else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
    }
    for (const child of children.flat()) if (child) node.append(child);
    return node;
  }

  function select(cls, label, options, current, onchange) {
    const node = el("select", { class: cls, "aria-label": label, on: { change: (e) => onchange(e.target.value) } });
    for (const [value, text] of options) {
      const option = el("option", { value, text });
      if (String(value) === String(current)) option.selected = true;
      node.append(option);
    }
    return node;
  }

  // Each box carries the definition path it edits ("$.all[0].count.value"), so an
  // error the server names by path is shown beside the box.
  let pathPrefix = "$";
  function input(cls, label, type, value, onchange, extra) {
    return el("input", Object.assign({
      class: cls, "aria-label": label, type, value: value === undefined || value === null ? "" : value,
      on: { input: (e) => onchange(e.target.value), change: (e) => onchange(e.target.value) },
    }, extra || {}, { "data-path": pathPrefix + ((extra && extra["data-path"]) || "") }));
  }

  function changed(structure) {
    textarea.value = JSON.stringify(state);
    if (structure) render();
    form.dispatchEvent(new Event("change", { bubbles: true }));
  }

  const asNumber = (v) => (v === "" || isNaN(Number(v)) ? v : Number(v));
  const asList = (v) => v.split(",").map((s) => s.trim()).filter(Boolean);

  // Value inputs that fit the operator and the type.
  function valueInputs(cond, type, prefix) {
    const op = cond.op;
    if (["exists", "not_exists", "is_true", "is_false"].includes(op)) return [];
    const set = (v) => { cond.value = v; changed(false); };
    if (type === "profile_type") {
      return [select("value", "Value", [["identified", "identified"], ["anonymous", "anonymous"]],
        cond.value, set)];
    }
    if (type === "channel") {
      return [select("value", "Channel", choices.channels.map((c) => [c, c]), cond.value, set)];
    }
    if (["in_last_days", "in_next_days"].includes(op)) {
      return [input("value", `${prefix}days`, "number", cond.value, (v) => set(asNumber(v)), { min: 0, "data-path": ".value" }), el("span", { text: "days" })];
    }
    if (["in", "contains_any", "contains_all", "contains_none"].includes(op)) {
      const shown = Array.isArray(cond.value) ? cond.value.join(", ") : "";
      return [input("value", `${prefix}values, comma separated`, "text", shown, (v) => set(asList(v)), { "data-path": ".value" })];
    }
    const inputType = type === "date" ? "date" : type === "number" ? "number" : "text";
    const convert = inputType === "number" ? asNumber : (v) => v;
    if (op === "between") {
      const pair = Array.isArray(cond.value) ? cond.value : ["", ""];
      cond.value = pair;
      return [
        input("value-from", `${prefix}from`, inputType, pair[0], (v) => { pair[0] = convert(v); changed(false); }, { "data-path": ".value[0]" }),
        el("span", { text: "and" }),
        input("value-to", `${prefix}to`, inputType, pair[1], (v) => { pair[1] = convert(v); changed(false); }, { "data-path": ".value[1]" }),
      ];
    }
    const extra = { "data-path": ".value" };
    if (inputType === "text" && suggestFor) extra.list = valuesList(suggestFor);
    return [input("value", `${prefix}value`, inputType, cond.value, (v) => set(convert(v)), extra)];
  }

  // Suggestions for a text property's value: its most common values, fetched once.
  const valueLists = new Map();
  let suggestFor = null;
  function valuesList(property) {
    if (!valueLists.has(property)) {
      const id = `property-values-${valueLists.size}`;
      const list = el("datalist", { id, "data-property": property });
      document.body.append(list);
      valueLists.set(property, id);
      const url = `${root.dataset.valuesUrl}?property=${encodeURIComponent(property)}`;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((response) => (response.ok ? response.json() : { values: [] }))
        .then((data) => list.replaceChildren(...data.values.map((value) => el("option", { value }))))
        .catch(() => {});
    }
    return valueLists.get(property);
  }

  function opsFor(type) { return (choices.ops[type] || []).map((op) => [op, OP_LABELS[op] || op]); }

  function propertyRow(cond) {
    const type = propTypes[cond.property] || "string";
    const names = choices.properties.map((p) => [p.name, p.default ? p.name : `${p.name} (${p.type})`]);
    if (cond.property && !propTypes[cond.property]) names.push([cond.property, `${cond.property} (unknown)`]);
    return [
      select("prop-name", "Property", names, cond.property, (v) => {
        cond.property = v; cond.op = choices.ops[propTypes[v] || "string"][0]; delete cond.value; changed(true);
      }),
      select("op", "Operator", opsFor(type), cond.op, (v) => { cond.op = v; delete cond.value; changed(true); }),
      ...withSuggestions(type === "string" && cond.property ? cond.property : null, () => valueInputs(cond, type, "")),
    ];
  }

  function withSuggestions(property, build) {
    suggestFor = property;
    try { return build(); } finally { suggestFor = null; }
  }

  // Inputs built inside `build` carry paths under `prefix`.
  function under(prefix, build) {
    const saved = pathPrefix;
    pathPrefix = prefix;
    try { return build(); } finally { pathPrefix = saved; }
  }

  function systemRow(cond) {
    const spec = SYSTEM[cond.system] || SYSTEM.age;
    return [
      select("system-kind", "System property", Object.entries(SYSTEM).map(([k, s]) => [k, s.label]), cond.system, (v) => {
        cond.system = v; cond.op = SYSTEM[v].ops[0]; delete cond.value; changed(true);
      }),
      select("op", "Operator", spec.ops.map((op) => [op, OP_LABELS[op] || op]), cond.op, (v) => { cond.op = v; delete cond.value; changed(true); }),
      ...valueInputs(cond, spec.type, cond.system === "age" ? "age " : ""),
    ];
  }

  function eventRow(cond) {
    const listId = "event-names";
    const countOp = cond.count ? cond.count.op : "";
    const windowKind = cond.within_days !== undefined ? "days" : (cond.from || cond.to) ? "dates" : "ever";
    const parts = [
      select("event-op", "Did or did not", [["did", "did"], ["did_not", "did not do"]], cond.op, (v) => { cond.op = v; changed(false); }),
      input("event-name", "Event", "text", cond.event, (v) => { cond.event = v; changed(false); }, { list: listId, placeholder: "event name", "data-path": ".event" }),
      select("count-op", "How many times", [["", "any number of times"], [">=", "at least"], ["=", "exactly"], ["<=", "at most"]], countOp, (v) => {
        if (v) cond.count = { op: v, value: (cond.count && cond.count.value) || 1 }; else delete cond.count;
        changed(true);
      }),
    ];
    if (cond.count) {
      parts.push(input("count-value", "Times", "number", cond.count.value, (v) => { cond.count.value = asNumber(v); changed(false); }, { min: 1, "data-path": ".count.value" }), el("span", { text: "times" }));
    }
    parts.push(select("window", "When", [["ever", "ever"], ["days", "in the last"], ["dates", "between"]], windowKind, (v) => {
      delete cond.within_days; delete cond.from; delete cond.to;
      if (v === "days") cond.within_days = 30;
      if (v === "dates") { cond.from = ""; cond.to = ""; }
      changed(true);
    }));
    if (windowKind === "days") {
      parts.push(input("within-days", "Days", "number", cond.within_days, (v) => { cond.within_days = asNumber(v); changed(false); }, { min: 1, "data-path": ".within_days" }), el("span", { text: "days" }));
    } else if (windowKind === "dates") {
      parts.push(input("from", "From", "date", cond.from, (v) => { cond.from = v; changed(false); }, { "data-path": ".from" }),
        el("span", { text: "and" }), input("to", "To", "date", cond.to, (v) => { cond.to = v; changed(false); }, { "data-path": ".to" }));
    }
    const agg = cond.aggregate;
    const aggregateRow = el("div", { class: "builder-sub" },
      select("agg-fn", "Sum or average", [["", "no total"], ["sum", "with a sum of"], ["avg", "with an average of"]], agg ? agg.fn : "", (v) => {
        if (v) cond.aggregate = Object.assign({ property: "", op: ">=", value: 0 }, cond.aggregate || {}, { fn: v }); else delete cond.aggregate;
        changed(true);
      }),
      agg ? [
        input("agg-property", "Event property", "text", agg.property, (v) => { agg.property = v; changed(false); }, { placeholder: "e.g. Amount", "data-path": ".aggregate.property" }),
        select("agg-op", "Comparison", ["=", ">", ">=", "<", "<=", "between"].map((o) => [o, OP_LABELS[o]]), agg.op, (v) => { agg.op = v; agg.value = v === "between" ? [0, 0] : 0; changed(true); }),
        ...under(pathPrefix + ".aggregate", () => valueInputs(agg, "number", "total ")),
      ] : []);
    const where = cond.where || [];
    const whereRows = where.map((filter, index) => under(`${pathPrefix}.where[${index}]`, () => el("div", { class: "builder-sub" },
      el("span", { class: "muted", text: "where" }),
      input("where-property", "Event property", "text", filter.property, (v) => { filter.property = v; changed(false); }, { placeholder: "event property", "data-path": ".property" }),
      select("op", "Operator", EVENT_PROP_OPS.map((o) => [o, OP_LABELS[o]]), filter.op, (v) => { filter.op = v; delete filter.value; changed(true); }),
      ...valueInputs(filter, ["=", "!=", ">", ">=", "<", "<=", "between"].includes(filter.op) ? "number" : "string", "property "),
      el("button", { type: "button", class: "link", text: "remove filter", on: { click: () => { where.splice(index, 1); if (!where.length) delete cond.where; changed(true); } } }))));
    return [
      el("div", { class: "builder-line" }, parts),
      ...whereRows,
      aggregateRow,
      el("button", { type: "button", class: "link add-where", text: "+ where event property…", on: { click: () => {
        cond.where = where; where.push({ property: "", op: "equals", value: "" }); changed(true);
      } } }),
    ];
  }

  function conditionNode(items, index, depth, groupPath) {
    const item = items[index];
    const negated = item && item.not !== undefined;
    const cond = negated ? item.not : item;
    const path = `${groupPath}[${index}]${negated ? ".not" : ""}`;
    return under(path, () => conditionBody(items, index, depth, item, negated, cond, path));
  }

  function conditionBody(items, index, depth, item, negated, cond, path) {
    const remove = el("button", { type: "button", class: "link remove", text: "remove", on: { click: () => { items.splice(index, 1); changed(true); } } });
    const not = el("label", { class: "not" }, el("input", { type: "checkbox", class: "negate", checked: negated, on: { change: (e) => {
      items[index] = e.target.checked ? { not: cond } : cond; changed(true);
    } } }), "not");
    if (cond.all || cond.any) {
      return el("div", { class: "builder-group nested" }, el("div", { class: "builder-line" }, not, remove), groupNode(cond, depth + 1, path));
    }
    let body;
    if (cond.event !== undefined) body = eventRow(cond);
    else if (cond.system !== undefined) body = [el("div", { class: "builder-line" }, systemRow(cond))];
    else body = [el("div", { class: "builder-line" }, propertyRow(cond))];
    return el("div", { class: "builder-condition" }, el("div", { class: "builder-line" }, not, el("div", { class: "builder-body" }, body), remove));
  }

  function groupNode(group, depth, path) {
    const key = group.any ? "any" : "all";
    const items = group[key];
    const firstProperty = choices.properties[0];
    const newProperty = () => ({ property: firstProperty.name, op: choices.ops[firstProperty.type][0], value: "" });
    const add = (node) => () => { items.push(node()); changed(true); };
    return el("div", { class: "builder-group" },
      el("div", { class: "builder-line" }, el("span", { text: "People who match" }),
        select("group-kind", "Match all or any", [["all", "all of"], ["any", "any of"]], key, (v) => {
          if (v === key) return;
          group[v] = items; delete group[key]; changed(true);
        })),
      items.map((_, index) => conditionNode(items, index, depth, `${path}.${key}`)),
      items.length ? null : el("p", { class: "muted", text: key === "all" ? "No conditions: everybody matches." : "Add a condition." }),
      el("div", { class: "builder-add" },
        el("button", { type: "button", class: "add-property", text: "+ Property", on: { click: add(newProperty) } }),
        el("button", { type: "button", class: "add-system", text: "+ Age / system", on: { click: add(() => ({ system: "age", op: "between", value: [25, 30] })) } }),
        el("button", { type: "button", class: "add-event", text: "+ Event", on: { click: add(() => ({ event: choices.events[0] || "", op: "did" })) } }),
        depth < 4 ? el("button", { type: "button", class: "add-group", text: "+ Group", on: { click: add(() => ({ any: [newProperty()] })) } }) : null));
  }

  function render() {
    root.replaceChildren(
      el("datalist", { id: "event-names" }, choices.events.map((name) => el("option", { value: name }))),
      groupNode(state, 0, "$"));
    showProblems();
  }

  // After each count: the error beside the box it is about, unknown event names
  // beside their box (with the suggestions as buttons in the result).
  const result = document.getElementById("segment-result");
  function showProblems() {
    root.querySelectorAll(".field-problem").forEach((node) => node.remove());
    root.querySelectorAll("[aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
    if (!result) return;
    const error = result.querySelector("#definition-error[data-path]");
    if (error) {
      const target = boxFor(error.dataset.path);
      if (target) note(target, error.dataset.message, "error");
    }
    result.querySelectorAll(".unknown-event").forEach((warning) => {
      root.querySelectorAll("input.event-name").forEach((box) => {
        if (box.value === warning.dataset.event) note(box, `no event named “${box.value}” yet`, "warning");
      });
    });
  }

  function boxFor(path) {
    const boxes = [...root.querySelectorAll("[data-path]")];
    return boxes.find((box) => box.dataset.path === path)
      || boxes.find((box) => box.dataset.path.startsWith(path))
      || boxes.filter((box) => path.startsWith(box.dataset.path))
        .sort((a, b) => b.dataset.path.length - a.dataset.path.length)[0];
  }

  function note(box, message, kind) {
    const text = message.charAt(0).toUpperCase() + message.slice(1);
    const id = `problem-${Math.random().toString(36).slice(2)}`;
    box.setAttribute("aria-invalid", "true");
    box.setAttribute("aria-describedby", id);
    box.after(el("span", { class: `field-problem ${kind}`, id, role: "alert", text }));
  }

  if (result) {
    result.addEventListener("htmx:afterSwap", showProblems);
    result.addEventListener("click", (event) => {
      const button = event.target.closest(".event-suggestion");
      if (!button) return;
      const rename = (node) => {
        if (!node || typeof node !== "object") return;
        if (node.event === button.dataset.event) node.event = button.dataset.suggestion;
        [].concat(node.all || [], node.any || [], node.not ? [node.not] : []).forEach(rename);
      };
      rename(state);
      changed(true);
    });
  }

  function load() {
    const parsed = parse();
    if (parsed === null) {
      root.replaceChildren(el("p", { class: "error", text: "The JSON below is not valid: fix it there." }));
      return;
    }
    state = parsed;
    render();
  }

  textarea.addEventListener("change", load);
  load();
})();
