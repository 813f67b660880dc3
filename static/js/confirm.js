// A form with data-confirm="question" is sent only after the person agrees.
// (A listener here rather than an onsubmit attribute: the Content-Security-Policy
// runs no inline script.)
document.addEventListener("submit", function (event) {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
