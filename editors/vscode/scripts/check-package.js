// Packages the extension as `npm run package` does, into a temporary
// folder, and checks what the .vsix holds: the bundle, the grammar, the
// language configuration, the manifest, the README and the LICENSE, and
// nothing else (no node_modules, no sources). Run with `npm test`.
"use strict";

const { execFileSync } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const expected = [
  "[Content_Types].xml",
  "extension.vsixmanifest",
  "extension/LICENSE.txt",
  "extension/dist/extension.js",
  "extension/language-configuration.json",
  "extension/package.json",
  "extension/readme.md",
  "extension/syntaxes/nudge.tmLanguage.json",
];

// The names in a zip file's central directory (APPNOTE.TXT 4.3.12, 4.3.16).
function zipEntries(buf) {
  let end = buf.length - 22;
  while (end >= 0 && buf.readUInt32LE(end) !== 0x06054b50) end--;
  if (end < 0) throw new Error("not a zip file: no end of central directory");
  const count = buf.readUInt16LE(end + 10);
  let at = buf.readUInt32LE(end + 16);
  const names = [];
  for (let i = 0; i < count; i++) {
    if (buf.readUInt32LE(at) !== 0x02014b50) throw new Error("bad central directory entry");
    const nameLen = buf.readUInt16LE(at + 28);
    const extraLen = buf.readUInt16LE(at + 30);
    const commentLen = buf.readUInt16LE(at + 32);
    names.push(buf.toString("utf8", at + 46, at + 46 + nameLen));
    at += 46 + nameLen + extraLen + commentLen;
  }
  return names;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nudge-vscode-"));
try {
  const vsix = path.join(dir, "nudge.vsix");
  // The same flags as `npm run package`; `vscode:prepublish` bundles first.
  execFileSync(
    "npx",
    ["vsce", "package", "--no-dependencies", "--allow-missing-repository", "--out", vsix],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const listed = zipEntries(fs.readFileSync(vsix)).sort();
  // The bundle must carry the language client, so the package needs no node_modules.
  const bundle = fs.readFileSync("dist/extension.js", "utf8");
  if (JSON.stringify(listed) !== JSON.stringify(expected)) {
    console.error(`unexpected package contents:\n${listed.join("\n")}`);
    process.exitCode = 1;
  } else if (!bundle.includes("LanguageClient")) {
    console.error("dist/extension.js does not bundle vscode-languageclient");
    process.exitCode = 1;
  } else {
    console.log(`packaged: the .vsix holds ${listed.length} entries, as expected`);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
