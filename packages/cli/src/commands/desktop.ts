import { Sandbox } from "sandpit";
import { stringOption, UsageError } from "../args.js";
import type { CliCommand } from "../command.js";

/** `x,y` → numbers (screen pixels). */
function parsePoint(option: string, raw: string): { x: number; y: number } {
  const match = /^(\d+),(\d+)$/.exec(raw);
  if (!match) throw new UsageError(`${option}: expected X,Y in pixels, got "${raw}"`);
  return { x: Number(match[1]), y: Number(match[2]) };
}

function oneSandbox(command: string, positionals: string[]): string {
  const [id, extra] = positionals;
  if (id === undefined) throw new UsageError(`${command}: missing sandbox ID`);
  if (extra !== undefined) throw new UsageError(`${command}: unexpected argument "${extra}"`);
  return id;
}

export const screenshotCommand: CliCommand = {
  name: "screenshot",
  usage: "ID [--region X,Y,WIDTH,HEIGHT] [--scale S] > screen.png",
  summary: "Write a PNG of a desktop sandbox's screen to stdout",
  options: { region: { type: "string" }, scale: { type: "string" } },
  async run({ values, positionals }, ctx) {
    const id = oneSandbox("screenshot", positionals);
    // A PNG on a terminal is noise and can leave it in a strange state.
    if (ctx.stdout.isTTY === true) {
      throw new UsageError("screenshot: stdout is a terminal; redirect it to a file (sandpit screenshot ID > s.png)");
    }
    const opts: { x?: number; y?: number; width?: number; height?: number; scale?: number } = {};
    const region = stringOption(values, "region");
    if (region !== undefined) {
      const match = /^(\d+),(\d+),(\d+),(\d+)$/.exec(region);
      if (!match) throw new UsageError(`--region: expected X,Y,WIDTH,HEIGHT in pixels, got "${region}"`);
      [opts.x, opts.y, opts.width, opts.height] = match.slice(1).map(Number);
    }
    const scale = stringOption(values, "scale");
    if (scale !== undefined) {
      opts.scale = Number(scale);
      if (!(opts.scale > 0 && opts.scale <= 1))
        throw new UsageError(`--scale: expected a number in (0, 1], got "${scale}"`);
    }
    const sandbox = await Sandbox.get(id, ctx.connection);
    const png = await sandbox.desktop.screenshot(opts);
    await new Promise<void>((resolve, reject) => ctx.stdout.write(png, (err) => (err ? reject(err) : resolve())));
    return 0;
  },
};

export const clickCommand: CliCommand = {
  name: "click",
  usage: "ID X,Y [--button left|right|middle] [--double]",
  summary: "Click on a desktop sandbox's screen",
  options: { button: { type: "string" }, double: { type: "boolean" } },
  async run({ values, positionals }, ctx) {
    const [id, at, extra] = positionals;
    if (id === undefined || at === undefined) throw new UsageError("click: expected ID X,Y");
    if (extra !== undefined) throw new UsageError(`click: unexpected argument "${extra}"`);
    const point = parsePoint("click", at);
    const button = stringOption(values, "button") ?? "left";
    if (button !== "left" && button !== "right" && button !== "middle") {
      throw new UsageError(`--button: expected left, right or middle, got "${button}"`);
    }
    const sandbox = await Sandbox.get(id, ctx.connection);
    if (values.double === true) await sandbox.desktop.doubleClick(point);
    else await sandbox.desktop.click({ ...point, button });
    return 0;
  },
};

export const typeCommand: CliCommand = {
  name: "type",
  usage: "ID TEXT | ID --keys COMBO",
  summary: "Type text (any Unicode) or press a key combo (ctrl+c, Return) on a desktop sandbox",
  options: { keys: { type: "string" } },
  async run({ values, positionals }, ctx) {
    const [id, text, extra] = positionals;
    const keys = stringOption(values, "keys");
    if (id === undefined) throw new UsageError("type: missing sandbox ID");
    if ((text === undefined) === (keys === undefined)) throw new UsageError("type: give either TEXT or --keys COMBO");
    if (extra !== undefined) throw new UsageError(`type: unexpected argument "${extra}"`);
    const sandbox = await Sandbox.get(id, ctx.connection);
    if (keys !== undefined) await sandbox.desktop.press(keys);
    else await sandbox.desktop.type(text!);
    return 0;
  },
};
