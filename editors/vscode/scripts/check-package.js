// Checks what the .vsix would hold: the bundle, the grammar, the language
// configuration, the manifest, the README and the LICENSE, and nothing else
// (no node_modules, no sources). Run with `npm test` after `npm run bundle`.
"use strict";

const { execFileSync } = require("child_process");
const fs = require("fs");

const expected = [
  "LICENSE",
  "README.md",
  "dist/extension.js",
  "language-configuration.json",
  "package.json",
  "syntaxes/nudge.tmLanguage.json",
];
const listed = execFileSync("npx", ["vsce", "ls", "--no-dependencies"], { encoding: "utf8" })
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l.length > 0)
  .sort();
if (JSON.stringify(listed) !== JSON.stringify(expected)) {
  console.error(`unexpected package contents:\n${listed.join("\n")}`);
  process.exit(1);
}
// The bundle must carry the language client, so the package needs no node_modules.
const bundle = fs.readFileSync("dist/extension.js", "utf8");
if (!bundle.includes("LanguageClient")) {
  console.error("dist/extension.js does not bundle vscode-languageclient");
  process.exit(1);
}
console.log(`the package holds ${listed.length} files, as expected`);
