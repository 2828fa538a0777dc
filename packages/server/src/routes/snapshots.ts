import {
  createSandboxRequestSchema,
  createSnapshotRequestSchema,
  forkRequestSchema,
  listSandboxesResponseSchema,
  listSnapshotsResponseSchema,
  snapshotSchema,
} from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { toSandbox } from "../services/sandbox-service.js";
import { type SnapshotService, toSnapshot } from "../services/snapshot-service.js";
import { type Authenticate, route } from "./route.js";

export function snapshotRoutes(app: FastifyInstance, authenticate: Authenticate, snapshots: SnapshotService) {
  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/snapshots",
      sandboxParam: "id",
      summary: "Snapshot a sandbox with its memory and processes; the sandbox keeps running after it",
      tags: ["snapshots"],
      body: createSnapshotRequestSchema,
      responses: { 201: { description: "The snapshot", schema: snapshotSchema } },
    },
    async ({ org, params, body, reply }) => {
      const snapshot = await snapshots.create(org, params.id!, body.name ?? null);
      reply.code(201).header("location", `/v1/snapshots/${snapshot.id}`);
      return toSnapshot(snapshot);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/snapshots",
      summary: "List snapshots",
      tags: ["snapshots"],
      responses: { 200: { description: "Snapshots", schema: listSnapshotsResponseSchema } },
    },
    async ({ org }) => ({ snapshots: (await snapshots.list(org)).map(toSnapshot) }),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/snapshots/{id}",
      summary: "Get a snapshot",
      tags: ["snapshots"],
      responses: { 200: { description: "The snapshot", schema: snapshotSchema } },
    },
    async ({ org, params }) => toSnapshot(await snapshots.get(org, params.id!)),
  );

  route(
    app,
    authenticate,
    {
      method: "DELETE",
      url: "/v1/snapshots/{id}",
      summary: "Delete a snapshot (sandboxes started from it are not affected)",
      tags: ["snapshots"],
      responses: { 204: { description: "Deleted" } },
    },
    async ({ org, params, reply }) => {
      await snapshots.delete(org, params.id!);
      reply.code(204);
      return undefined;
    },
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/fork",
      sandboxParam: "id",
      summary: "count new running sandboxes that continue this one (processes and memory included)",
      tags: ["snapshots"],
      body: forkRequestSchema,
      responses: { 201: { description: "The children", schema: listSandboxesResponseSchema } },
    },
    async ({ org, params, body, reply }) => {
      const children = await snapshots.fork(org, params.id!, body.count, createSandboxRequestSchema.parse({}));
      reply.code(201);
      return { sandboxes: children.map(toSandbox) };
    },
  );
}
