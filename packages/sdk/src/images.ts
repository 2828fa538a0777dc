import {
  type Image,
  type ImagePullEvent,
  imagePullEventSchema,
  imageSchema,
  listImagesResponseSchema,
  type PullImageRequest,
} from "@sandpit/contract";
import { ApiClient } from "./api-client.js";
import { type ConnectionOptions, resolveConfig } from "./config.js";
import { createError, isErrorCode, SandpitError } from "./errors.js";
import { parseNdjsonEvents } from "./ndjson.js";

export type { Image, ImagePullEvent, PullImageRequest };

/** Callbacks for {@link Images.pull}. */
export interface PullCallbacks {
  /** Called with every event of the pull: `progress` (layers and bytes), then `done` or `error`. */
  onEvent?: (event: ImagePullEvent) => void;
}

/**
 * Container images the server has pulled for your organisation: list them, pull one ahead of time
 * (creates with `image` pull on demand too).
 *
 * @example
 * ```ts
 * await Images.pull({ uri: "registry.example/team/app:1" });
 * const sandbox = await Sandbox.create({ image: { uri: "registry.example/team/app:1" } });
 * ```
 */
export class Images {
  private constructor() {}

  /** Lists the images your organisation has pulled, with their state and pull progress. */
  static async list(opts?: ConnectionOptions): Promise<Image[]> {
    const { images } = await client(opts).json(listImagesResponseSchema, "/images");
    return images;
  }

  /** Fetches one image by the reference it was pulled with. */
  static async get(uri: string, opts?: ConnectionOptions): Promise<Image> {
    return client(opts).json(imageSchema, `/images/${encodeURIComponent(uri)}`);
  }

  /**
   * Pulls an image and streams its progress; registry errors (credentials, unknown image) are thrown
   * before the first event.
   *
   * @example
   * ```ts
   * for await (const e of Images.pullEvents({ uri: "app:1" })) {
   *   if (e.type === "progress") console.log(`${e.bytesDone}/${e.bytesTotal} bytes`);
   * }
   * ```
   */
  static async *pullEvents(
    image: PullImageRequest,
    opts?: ConnectionOptions,
  ): AsyncGenerator<ImagePullEvent, void, undefined> {
    const response = await client(opts).stream("/images/pull", {
      method: "POST",
      repeatable: true,
      headers: { accept: "application/x-ndjson" },
      json: image,
    });
    yield* parseNdjsonEvents(imagePullEventSchema, response.body, response.requestId);
  }

  /**
   * Pulls an image and resolves with it once it is cached; a failed pull throws the server's error.
   *
   * @example
   * ```ts
   * const image = await Images.pull({ uri: "ghcr.io/team/app:1", auth: { username, password } });
   * ```
   */
  static async pull(image: PullImageRequest, callbacks: PullCallbacks = {}, opts?: ConnectionOptions): Promise<Image> {
    for await (const event of Images.pullEvents(image, opts)) {
      callbacks.onEvent?.(event);
      if (event.type === "done") return event.image;
      if (event.type === "error") {
        throw createError(event.message, { code: isErrorCode(event.code) ? event.code : "internal" });
      }
    }
    throw new SandpitError(`the pull stream of ${image.uri} ended without a result`, { code: "invalid_response" });
  }
}

function client(opts: ConnectionOptions | undefined): ApiClient {
  return new ApiClient(resolveConfig(opts));
}
