import { z } from "zod";
import { timestampSchema } from "./common.js";
import { imageRefSchema } from "./sandbox.js";

export const imageStatuses = ["pulling", "ready", "failed"] as const;

/** How far a pull is: layers and compressed bytes fetched from the registry so far. */
export const imagePullProgressSchema = z.object({
  phase: z.string().describe("resolving, downloading, unpacking or done"),
  layersDone: z.number().int(),
  layersTotal: z.number().int(),
  bytesDone: z.number().int().describe("Compressed layer bytes downloaded (cached layers count as done)"),
  bytesTotal: z.number().int().describe("Compressed size of all layers"),
});
export type ImagePullProgress = z.infer<typeof imagePullProgressSchema>;

/** A container image the organisation has pulled, as this server caches it. */
export const imageSchema = z.object({
  uri: z.string().describe("The reference as given: [registry/]repository[:tag][@digest]"),
  reference: z.string().describe("The canonical reference: registry/repository:tag or @digest"),
  digest: z.string().nullable().describe("Digest of the linux/amd64 image manifest"),
  status: z.enum(imageStatuses),
  progress: imagePullProgressSchema.nullable(),
  error: z.string().nullable(),
  layers: z.number().int().nullable(),
  sizeBytes: z.number().int().nullable().describe("Compressed size of its layers"),
  pullCount: z
    .number()
    .int()
    .describe("How often this server fetched the image's layers from a registry (cache hits do not count)"),
  pulledAt: timestampSchema.nullable(),
});
export type Image = z.infer<typeof imageSchema>;
export const listImagesResponseSchema = z.object({ images: z.array(imageSchema) });

/** `POST /v1/images/pull`: the same reference and credentials a create's `image` takes. */
export const pullImageRequestSchema = imageRefSchema;
export type PullImageRequest = z.infer<typeof pullImageRequestSchema>;

/** One NDJSON line of `POST /v1/images/pull`. */
export const imagePullEventSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("progress") }).extend(imagePullProgressSchema.shape),
  z.object({ type: z.literal("done"), image: imageSchema }),
  z.object({ type: z.literal("error"), code: z.string(), message: z.string() }),
]);
export type ImagePullEvent = z.infer<typeof imagePullEventSchema>;
