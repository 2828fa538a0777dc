// The driver of a JavaScript code context (see README.md here): node runs this with two pipe fds, cells
// come as JSON lines on the first, results, errors and the end of each cell go as JSON lines on the second.
// The cell's stdout and stderr are node's own (children's too), read by the code server.
//
// Cells run in node's main context (vm.Script.runInThisContext): objects made by required modules and by
// cells share one realm, so `instanceof Error` and friends behave as in a plain node script.

const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const readline = require("node:readline");
const util = require("node:util");
const vm = require("node:vm");
const { createRequire } = require("node:module");

const commandFd = Number(process.argv[2]);
const eventFd = Number(process.argv[3]);
const SENTINEL = "\u0000\u001bSANDPIT-CELL-END:";
// Captured now: cells may replace globals.
const stringify = JSON.stringify;
const inspect = util.inspect;

let acorn = null;
try {
  acorn = require("acorn");
} catch {
  // Without acorn (Debian's node-acorn), top-level await still works, but its declarations stay in the cell.
}

const cwd = process.cwd();
globalThis.require = createRequire(path.join(cwd, "[cell]"));
globalThis.module = { exports: {}, require: globalThis.require, filename: path.join(cwd, "[cell]") };
globalThis.exports = globalThis.module.exports;
globalThis.__dirname = cwd;
globalThis.__filename = path.join(cwd, "[cell]");

function send(event) {
  fs.writeSync(eventFd, `${stringify(event)}\n`);
}

function describeError(error) {
  if (error instanceof Error || (error && typeof error === "object" && "stack" in error)) {
    return {
      name: String(error.name ?? "Error"),
      value: String(error.message ?? ""),
      traceback: cellFrames(String(error.stack ?? "")),
    };
  }
  return { name: "Error", value: `Uncaught ${inspect(error)}`, traceback: "" };
}

/** A stack without the driver's own frames (they come after the cell's, from where it ran the cell). */
function cellFrames(stack) {
  const lines = stack.split("\n");
  const driver = lines.findIndex(
    (line) => /^\s+at /.test(line) && (line.includes("(node:vm:") || line.includes(__filename)),
  );
  return (driver < 0 ? lines : lines.slice(0, driver)).join("\n");
}

function isInterruption(error) {
  return Boolean(error && typeof error === "object" && error.code === "ERR_SCRIPT_EXECUTION_INTERRUPTED");
}

/** Names a binding pattern declares (`const {a, b: [c]} = …` declares a and c). */
function patternNames(pattern, names) {
  switch (pattern.type) {
    case "Identifier":
      names.push(pattern.name);
      break;
    case "ObjectPattern":
      for (const property of pattern.properties)
        patternNames(property.type === "RestElement" ? property.argument : property.value, names);
      break;
    case "ArrayPattern":
      for (const element of pattern.elements) if (element) patternNames(element, names);
      break;
    case "RestElement":
      patternNames(pattern.argument, names);
      break;
    case "AssignmentPattern":
      patternNames(pattern.left, names);
      break;
  }
  return names;
}

/**
 * A cell with top-level `await` as an async function whose top-level declarations are hoisted out of it
 * (so they persist like a plain cell's) and whose last expression is its value — as node's REPL does.
 */
function wrapTopLevelAwait(code) {
  if (!acorn) return `(async () => {${code}\n})()`;
  const ast = acorn.parse(code, { ecmaVersion: "latest", sourceType: "script", allowAwaitOutsideFunction: true });
  const source = (node) => code.slice(node.start, node.end);
  const hoisted = [];
  const prologue = [];
  const edits = [];
  for (const [i, node] of ast.body.entries()) {
    if (node.type === "VariableDeclaration") {
      const keyword = node.kind === "var" ? "var" : "let";
      const assignments = [];
      for (const declarator of node.declarations) {
        for (const name of patternNames(declarator.id, [])) hoisted.push(`${keyword} ${name};`);
        if (declarator.init) assignments.push(`(${source(declarator.id)} = ${source(declarator.init)})`);
      }
      edits.push({ node, text: assignments.length ? `void (${assignments.join(", ")});` : ";" });
    } else if (node.type === "FunctionDeclaration") {
      hoisted.push(`var ${node.id.name};`);
      prologue.push(`${node.id.name} = ${source(node)};`);
      edits.push({ node, text: ";" });
    } else if (node.type === "ClassDeclaration") {
      hoisted.push(`let ${node.id.name};`);
      edits.push({ node, text: `${node.id.name} = ${source(node)};` });
    } else if (node.type === "ExpressionStatement" && i === ast.body.length - 1) {
      edits.push({ node, text: `return (${source(node.expression)});` });
    }
  }
  let body = code;
  for (const { node, text } of edits.reverse()) body = body.slice(0, node.start) + text + body.slice(node.end);
  // All on the cell's first line: the lines of a stack trace stay the cell's.
  return `${hoisted.join(" ")} (async () => {${prologue.join(" ")} ${body}\n})()`;
}

function compile(code, number) {
  const filename = `cell-${number}.js`;
  try {
    return new vm.Script(code, { filename });
  } catch (error) {
    if (!(error instanceof SyntaxError) || !/await/.test(code)) throw error;
    let wrapped;
    try {
      wrapped = wrapTopLevelAwait(code);
    } catch {
      throw error;
    }
    return new vm.Script(wrapped, { filename });
  }
}

/** The cell that awaits a promise; an interrupt (SIGINT) while it waits ends it. */
let waiting = null;

process.on("SIGINT", () => {
  if (waiting) waiting();
});
process.on("uncaughtException", (error) => {
  process.stderr.write(`Uncaught ${error?.stack ? error.stack : inspect(error)}\n`);
});
process.on("unhandledRejection", (reason) => {
  process.stderr.write(`Unhandled promise rejection: ${reason?.stack ? reason.stack : inspect(reason)}\n`);
});

function withEnv(env) {
  const saved = {};
  for (const [key, value] of Object.entries(env)) {
    saved[key] = Object.hasOwn(process.env, key) ? process.env[key] : undefined;
    process.env[key] = value;
  }
  return () => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  };
}

async function runCell({ cell, code, env }) {
  const restoreEnv = withEnv(env ?? {});
  let status = "ok";
  try {
    let value = compile(code, cell).runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (value !== null && typeof value === "object" && typeof value.then === "function") {
      value = await new Promise((resolve, reject) => {
        waiting = () => reject(Object.assign(new Error("interrupted"), { code: "ERR_SCRIPT_EXECUTION_INTERRUPTED" }));
        value.then(resolve, reject);
      });
    }
    if (value !== undefined) {
      send({ cell, type: "result", isMainResult: true, data: { "text/plain": inspect(value, { colors: false }) } });
    }
  } catch (error) {
    if (isInterruption(error)) {
      status = "interrupted";
      send({
        cell,
        type: "error",
        interrupted: true,
        name: "Interrupted",
        value: "the cell was interrupted",
        traceback: "",
      });
    } else {
      status = "error";
      send({ cell, type: "error", ...describeError(error) });
    }
  } finally {
    waiting = null;
    restoreEnv();
  }
  // Everything the cell wrote went out synchronously (stdout and stderr are pipes): the markers come after.
  fs.writeSync(1, `${SENTINEL}${cell}\u0000`);
  fs.writeSync(2, `${SENTINEL}${cell}\u0000`);
  send({ cell, type: "end", status });
}

const lines = readline.createInterface({
  // A socket on the pipe (epoll), not an fs stream: a pending threadpool read of a pipe makes process.exit() hang.
  input: new net.Socket({ fd: commandFd, readable: true, writable: false }),
  crlfDelay: Number.POSITIVE_INFINITY,
});
let queue = Promise.resolve();
lines.on("line", (line) => {
  const command = JSON.parse(line);
  queue = queue.then(() => runCell(command));
});
lines.on("close", () => process.exit(0));
