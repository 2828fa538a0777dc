import { imageSchema, listImagesResponseSchema, pullImageRequestSchema } from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { sendNdjson, wantsNdjson } from "../http/streaming.js";
import type { ImageService } from "../images/image-service.js";
import { type Authenticate, route } from "./route.js";

export function imageRoutes(app: FastifyInstance, authenticate: Authenticate, images: ImageService) {
  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/images/pull",
      summary:
        "Pull an image into the server's cache ({uri, auth?}). With Accept: application/x-ndjson, streams " +
        "progress (layers and bytes) until done; otherwise answers once the image is ready. Registry " +
        "errors (credentials, not found) are answered before the stream starts",
      tags: ["images"],
      body: pullImageRequestSchema,
      responses: {
        200: { description: "The pulled image, or pull events as NDJSON", schema: imageSchema },
      },
    },
    async ({ org, request, reply, body }) => {
      if (wantsNdjson(request)) {
        await sendNdjson(request, reply, images.pullEvents(org.id, body));
        return undefined;
      }
      await images.resolve(org.id, body);
      return images.get(org.id, body.uri);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/images",
      summary: "List the images this organisation has pulled, with their pull state and progress",
      tags: ["images"],
      responses: { 200: { description: "Images", schema: listImagesResponseSchema } },
    },
    async ({ org }) => ({ images: await images.list(org.id) }),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/images/{ref}",
      summary: "Get one of the organisation's images by its reference (URL-encoded), with pull progress",
      tags: ["images"],
      responses: { 200: { description: "Image", schema: imageSchema } },
    },
    async ({ org, params }) => images.get(org.id, params.ref!),
  );
}
