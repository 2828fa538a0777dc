/** One instruction of the Dockerfile subset Sandpit builds templates from. */
export type DockerfileStep =
  | { op: "FROM"; ref: string; line: number }
  | { op: "RUN"; shell: string | null; args: string[] | null; line: number }
  | { op: "COPY"; sources: string[]; dest: string; chown: string | null; line: number }
  | { op: "ENV"; vars: Record<string, string>; line: number }
  | { op: "WORKDIR"; path: string; line: number }
  | { op: "USER"; user: string; line: number }
  | { op: "ENTRYPOINT" | "CMD"; args: string[]; line: number };

export class DockerfileError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(`Dockerfile line ${line}: ${message}`);
  }
}

/** Instructions that change nothing in a template, accepted so that ordinary Dockerfiles build. */
const IGNORED = new Set(["LABEL", "EXPOSE", "MAINTAINER", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "VOLUME", "ONBUILD"]);

/** Logical lines: comments dropped, `\` continuations joined, each with the line number it starts on. */
function logicalLines(text: string): { text: string; line: number }[] {
  const out: { text: string; line: number }[] = [];
  let current = "";
  let start = 0;
  text.split(/\r?\n/).forEach((raw, i) => {
    const trimmed = raw.trim();
    if (!current && (trimmed === "" || trimmed.startsWith("#"))) return;
    if (current && trimmed.startsWith("#")) return;
    if (!current) start = i + 1;
    if (trimmed.endsWith("\\")) {
      current += `${trimmed.slice(0, -1).trimEnd()} `;
      return;
    }
    current += trimmed;
    out.push({ text: current.trim(), line: start });
    current = "";
  });
  if (current.trim()) out.push({ text: current.trim(), line: start });
  return out;
}

/** The JSON (exec) form `["a", "b"]`, or undefined when the text is in shell form. */
function execForm(text: string, line: number): string[] | undefined {
  if (!text.startsWith("[")) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new DockerfileError(line, `not a valid JSON array: ${text}`);
  }
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === "string")) {
    throw new DockerfileError(line, "the exec form must be a JSON array of strings");
  }
  return parsed as string[];
}

/** Words split on blanks, honouring double and single quotes (for ENV, COPY and USER arguments). */
function words(text: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] ?? m[3] ?? ""));
  }
  return out;
}

function parseEnv(args: string, line: number): Record<string, string> {
  const vars: Record<string, string> = {};
  if (!args.includes("=") || /^[A-Za-z_][A-Za-z0-9_]*\s/.test(args.split("=")[0] ?? "")) {
    // Legacy form: `ENV NAME value with spaces`.
    const m = args.match(/^([A-Za-z_][A-Za-z0-9_]*)\s+(.*)$/);
    if (!m?.[1]) throw new DockerfileError(line, "ENV needs NAME=value");
    vars[m[1]] = m[2] ?? "";
    return vars;
  }
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g;
  for (let m = re.exec(args); m; m = re.exec(args)) {
    const raw = m[2] ?? "";
    vars[m[1]!] = raw.startsWith('"')
      ? raw.slice(1, -1).replace(/\\(.)/g, "$1")
      : raw.startsWith("'")
        ? raw.slice(1, -1)
        : raw;
  }
  if (Object.keys(vars).length === 0) throw new DockerfileError(line, "ENV needs NAME=value");
  return vars;
}

/** `$VAR` and `${VAR}` from the build's environment so far, as Docker expands them in these instructions. */
export function expandVars(text: string, env: Record<string, string>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, a, b) => env[a ?? b] ?? "");
}

/**
 * Parses the Dockerfile subset: FROM (first), RUN, COPY, ENV, WORKDIR, USER, ENTRYPOINT, CMD; ARG and
 * metadata-only instructions (LABEL, EXPOSE, …) are accepted and ignored. Everything else is an error
 * naming the line.
 */
export function parseDockerfile(text: string): DockerfileStep[] {
  const steps: DockerfileStep[] = [];
  for (const { text: entry, line } of logicalLines(text)) {
    const m = entry.match(/^([A-Za-z]+)\s*(.*)$/s);
    if (!m?.[1]) throw new DockerfileError(line, `cannot read "${entry}"`);
    const op = m[1].toUpperCase();
    const args = (m[2] ?? "").trim();
    if (steps.length === 0 && op !== "FROM" && op !== "ARG")
      throw new DockerfileError(line, "the first instruction must be FROM");
    if (IGNORED.has(op) || op === "ARG") continue;
    if (!args) throw new DockerfileError(line, `${op} needs arguments`);
    switch (op) {
      case "FROM": {
        if (steps.some((s) => s.op === "FROM")) throw new DockerfileError(line, "multi-stage builds are not supported");
        const [ref, as] = words(args);
        if (!ref || (as !== undefined && as.toUpperCase() !== "AS"))
          throw new DockerfileError(line, "FROM takes one template or image");
        steps.push({ op, ref, line });
        break;
      }
      case "RUN": {
        const exec = execForm(args, line);
        steps.push({ op, shell: exec ? null : args, args: exec ?? null, line });
        break;
      }
      case "COPY":
      case "ADD": {
        let parts = execForm(args, line) ?? words(args);
        let chown: string | null = null;
        const flags = parts.filter((p) => p.startsWith("--"));
        for (const flag of flags) {
          if (flag.startsWith("--chown=")) chown = flag.slice("--chown=".length);
          else throw new DockerfileError(line, `${op} ${flag} is not supported`);
        }
        parts = parts.filter((p) => !p.startsWith("--"));
        if (parts.length < 2) throw new DockerfileError(line, `${op} needs a source and a destination`);
        if (op === "ADD" && parts.some((p) => /^[a-z]+:\/\//i.test(p))) {
          throw new DockerfileError(line, "ADD from a URL is not supported; use RUN curl");
        }
        steps.push({ op: "COPY", sources: parts.slice(0, -1), dest: parts.at(-1)!, chown, line });
        break;
      }
      case "ENV":
        steps.push({ op, vars: parseEnv(args, line), line });
        break;
      case "WORKDIR":
        steps.push({ op, path: args, line });
        break;
      case "USER":
        steps.push({ op, user: args, line });
        break;
      case "ENTRYPOINT":
      case "CMD":
        steps.push({ op, args: execForm(args, line) ?? ["/bin/sh", "-c", args], line });
        break;
      default:
        throw new DockerfileError(
          line,
          `${op} is not supported (FROM, RUN, COPY, ADD, ENV, WORKDIR, USER, ENTRYPOINT, CMD)`,
        );
    }
  }
  if (!steps.some((s) => s.op === "FROM")) throw new DockerfileError(1, "a Dockerfile needs a FROM");
  return steps;
}
