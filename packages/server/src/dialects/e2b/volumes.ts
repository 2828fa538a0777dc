import { createVolumeRequestSchema } from "@sandpit/contract";
import type { FastifyRequest } from "fastify";
import { z } from "zod";
import { ApiError } from "../../errors.js";
import { uploadBody, writeUpload } from "../../http/upload-limit.js";
import type { AppServices } from "../../services/index.js";
import type { DialectServices } from "../dialect.js";
import { bearerToken, type DialectContext } from "../dialect.js";
import { volumeEntryStatOf, volumeOf } from "./mapping.js";

const newVolumeSchema = z.object({ name: z.string() }).passthrough();
const VOLUME_ID = /^vol_[a-z2-7]{20}$/;

const pathQuery = z.object({ path: z.string().min(1) });
const ownershipQuery = pathQuery.extend({
  uid: z.coerce.number().int().min(0).max(0xffff_ffff).optional(),
  gid: z.coerce.number().int().min(0).max(0xffff_ffff).optional(),
  mode: z.coerce.number().int().min(0).max(0o7777).optional(),
  force: z.enum(["true", "false"]).optional(),
});
const listQuery = pathQuery.extend({ depth: z.coerce.number().int().min(1).default(1) });
const ownershipBody = z.object({
  uid: z.number().int().min(0).max(0xffff_ffff).optional(),
  gid: z.number().int().min(0).max(0xffff_ffff).optional(),
  mode: z.number().int().min(0).max(0o7777).optional(),
});

/** What E2B's volume routes use. */
export type E2bVolumeServices = DialectServices & Pick<AppServices, "volumes" | "maxUploadBytes">;

/**
 * E2B's volumes over Sandpit's named volumes: `POST/GET /volumes`, `GET/DELETE /volumes/{volumeID}`
 * (X-API-KEY), and the volume content API `/volumecontent/{volumeID}/{dir,path,file}` authenticated by
 * the volume's own token (`Authorization: Bearer`), which E2B's SDK reaches at `E2B_VOLUME_API_URL`
 * (set it to the same `http://<sandpit>/e2b` as `E2B_API_URL`). Content calls work on the volume's disk
 * on the host and never follow a symlink a sandbox planted in it.
 */
export function e2bVolumeRoutes({ app, services, authenticate, parse }: DialectContext<E2bVolumeServices>) {
  const { volumes } = services;

  /** The caller's volume by E2B's volumeID (Sandpit's volume id); 404 for anything else. */
  const owned = async (request: FastifyRequest<{ Params: { volumeID: string } }>) => {
    const org = await authenticate(request);
    const id = request.params.volumeID;
    if (!VOLUME_ID.test(id)) throw new ApiError("volume_not_found", `volume ${id} not found`);
    return { org, volume: await volumes.getById(org, id) };
  };

  app.post("/volumes", async (request, reply) => {
    const org = await authenticate(request);
    const { name } = parse(newVolumeSchema, request.body ?? {});
    // Sandpit's names are DNS labels: E2B names with capitals or '_' are refused with the rule named.
    const volume = await volumes.create(org, parse(createVolumeRequestSchema, { name }));
    reply.code(201);
    return volumeOf(volume, volumes.accessToken(volume));
  });

  app.get("/volumes", async (request) => {
    const org = await authenticate(request);
    return (await volumes.list(org)).map((v) => volumeOf(v));
  });

  app.get<{ Params: { volumeID: string } }>("/volumes/:volumeID", async (request) => {
    const { volume } = await owned(request);
    return volumeOf(volume, volumes.accessToken(volume));
  });

  /** 409 while a sandbox that is not destroyed mounts it. */
  app.delete<{ Params: { volumeID: string } }>("/volumes/:volumeID", async (request, reply) => {
    const { org, volume } = await owned(request);
    await volumes.delete(org, volume.name);
    reply.code(204);
  });

  app.register(async (content) => {
    // File bodies stream to the volume's disk as they arrive: the route reads them.
    content.addContentTypeParser("application/octet-stream", (_request, _payload, done) => done(null, undefined));

    /** The volume's files, for a request carrying that volume's token. */
    const filesOf = async (request: FastifyRequest<{ Params: { volumeID: string } }>) =>
      volumes.files(await volumes.byAccessToken(request.params.volumeID, bearerToken(request)));

    type ContentRequest = FastifyRequest<{ Params: { volumeID: string } }>;
    const base = "/volumecontent/:volumeID";

    content.get(`${base}/dir`, async (request: ContentRequest) => {
      const files = await filesOf(request);
      const { path, depth } = parse(listQuery, request.query, "query");
      return (await files.list(path, depth)).map(volumeEntryStatOf);
    });

    content.post(`${base}/dir`, async (request: ContentRequest, reply) => {
      const files = await filesOf(request);
      const { path, uid, gid, mode, force } = parse(ownershipQuery, request.query, "query");
      const entry = await files.makeDir(path, { uid, gid, mode, parents: force === "true" });
      reply.code(201);
      return volumeEntryStatOf(entry);
    });

    content.get(`${base}/path`, async (request: ContentRequest) => {
      const files = await filesOf(request);
      const { path } = parse(pathQuery, request.query, "query");
      return volumeEntryStatOf(await files.stat(path));
    });

    content.patch(`${base}/path`, async (request: ContentRequest) => {
      const files = await filesOf(request);
      const { path } = parse(pathQuery, request.query, "query");
      const body = parse(ownershipBody, request.body ?? {});
      return volumeEntryStatOf(await files.setOwnership(path, body));
    });

    content.delete(`${base}/path`, async (request: ContentRequest, reply) => {
      const files = await filesOf(request);
      const { path } = parse(pathQuery, request.query, "query");
      await files.remove(path);
      reply.code(204);
    });

    content.get(`${base}/file`, async (request: ContentRequest, reply) => {
      const files = await filesOf(request);
      const { path } = parse(pathQuery, request.query, "query");
      const { size, stream } = await files.read(path);
      reply.header("content-type", "application/octet-stream").header("content-length", size);
      return reply.send(stream);
    });

    /** Writes (replacing) a file; missing parent directories are made. `force` is accepted: writes always replace. */
    content.put(`${base}/file`, async (request: ContentRequest) => {
      const files = await filesOf(request);
      const { path, uid, gid, mode } = parse(ownershipQuery, request.query, "query");
      // A body some other parser read (JSON, text) is not a file's content.
      if (request.body !== undefined) {
        throw new ApiError("bad_request", "send the file's content as application/octet-stream");
      }
      const { body } = uploadBody(request.raw, services.maxUploadBytes);
      return volumeEntryStatOf(await writeUpload(body, (b) => files.write(path, b, { uid, gid, mode })));
    });
  });
}
