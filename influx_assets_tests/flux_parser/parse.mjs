// Parse Flux programs with the real Flux parser (Rust, compiled to WebAssembly in
// @influxdata/flux-lsp-browser) and summarise what it saw.
//
//   stdin:  JSON array of Flux program strings
//   stdout: JSON array, one entry per program:
//           {"errors": [...], "strings": [...], "interpolations": N}   (+ "ast" with --ast)
//
// errors:         every "errors[].msg" found anywhere in the AST, plus one entry per
//                 BadStatement / BadExpression node (those carry no "errors" field, so
//                 e.g. `x = 1 @ 2` or `)` would otherwise look clean).
// strings:        decoded value of every StringLiteral node, in source order.
// interpolations: number of InterpolatedPart nodes ("${...}" inside a string).
//
// The package's ES module does `import * as wasm from "./…_bg.wasm"`, which only a
// bundler understands; Node 20 cannot import .wasm without an experimental flag. So we
// load the wasm-bindgen glue (…_bg.js) ourselves with that one import replaced by a
// setter, instantiate the .wasm with WebAssembly.instantiate, and hand the exports over.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const PKG = "@influxdata/flux-lsp-browser";
const pkgDir = dirname(createRequire(import.meta.url).resolve(`${PKG}/package.json`));
const GLUE = "flux-lsp-browser_bg.js";
const WASM_IMPORT = "import * as wasm from './flux-lsp-browser_bg.wasm';";
const MEMORY_INIT = /^cached(Int32|Uint8)Memory0 = new \w+\(wasm\.memory\.buffer\);$/gm;

const wasmModule = await WebAssembly.compile(readFileSync(join(pkgDir, "flux-lsp-browser_bg.wasm")));
const glueSource = readFileSync(join(pkgDir, GLUE), "utf8");
let generation = 0;

/** A fresh parser instance (own glue module + own wasm instance). */
async function loadParser() {
  let glue;
  if (/export function __wbg_set_wasm\b/.test(glueSource)) {
    // Newer wasm-bindgen output: the glue has no wasm import and a setter of its own.
    glue = await import(`${pathToFileURL(join(pkgDir, GLUE)).href}?generation=${generation++}`);
  } else {
    const memoryInits = glueSource.match(MEMORY_INIT) ?? [];
    if (glueSource.split(WASM_IMPORT).length !== 2 || memoryInits.length !== 2) {
      throw new Error(`${PKG}: unexpected layout of ${GLUE}; update parse.mjs for this version`);
    }
    const patched =
      glueSource.replace(WASM_IMPORT, "let wasm;").replace(MEMORY_INIT, "") +
      "\nexport function __wbg_set_wasm(exports) {\n  wasm = exports;\n  " +
      memoryInits.join("\n  ") +
      "\n}\n// generation " + generation++ + "\n";
    glue = await import("data:text/javascript;base64," + Buffer.from(patched).toString("base64"));
  }
  const instance = await WebAssembly.instantiate(wasmModule, { "./flux-lsp-browser_bg.js": glue });
  glue.__wbg_set_wasm(instance.exports);
  return glue;
}

/** Is `node` (reached by key `key` from `parent`) a StringLiteral? Some fields are typed
 *  StringLiteral in the Rust AST and then serialised without a "type" tag. */
function isStringLiteral(node, parent, key) {
  if (node.type === "StringLiteral") return true;
  if (node.type !== undefined || typeof node.value !== "string") return false;
  return (
    (parent?.type === "ImportDeclaration" && key === "path") ||
    (parent?.type === "TestCaseStatement" && key === "extends")
  );
}

function summarise(ast) {
  const errors = [];
  const strings = []; // [line, column, order, value]
  let interpolations = 0;
  const walk = (node, parent, key) => {
    if (Array.isArray(node)) {
      for (const item of node) walk(item, parent, key);
      return;
    }
    if (node === null || typeof node !== "object") return;
    for (const err of node.errors ?? []) errors.push(String(err?.msg ?? JSON.stringify(err)));
    if (node.type === "BadStatement") errors.push(`BadStatement: ${node.text}`);
    if (node.type === "BadExpression") errors.push(`BadExpression: ${node.text}`);
    if (node.type === "InterpolatedPart") interpolations += 1;
    if (isStringLiteral(node, parent, key)) {
      const start = node.location?.start ?? {};
      strings.push([start.line ?? 0, start.column ?? 0, strings.length, node.value]);
    }
    for (const [childKey, child] of Object.entries(node)) {
      if (childKey !== "location" && childKey !== "errors") walk(child, node, childKey);
    }
  };
  walk(ast, null, null);
  strings.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  return { errors, strings: strings.map((s) => s[3]), interpolations };
}

async function main() {
  const withAst = process.argv.includes("--ast");
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const programs = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  if (!Array.isArray(programs) || !programs.every((p) => typeof p === "string")) {
    throw new Error("stdin must be a JSON array of strings");
  }
  let parser = await loadParser();
  const results = [];
  for (const program of programs) {
    let ast;
    try {
      ast = parser.parse(program);
    } catch (err) {
      // A Rust panic leaves the wasm instance unusable: report it and start a fresh one.
      results.push({ errors: [`parser crashed: ${err?.message ?? err}`], strings: [], interpolations: 0 });
      parser = await loadParser();
      continue;
    }
    const result = summarise(ast);
    if (withAst) result.ast = ast;
    results.push(result);
  }
  process.stdout.write(JSON.stringify(results) + "\n");
}

main().catch((err) => {
  process.stderr.write(`parse.mjs: ${err?.stack ?? err}\n`);
  process.exit(2);
});
