import { createVolumeRequestSchema, listVolumesResponseSchema, volumeSchema } from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import type { VolumeService } from "../services/volume-service.js";
import { type Authenticate, route } from "./route.js";

export function volumeRoutes(app: FastifyInstance, authenticate: Authenticate, volumes: VolumeService) {
  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/volumes",
      summary: "Create a named volume of your organisation (an empty directory of sizeMb, shared by sandboxes)",
      tags: ["volumes"],
      body: createVolumeRequestSchema,
      responses: {
        201: { description: "The volume", schema: volumeSchema },
        409: { description: "A volume of that name exists" },
      },
    },
    async ({ org, body, reply }) => {
      const volume = await volumes.create(org, body);
      reply.code(201).header("location", `/v1/volumes/${volume.name}`);
      return volumes.toVolume(volume);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/volumes",
      summary: "List your organisation's volumes",
      tags: ["volumes"],
      responses: { 200: { description: "Volumes", schema: listVolumesResponseSchema } },
    },
    async ({ org }) => ({
      volumes: await Promise.all((await volumes.list(org)).map((v) => volumes.toVolume(v))),
    }),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/volumes/{name}",
      summary: "Get a volume, with the sandboxes that mount it",
      tags: ["volumes"],
      responses: { 200: { description: "The volume", schema: volumeSchema }, 404: { description: "Not found" } },
    },
    async ({ org, params }) => volumes.toVolume(await volumes.get(org, params.name!)),
  );

  route(
    app,
    authenticate,
    {
      method: "DELETE",
      url: "/v1/volumes/{name}",
      summary: "Delete a volume and its files; 409 volume_in_use while a sandbox that is not destroyed mounts it",
      tags: ["volumes"],
      responses: {
        204: { description: "Deleted" },
        404: { description: "Not found" },
        409: { description: "In use" },
      },
    },
    async ({ org, params, reply }) => {
      await volumes.delete(org, params.name!);
      reply.code(204);
      return undefined;
    },
  );
}
