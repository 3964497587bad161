// Validate an AsyncAPI document with the official parser (@asyncapi/parser, spectral rules).
// Usage: node tools/node/validate-asyncapi.mjs docs/asyncapi.yaml
// Exit 0 when there is no diagnostic of severity error or warning; prints every diagnostic.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const path = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(path, "utf8"), { source: path });
const severities = ["error", "warning", "info", "hint"];
let failed = document === undefined;
for (const d of diagnostics) {
  const severity = severities[d.severity] ?? String(d.severity);
  if (d.severity <= 1) failed = true;
  console.log(`${severity} ${d.code} ${d.path.join(".")}: ${d.message}`);
}
console.log(failed ? "INVALID" : `VALID: ${document.allMessages().length} messages, ${document.allChannels().length} channels`);
process.exit(failed ? 1 : 0);
