import { z } from "zod";
import { ApiError } from "../../errors.js";
import { templateAliasOf } from "../opensandbox/mapping.js";
import { templateFrom } from "./mapping.js";

/** One step of E2B's template builder (`runCmd`, `copy`, `setEnvs`, …) as its SDK serialises it. */
const templateStepSchema = z
  .object({
    type: z.string().min(1),
    args: z.array(z.string()).default([]),
    filesHash: z.string().optional(),
    force: z.boolean().optional(),
  })
  .passthrough();

/** `POST /v2/templates/{templateID}/builds/{buildID}`: the template the SDK built up (TemplateBuildStartV2). */
export const templateBuildStartSchema = z
  .object({
    fromImage: z.string().min(1).optional(),
    fromTemplate: z.string().min(1).optional(),
    fromImageRegistry: z
      .object({
        type: z.string(),
        username: z.string().optional(),
        password: z.string().optional(),
      })
      .passthrough()
      .optional(),
    startCmd: z.string().optional(),
    readyCmd: z.string().optional(),
    steps: z.array(templateStepSchema).default([]),
    force: z.boolean().optional(),
  })
  .passthrough();
export type TemplateBuildStart = z.infer<typeof templateBuildStartSchema>;

/** E2B's base image: Sandpit's `base` template has what it has (bash, python, node, git, the `user` account). */
const E2B_BASE_IMAGES = /^(docker\.io\/)?e2bdev\/(base|code-interpreter)(:[\w.-]+)?$/;

/** The account and directory E2B's builder runs steps in until the template says otherwise. */
const E2B_DEFAULT_USER = "user";
const E2B_DEFAULT_WORKDIR = "/home/user";

/** What an E2B template becomes: Sandpit's Dockerfile, the uploads it copies from, how its lines map back. */
export interface TranslatedTemplate {
  dockerfile: string;
  /** Every `filesHash` a COPY step names: its upload is unpacked under `<hash>/` in the build context. */
  filesHashes: string[];
  fromAuth?: { username: string; password: string };
  /** Dockerfile line → E2B step (1-based, as the SDK's stack traces count: 0 is the base). */
  stepOfLine: Map<number, number>;
  /** Things the build does differently from E2B's, for the build's log. */
  notes: string[];
}

/** A 400 in E2B's shape naming the step the SDK sent and the rule it broke. */
function stepError(index: number, type: string, message: string): ApiError {
  const field = `steps[${index}]`;
  return new ApiError("validation_failed", `Invalid request: ${field} (${type}): ${message}`, {
    fields: [{ field, rule: "supported", message: `${type}: ${message}` }],
  });
}

const fieldError = (field: string, message: string) =>
  new ApiError("validation_failed", `Invalid request: ${field}: ${message}`, {
    fields: [{ field, rule: "supported", message }],
  });

/** A value that must stay on its Dockerfile line. */
function oneLine(value: string, what: () => ApiError): string {
  if (/[\r\n\0]/.test(value)) throw what();
  return value;
}

/** `"value"` for ENV, escaped the way Sandpit's Dockerfile parser reads it back. */
const quoted = (value: string) => `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

/**
 * E2B's template definition as a Sandpit Dockerfile. The base is a Sandpit template (`fromTemplate`,
 * E2B's `e2bdev/base` image, Docker Hub images a built-in stands for) or an image pulled as one; RUN and
 * COPY are written in exec (JSON) form so that any command survives; E2B's defaults apply — steps run as
 * `user` in `/home/user` on Sandpit's templates, `setUser` creates a missing account, copies belong to the
 * current user. What Sandpit cannot do is refused naming the step.
 */
export function translateTemplate(body: TemplateBuildStart): TranslatedTemplate {
  const lines: string[] = [];
  const stepOfLine = new Map<number, number>();
  const notes: string[] = [];
  const emit = (line: string, step: number) => {
    lines.push(line);
    stepOfLine.set(lines.length, step);
  };

  let from: string;
  let onTemplate: boolean;
  if (body.fromTemplate !== undefined) {
    from = templateFrom(body.fromTemplate);
    onTemplate = true;
  } else {
    const image = body.fromImage ?? "e2bdev/base";
    const alias = E2B_BASE_IMAGES.test(image) ? "base" : templateAliasOf(image);
    from = alias ?? image;
    onTemplate = alias !== undefined;
  }
  oneLine(from, () => fieldError(body.fromTemplate !== undefined ? "fromTemplate" : "fromImage", "one line"));
  if (/\s/.test(from)) throw fieldError("fromImage", "an image reference has no blanks");

  let fromAuth: TranslatedTemplate["fromAuth"];
  const registry = body.fromImageRegistry;
  if (registry) {
    if (registry.type !== "registry" || !registry.username || !registry.password) {
      throw fieldError(
        "fromImageRegistry",
        `${registry.type} registries are not supported; use type "registry" with a username and password`,
      );
    }
    if (onTemplate) throw fieldError("fromImageRegistry", "only with fromImage of an image to pull");
    fromAuth = { username: registry.username, password: registry.password };
  }

  emit(`FROM ${from}`, 0);
  // Sandpit's templates have E2B's `user` account; an image keeps its own user and directory.
  let user = onTemplate ? E2B_DEFAULT_USER : "root";
  const shell = onTemplate ? "/bin/bash" : "/bin/sh";
  if (onTemplate) {
    emit(`USER ${E2B_DEFAULT_USER}`, 0);
    emit(`WORKDIR ${E2B_DEFAULT_WORKDIR}`, 0);
  }
  const run = (command: string, step: number, as?: string) => {
    if (as && as !== user) emit(`USER ${as}`, step);
    emit(`RUN ${JSON.stringify([shell, "-c", command])}`, step);
    if (as && as !== user) emit(`USER ${user}`, step);
  };

  const filesHashes: string[] = [];
  body.steps.forEach((s, i) => {
    const step = i + 1;
    const args = s.args;
    const bad = (message: string) => stepError(i, s.type, message);
    switch (s.type) {
      case "RUN": {
        const [command, as] = args;
        if (!command) throw bad("needs a command");
        run(command, step, as ? oneLine(as, () => bad("the user is one line")) : undefined);
        return;
      }
      case "COPY": {
        const [src, dest, owner, mode] = args;
        if (!src || !dest) throw bad("needs a source and a destination");
        if (!s.filesHash || !/^[A-Za-z0-9_-]{1,128}$/.test(s.filesHash)) throw bad("needs the filesHash of its upload");
        if (src.startsWith("/") || src.split("/").includes("..")) throw bad("the source must stay in the context");
        if (!filesHashes.includes(s.filesHash)) filesHashes.push(s.filesHash);
        const chown = owner || (user === "root" ? "" : user);
        const source = `${s.filesHash}/${src.replace(/^\.\/+/, "")}`.replace(/\/+$/, "") || s.filesHash;
        emit(`COPY ${JSON.stringify([...(chown ? [`--chown=${chown}`] : []), source, dest])}`, step);
        if (mode) {
          if (!/^[0-7]{3,4}$/.test(mode)) throw bad("mode must be octal");
          const target = dest.endsWith("/") ? `${dest}${src.split("/").pop()}` : dest;
          if (user !== "root") emit("USER root", step);
          emit(`RUN ${JSON.stringify(["chmod", mode, target])}`, step);
          if (user !== "root") emit(`USER ${user}`, step);
        }
        return;
      }
      case "ENV": {
        if (args.length === 0 || args.length % 2 !== 0) throw bad("needs name and value pairs");
        const pairs: string[] = [];
        for (let k = 0; k < args.length; k += 2) {
          const name = args[k]!;
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw bad(`${name} is not a variable name`);
          pairs.push(`${name}=${quoted(oneLine(args[k + 1]!, () => bad(`${name}: values are one line`)))}`);
        }
        emit(`ENV ${pairs.join(" ")}`, step);
        return;
      }
      case "WORKDIR": {
        const [dir] = args;
        if (!dir) throw bad("needs a directory");
        emit(`WORKDIR ${oneLine(dir, () => bad("the directory is one line"))}`, step);
        return;
      }
      case "USER": {
        const [name] = args;
        if (!name || !/^[a-z_][a-z0-9_-]{0,31}$/.test(name)) throw bad("needs a user name (lowercase, ≤ 32)");
        // E2B's setUser makes the account when the template lacks it, with a home as its directory.
        if (name !== "root") {
          if (user !== "root") emit("USER root", step);
          emit(
            `RUN ${JSON.stringify(["/bin/sh", "-c", `id -u ${name} >/dev/null 2>&1 || useradd -m -s /bin/bash ${name}`])}`,
            step,
          );
        }
        emit(`USER ${name}`, step);
        user = name;
        return;
      }
      default:
        throw bad("this step is not supported by Sandpit (RUN, COPY, ENV, WORKDIR, USER)");
    }
  });

  if (body.startCmd) {
    emit(`ENTRYPOINT ${JSON.stringify([shell, "-c", body.startCmd])}`, body.steps.length + 1);
    if (body.readyCmd) {
      notes.push(
        "readyCmd is not run: the start command starts with each new sandbox (Sandpit templates hold files, not running processes)",
      );
    }
  } else if (body.readyCmd) {
    throw fieldError("readyCmd", "needs a startCmd");
  }
  return { dockerfile: `${lines.join("\n")}\n`, filesHashes, ...(fromAuth ? { fromAuth } : {}), stepOfLine, notes };
}
