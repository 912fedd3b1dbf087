// Signs a contract in the browser: the operator's private key is read from the file they
// pick and used by WebCrypto here; only the signature is sent to the service.
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
