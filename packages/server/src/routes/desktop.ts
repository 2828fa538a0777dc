import {
  desktopKeyboardRequestSchema,
  desktopLaunchedSchema,
  desktopLaunchRequestSchema,
  desktopMouseRequestSchema,
  desktopPointSchema,
  desktopScreenshotQuerySchema,
  desktopStateSchema,
  desktopWindowSchema,
} from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { DesktopService } from "../services/desktop-service.js";
import { type Authenticate, route } from "./route.js";

const notDesktop = { description: "The sandbox has no desktop, is not running, or its display did not start" };

export function desktopRoutes(app: FastifyInstance, authenticate: Authenticate, desktop: DesktopService) {
  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/desktop",
      sandboxParam: "id",
      summary: "The sandbox's desktop: its display, screen size, DPI and the mouse pointer's position",
      tags: ["desktop"],
      responses: { 200: { description: "The desktop", schema: desktopStateSchema }, 409: notDesktop },
    },
    async ({ org, params }) => desktop.state(org, params.id!),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/desktop/screenshot",
      sandboxParam: "id",
      summary:
        "A PNG of the screen, or of a region (x, y, width, height), optionally scaled down. Server-Timing " +
        "says how long the capture and the PNG encoding took in the sandbox",
      tags: ["desktop"],
      query: desktopScreenshotQuerySchema,
      responses: {
        200: { description: "The screenshot", contentType: "image/png" },
        400: { description: "A region outside the screen, or a bad scale" },
        409: notDesktop,
      },
    },
    async ({ reply, org, params, query }) => {
      const shot = await desktop.screenshot(org, params.id!, query);
      reply
        .header("content-type", "image/png")
        .header("cache-control", "no-store")
        .header("server-timing", `capture;dur=${shot.captureMs}, encode;dur=${shot.encodeMs}`);
      return reply.send(shot.png);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/desktop/mouse",
      sandboxParam: "id",
      summary: "Moves the mouse, clicks (left, right, middle, double), presses or releases a button, drags, scrolls",
      tags: ["desktop"],
      body: desktopMouseRequestSchema,
      responses: {
        200: { description: "Where the pointer is afterwards", schema: desktopPointSchema },
        400: { description: "Bad action, button or coordinates (outside the screen)" },
        409: notDesktop,
      },
    },
    async ({ org, params, body }) => desktop.mouse(org, params.id!, body),
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/desktop/keyboard",
      sandboxParam: "id",
      summary: "Types text (any Unicode) or presses key combos (xdotool's names: ctrl+c, Return, alt+F4)",
      tags: ["desktop"],
      body: desktopKeyboardRequestSchema,
      responses: { 204: { description: "Typed" }, 400: { description: "Unknown key name" }, 409: notDesktop },
    },
    async ({ reply, org, params, body }) => {
      await desktop.keyboard(org, params.id!, body);
      return reply.code(204).send();
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/desktop/windows",
      sandboxParam: "id",
      summary: "The desktop's windows (the window manager's client list) with title, class, pid, geometry, focus",
      tags: ["desktop"],
      responses: {
        200: { description: "Windows", schema: z.object({ windows: z.array(desktopWindowSchema) }) },
        409: notDesktop,
      },
    },
    async ({ org, params }) => ({ windows: await desktop.windows(org, params.id!) }),
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/desktop/windows/{windowId}/focus",
      sandboxParam: "id",
      summary: "Activates a window: raised and given the keyboard focus",
      tags: ["desktop"],
      responses: { 204: { description: "Focused" }, 404: { description: "No such window" }, 409: notDesktop },
    },
    async ({ reply, org, params }) => {
      await desktop.focus(org, params.id!, params.windowId);
      return reply.code(204).send();
    },
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/desktop/launch",
      sandboxParam: "id",
      summary: "Starts an application (its .desktop name, via gtk-launch) or a command on the display, detached",
      tags: ["desktop"],
      body: desktopLaunchRequestSchema,
      responses: {
        200: { description: "The started process", schema: desktopLaunchedSchema },
        404: { description: "No such application" },
        409: notDesktop,
      },
    },
    async ({ org, params, body }) => desktop.launch(org, params.id!, body),
  );
}
