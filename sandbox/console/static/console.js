// The console's common behaviour. Pages work without it; it only adds conveniences.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A form asking to confirm (data-confirm) says what it will do before it is sent.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
