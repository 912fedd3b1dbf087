// Signs a contract, or a job submission, in the browser: the operator's private key is read
// from the file they pick and used by WebCrypto here; only the signature is sent to the service.
"use strict";

function bytesOfBase64(text) {
  const raw = atob(text.replace(/\s+/g, ""));
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
  return out;
}

function base64OfBytes(bytes) {
  let raw = "";
  for (const b of new Uint8Array(bytes)) raw += String.fromCharCode(b);
  return btoa(raw);
}

function pkcs8OfPem(pem) {
  const found = /-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/.exec(pem);
  if (!found) throw new Error("not an unencrypted PKCS#8 PEM private key (BEGIN PRIVATE KEY)");
  return bytesOfBase64(found[1]);
}

async function signWith(file, canonical) {
  const key = await crypto.subtle.importKey(
    "pkcs8", pkcs8OfPem(await file.text()), { name: "Ed25519" }, false, ["sign"]);
  return base64OfBytes(await crypto.subtle.sign("Ed25519", key, bytesOfBase64(canonical)));
}

// RFC 8785 for what JSON.parse returns: keys sorted by UTF-16 code units (the default sort),
// strings and numbers as JSON.stringify writes them, which is what that RFC specifies.
function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const members = Object.keys(value).sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`);
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(value);
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// The bytes the service verifies (operators/submission.py): the domain line, then the
// canonical JSON of the contract, the code's SHA-256, the params (as parsed), no idempotency
// key and the time of signing, to the second.
async function submissionBytes(domain, form, params, signedAt) {
  const body = {
    contract_id: form.elements.contract.value,
    code_sha256: await sha256Hex(form.elements.code.value.replace(/\r\n?/g, "\n")),
    params,
    idempotency_key: null,
    signed_at: signedAt,
  };
  const head = bytesOfBase64(domain);
  const tail = new TextEncoder().encode(canonicalJson(body));
  const out = new Uint8Array(head.length + tail.length);
  out.set(head);
  out.set(tail, head.length);
  return out;
}

function signJobs() {
  const form = document.getElementById("job-form");
  const signing = document.getElementById("job-signing");
  if (!form || !signing) return;
  const picker = document.getElementById("key-file");
  const problem = document.getElementById("key-error");
  form.addEventListener("submit", async (event) => {
    const file = picker.files && picker.files[0];
    const run = event.submitter && event.submitter.value === "run";
    if (!file || !run || form.dataset.signed) return;
    event.preventDefault();
    problem.hidden = true;
    let params;
    try {
      params = JSON.parse(form.elements.params.value.trim() || "{}");
    } catch {
      // Sent as typed: the service says what is wrong with the params, and runs nothing.
      form.dataset.signed = "no";
      form.requestSubmit(event.submitter);
      return;
    }
    try {
      const signedAt = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      const bytes = await submissionBytes(signing.dataset.domain, form, params, signedAt);
      form.elements.signature.value = await signWith(file, base64OfBytes(bytes));
      form.elements.signed_at.value = signedAt;
      form.dataset.signed = "yes";
      form.requestSubmit(event.submitter);
    } catch (err) {
      problem.textContent = `${signing.dataset.failed || ""} ${err.message || err}`;
      problem.hidden = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", signJobs);

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("sign-form");
  const picker = document.getElementById("key-file");
  if (!form || !picker) return;
  const problem = document.getElementById("key-error");
  picker.addEventListener("change", async () => {
    problem.hidden = true;
    const file = picker.files && picker.files[0];
    if (!file) return;
    try {
      document.getElementById("signature").value = await signWith(file, form.dataset.canonical);
      // The key file itself is never part of the form: the picker has no name.
      form.submit();
    } catch (err) {
      problem.textContent = `${form.dataset.failed || ""} ${err.message || err}`;
      problem.hidden = false;
    }
  });
});
