// Starts `nudge lsp` for `.flow` files; esbuild bundles it with the client
// library into dist/extension.js (`npm run bundle`).
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("nudge").get("server.path", "nudge");
  const serverOptions = { command, args: ["lsp"] };
  const clientOptions = {
    // Files changed outside the editor are reported through the watchers
    // the server registers itself (flows, nudge.toml, templates).
    documentSelector: [{ scheme: "file", language: "nudge" }],
  };
  client = new LanguageClient("nudge", "Nudge", serverOptions, clientOptions);
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
