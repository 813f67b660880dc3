// Find People: leave unused filters out of the request, so the URL in the address bar
// stays short; a ticked or unticked checkbox searches at once (the text box waits for
// a pause in the typing).
document.addEventListener("htmx:configRequest", function (event) {
  if (!event.detail.elt.closest || !event.detail.elt.closest(".people-search")) return;
  for (const [name, value] of Array.from(event.detail.formData.entries())) {
    if (value === "") event.detail.formData.delete(name);
  }
});

document.addEventListener("change", function (event) {
  const form = event.target.closest && event.target.closest(".people-search");
  if (form && event.target.type === "checkbox" && window.htmx) window.htmx.trigger(form, "search");
});
