// Starts `nudge lsp` for `.flow` files. Plain JavaScript: no build step.
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("nudge").get("server.path", "nudge");
  const serverOptions = { command, args: ["lsp"] };
  const clientOptions = {
    documentSelector: [{ scheme: "file", language: "nudge" }],
    synchronize: {
      // Files edited outside the editor (git checkout, generators) are re-read.
      fileEvents: vscode.workspace.createFileSystemWatcher("**/*.flow"),
    },
  };
  client = new LanguageClient("nudge", "Nudge", serverOptions, clientOptions);
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
