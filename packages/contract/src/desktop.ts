import { z } from "zod";

/** The display every desktop sandbox has (X display :0, 24-bit). */
export const DESKTOP_DISPLAY = ":0";
export const DEFAULT_DESKTOP_WIDTH = 1024;
export const DEFAULT_DESKTOP_HEIGHT = 768;
export const DEFAULT_DESKTOP_DPI = 96;
/** Longest text one keyboard request types. */
export const MAX_DESKTOP_TYPE_CHARS = 10_000;
/** Most scroll steps of one mouse request. */
export const MAX_DESKTOP_SCROLL = 100;

const pixelSchema = z.number().int().min(0).max(16_383);

/** The create request's `desktop`: a virtual display of this size, started with the sandbox. */
export const desktopSettingsSchema = z.strictObject({
  width: z
    .number()
    .int()
    .min(320)
    .max(7680)
    .default(DEFAULT_DESKTOP_WIDTH)
    .describe(`Screen width in pixels (default ${DEFAULT_DESKTOP_WIDTH})`),
  height: z
    .number()
    .int()
    .min(200)
    .max(4320)
    .default(DEFAULT_DESKTOP_HEIGHT)
    .describe(`Screen height in pixels (default ${DEFAULT_DESKTOP_HEIGHT})`),
  dpi: z
    .number()
    .int()
    .min(48)
    .max(480)
    .default(DEFAULT_DESKTOP_DPI)
    .describe(`Dots per inch the display reports (default ${DEFAULT_DESKTOP_DPI})`),
});
export type DesktopSettingsRequest = z.input<typeof desktopSettingsSchema>;
export type DesktopSettings = z.output<typeof desktopSettingsSchema>;

export const desktopPointSchema = z.object({
  x: z.number().int().describe("Pixels from the screen's left edge"),
  y: z.number().int().describe("Pixels from the screen's top edge"),
});
export type DesktopPoint = z.infer<typeof desktopPointSchema>;

/** The desktop as it is now. */
export const desktopStateSchema = z.object({
  display: z.string().describe("The X display (DISPLAY), :0"),
  width: z.number().int().describe("Screen width in pixels"),
  height: z.number().int().describe("Screen height in pixels"),
  dpi: z.number().int().describe("Dots per inch"),
  cursor: desktopPointSchema.describe("Where the mouse pointer is"),
});
export type DesktopState = z.infer<typeof desktopStateSchema>;

/** A screenshot's region and scale; all optional (default: the whole screen, unscaled). */
export const desktopScreenshotQuerySchema = z.strictObject({
  x: z.coerce.number().pipe(pixelSchema).optional().describe("Left edge of the region (default 0)"),
  y: z.coerce.number().pipe(pixelSchema).optional().describe("Top edge of the region (default 0)"),
  width: z.coerce.number().pipe(pixelSchema.min(1)).optional().describe("Region width (default: to the right edge)"),
  height: z.coerce.number().pipe(pixelSchema.min(1)).optional().describe("Region height (default: to the bottom edge)"),
  scale: z.coerce
    .number()
    .gt(0)
    .max(1)
    .optional()
    .describe("Scales the image down by this factor, more than 0 and at most 1 (default 1)"),
});
export type DesktopScreenshotQuery = z.infer<typeof desktopScreenshotQuerySchema>;

export const desktopMouseButtons = ["left", "right", "middle"] as const;
export const desktopMouseActions = ["move", "click", "double_click", "down", "up", "drag", "scroll"] as const;
export const desktopScrollDirections = ["up", "down", "left", "right"] as const;

export const desktopMouseRequestSchema = z
  .strictObject({
    action: z
      .enum(desktopMouseActions)
      .describe("move to (x, y); click, double_click, down or up a button (at x, y if given); drag; scroll"),
    x: pixelSchema.optional().describe("Where: required for move and drag (the drag's end)"),
    y: pixelSchema.optional().describe("Where: required for move and drag (the drag's end)"),
    fromX: pixelSchema.optional().describe("Where a drag starts (default: where the pointer is)"),
    fromY: pixelSchema.optional().describe("Where a drag starts (default: where the pointer is)"),
    button: z.enum(desktopMouseButtons).optional().describe("The button (default left)"),
    direction: z.enum(desktopScrollDirections).optional().describe("Scroll direction (default down)"),
    amount: z.number().int().min(1).max(MAX_DESKTOP_SCROLL).optional().describe("Scroll steps (default 1)"),
  })
  .superRefine((req, ctx) => {
    const needsPoint = req.action === "move" || req.action === "drag";
    for (const [field, pair] of [
      ["x", "y"],
      ["y", "x"],
      ["fromX", "fromY"],
      ["fromY", "fromX"],
    ] as const) {
      if (req[field] === undefined && (req[pair] !== undefined || (needsPoint && field.length === 1))) {
        ctx.addIssue({ code: "custom", path: [field], message: `required with ${needsPoint ? req.action : pair}` });
      }
    }
  });
export type DesktopMouseRequest = z.input<typeof desktopMouseRequestSchema>;

export const desktopKeyboardRequestSchema = z.discriminatedUnion("action", [
  z.strictObject({
    action: z.literal("type").describe("Types text, any Unicode"),
    text: z.string().min(1).max(MAX_DESKTOP_TYPE_CHARS).describe("The text; \\n presses Return"),
  }),
  z.strictObject({
    action: z.literal("press").describe("Presses key combos, one after the other"),
    keys: z
      .union([z.string().min(1), z.array(z.string().min(1)).min(1).max(50)])
      .describe("A combo or a list of them, xdotool's names: ctrl+c, Return, alt+F4, shift+Tab"),
  }),
]);
export type DesktopKeyboardRequest = z.input<typeof desktopKeyboardRequestSchema>;

export const desktopWindowSchema = z.object({
  id: z.number().int().describe("The X window id"),
  title: z.string(),
  className: z.string().describe("WM_CLASS class (e.g. Chromium)"),
  instanceName: z.string().describe("WM_CLASS instance (e.g. chromium)"),
  pid: z.number().int().nullable().describe("The process that owns it, when it says"),
  x: z.number().int(),
  y: z.number().int(),
  width: z.number().int(),
  height: z.number().int(),
  focused: z.boolean(),
});
export type DesktopWindow = z.infer<typeof desktopWindowSchema>;

export const desktopLaunchRequestSchema = z
  .strictObject({
    application: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, "must be a .desktop file's name (letters, digits, '.', '_', '-')")
      .optional()
      .describe("An installed application by its .desktop name (xfce4-terminal, chromium), via gtk-launch"),
    command: z
      .string()
      .min(1)
      .max(64 * 1024)
      .optional()
      .describe("A shell command, run detached on the display"),
    uri: z
      .string()
      .min(1)
      .max(64 * 1024)
      .optional()
      .describe("A file or URL to open with it"),
  })
  .superRefine((req, ctx) => {
    if ((req.application === undefined) === (req.command === undefined)) {
      ctx.addIssue({ code: "custom", path: ["application"], message: "give either application or command" });
    }
  });
export type DesktopLaunchRequest = z.input<typeof desktopLaunchRequestSchema>;

export const desktopLaunchedSchema = z.object({
  pid: z.number().int().describe("The started process (in the sandbox)"),
});
