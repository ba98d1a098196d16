#!/usr/bin/env bash
# Packages the extension from a clean install, as docs/editors.md says:
# `npm ci`, then `npm test` (bundles with esbuild, packages with vsce into a
# temporary .vsix and checks what it holds). Needs the npm registry and
# nothing else; skipped, with a message, when npm or the registry is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null; then
  echo "editors/vscode: npm is not installed; the extension's packaging is not checked" >&2
  exit 0
fi
if ! timeout 30 npm ping >/dev/null 2>&1; then
  echo "editors/vscode: the npm registry does not answer; the extension's packaging is not checked" >&2
  exit 0
fi
npm ci --no-audit --no-fund
npm test
