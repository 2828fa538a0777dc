import {
  desktopKeyboardRequestSchema,
  desktopLaunchRequestSchema,
  desktopMouseRequestSchema,
  desktopScreenshotQuerySchema,
  startDesktopStreamRequestSchema,
} from "@sandpit/contract";
import { forSandbox } from "../../http/sandbox-forwarding.js";
import { requestBaseUrl } from "../../routes/route.js";
import type { AppServices } from "../../services/index.js";
import type { DialectContext, DialectServices } from "../dialect.js";
import { desktopRequestFrom, desktopStreamOf, desktopWindowOf } from "./mapping.js";

/** What Nullspace's desktop routes use. */
export type NullspaceDesktopServices = DialectServices & Pick<AppServices, "desktop" | "desktopStreams">;

type WithId = { Params: { id: string } };

/**
 * Nullspace's desktop routes over Sandpit's desktop services, bodies and answers in snake_case. The services
 * resume a hibernated sandbox on the way (with `auto_resume`, or always when it hibernated when idle), as
 * for the proxy.
 */
export function nullspaceDesktopRoutes({
  app,
  services,
  authenticate,
  parse,
}: DialectContext<NullspaceDesktopServices>) {
  const { desktop, desktopStreams } = services;
  const base = "/v1/sandboxes/:id/desktop";

  app.get<WithId>(base, forSandbox("id"), async (request) =>
    desktop.state(await authenticate(request), request.params.id),
  );

  app.get<WithId>(`${base}/screenshot`, forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const query = parse(desktopScreenshotQuerySchema, request.query ?? {}, "query");
    const shot = await desktop.screenshot(org, request.params.id, query);
    reply.header("content-type", "image/png").header("cache-control", "no-store");
    return reply.send(shot.png);
  });

  app.post<WithId>(`${base}/mouse`, forSandbox("id"), async (request) => {
    const org = await authenticate(request);
    return desktop.mouse(org, request.params.id, desktopRequestFrom(desktopMouseRequestSchema, request.body ?? {}));
  });

  app.post<WithId>(`${base}/keyboard`, forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const body = desktopRequestFrom(desktopKeyboardRequestSchema, request.body ?? {});
    await desktop.keyboard(org, request.params.id, body);
    return reply.code(204).send();
  });

  app.get<WithId>(`${base}/windows`, forSandbox("id"), async (request) => {
    const windows = await desktop.windows(await authenticate(request), request.params.id);
    return { windows: windows.map(desktopWindowOf) };
  });

  app.post<{ Params: { id: string; window_id: string } }>(
    `${base}/windows/:window_id/focus`,
    forSandbox("id"),
    async (request, reply) => {
      const org = await authenticate(request);
      await desktop.focus(org, request.params.id, request.params.window_id, "window_id");
      return reply.code(204).send();
    },
  );

  app.post<WithId>(`${base}/launch`, forSandbox("id"), async (request) => {
    const org = await authenticate(request);
    return desktop.launch(org, request.params.id, desktopRequestFrom(desktopLaunchRequestSchema, request.body ?? {}));
  });

  app.post<WithId>(`${base}/stream`, forSandbox("id"), async (request) => {
    const org = await authenticate(request);
    const body = desktopRequestFrom(startDesktopStreamRequestSchema, request.body ?? {});
    return desktopStreamOf(await desktopStreams.start(org, request.params.id, body, requestBaseUrl(request)));
  });

  app.get<WithId>(`${base}/stream`, forSandbox("id"), async (request) => {
    const org = await authenticate(request);
    return desktopStreamOf(await desktopStreams.get(org, request.params.id, requestBaseUrl(request)));
  });

  app.delete<WithId>(`${base}/stream`, forSandbox("id"), async (request, reply) => {
    await desktopStreams.stop(await authenticate(request), request.params.id);
    return reply.code(204).send();
  });
}
