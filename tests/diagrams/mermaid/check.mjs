// Parse each Mermaid file named on the command line with the real Mermaid parser (jsdom
// stands in for the browser's DOM; nothing is rendered). One JSON line per file.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.DOMParser = dom.window.DOMParser;
globalThis.Element = dom.window.Element;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

for (const file of process.argv.slice(2)) {
  try {
    const parsed = await mermaid.parse(readFileSync(file, "utf8"));
    console.log(JSON.stringify({ file, ok: true, type: parsed.diagramType }));
  } catch (error) {
    console.log(JSON.stringify({ file, ok: false, error: String(error.message ?? error) }));
    process.exitCode = 1;
  }
}
