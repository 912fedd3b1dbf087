// The job editor: colours the code in a <pre> under a transparent textarea and numbers its
// lines. Without this script the textarea works as it is.
"use strict";

const KEYWORDS = new Set(("and as assert break class continue def del elif else except " +
  "False finally for from if import in is lambda None not or pass raise return True try " +
  "while with yield").split(" "));
const TOKENS = /(#[^\n]*)|("""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?)|(\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b)|([A-Za-z_]\w*)(?=\s*\()|([A-Za-z_]\w*)/g;

function escaped(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function span(kind, text) {
  return `<span class="tok-${kind}">${escaped(text)}</span>`;
}

function coloured(code) {
  let html = "";
  let last = 0;
  for (const m of code.matchAll(TOKENS)) {
    html += escaped(code.slice(last, m.index));
    const [all, comment, string, number, call, word] = m;
    if (comment) html += span("com", all);
    else if (string) html += span("str", all);
    else if (number) html += span("num", all);
    else if (call && !KEYWORDS.has(call)) html += span("fn", all);
    else if ((call || word) && KEYWORDS.has(all)) html += span("kw", all);
    else html += escaped(all);
    last = m.index + all.length;
  }
  // A trailing newline needs a character after it to take up its line in the <pre>.
  return html + escaped(code.slice(last)) + "\n";
}

function numberLines(gutter, count, bad) {
  const items = [];
  for (let i = 1; i <= count; i += 1) {
    const li = document.createElement("li");
    li.textContent = String(i);
    if (i === bad) li.className = "bad";
    items.push(li);
  }
  gutter.replaceChildren(...items);
}

function enhance(editor) {
  const area = editor.querySelector("textarea");
  const copy = editor.querySelector(".highlight");
  const gutter = editor.querySelector(".gutter");
  const bad = Number(editor.dataset.errorLine) || 0;
  const draw = () => {
    // The highlighted copy is built from escaped text only: the code is never parsed as HTML.
    copy.innerHTML = coloured(area.value);
    numberLines(gutter, area.value.split("\n").length, bad);
    copy.scrollTop = area.scrollTop;
    copy.scrollLeft = area.scrollLeft;
  };
  area.addEventListener("input", draw);
  area.addEventListener("scroll", () => {
    copy.scrollTop = area.scrollTop;
    copy.scrollLeft = area.scrollLeft;
    gutter.scrollTop = area.scrollTop;
  });
  area.addEventListener("keydown", (event) => {
    if (event.key !== "Tab" || event.shiftKey) return;
    event.preventDefault();
    area.setRangeText("    ", area.selectionStart, area.selectionEnd, "end");
    draw();
  });
  editor.classList.add("enhanced");
  draw();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const editor of document.querySelectorAll(".editor")) enhance(editor);
});
