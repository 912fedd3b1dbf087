// The dataset form: choosing a CSV file fills one column row per name in its header line,
// read here in the browser (nothing is sent until the form is). The server checks it all
// again; without this script the rows are typed by hand.
"use strict";

function headerNames(text) {
  const line = text.replace(/^\uFEFF/, "").split(/\r?\n/, 1)[0];
  const names = [];
  let current = "", quoted = false;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quoted && c === '"' && line[i + 1] === '"') { current += '"'; i += 1; }
    else if (c === '"') { quoted = !quoted; }
    else if (c === "," && !quoted) { names.push(current.trim()); current = ""; }
    else { current += c; }
  }
  names.push(current.trim());
  return names.filter((n) => n !== "");
}

function numberRow(row, n) {
  for (const input of row.querySelectorAll("input, select")) {
    const id = input.name + "_" + n;
    const label = row.querySelector(`label[for="${input.id}"]`);
    input.id = id;
    if (label) label.htmlFor = id;
  }
}

function blankRow(rows) {
  const row = rows.querySelector(".column-row").cloneNode(true);
  row.classList.remove("invalid");
  for (const error of row.querySelectorAll(".error")) error.remove();
  for (const input of row.querySelectorAll("input")) input.value = "";
  row.querySelector("select").value = "attribute";
  return row;
}

function fillColumns(rows, names) {
  const template = blankRow(rows);
  rows.replaceChildren();
  names.forEach((name, i) => {
    const row = template.cloneNode(true);
    row.querySelector("input[name=col_name]").value = name;
    numberRow(row, i + 1);
    rows.append(row);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const file = document.getElementById("file");
  const rows = document.getElementById("column-rows");
  const note = document.getElementById("prefilled");
  if (!file || !rows) return;
  document.getElementById("add-column").addEventListener("click", () => {
    const row = blankRow(rows);
    numberRow(row, rows.children.length + 1);
    rows.append(row);
  });
  file.addEventListener("change", () => {
    const chosen = file.files[0];
    if (!chosen || !/\.csv$/i.test(chosen.name)) return;
    const reader = new FileReader();
    reader.addEventListener("load", () => {
      const names = headerNames(String(reader.result));
      if (names.length === 0) return;
      fillColumns(rows, names);
      note.textContent = note.dataset.template.replace("{n}", String(names.length));
      note.hidden = false;
    });
    // The header line is at the start: a small slice is enough, whatever the file's size.
    reader.readAsText(chosen.slice(0, 64 * 1024), "utf-8");
  });
});
