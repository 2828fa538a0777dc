import {
  type CreateVolumeRequest,
  listVolumesResponseSchema,
  type Volume,
  type VolumeMount,
  volumeSchema,
} from "@sandpit/contract";
import { ApiClient } from "./api-client.js";
import { type ConnectionOptions, resolveConfig } from "./config.js";

export type { CreateVolumeRequest, Volume, VolumeMount };

/**
 * Named volumes of your organisation: directories of a fixed size that outlive sandboxes and that
 * several sandboxes mount at once (`Sandbox.create({ volumes: [{ name, mountPath }] })`).
 *
 * @example
 * ```ts
 * await Volumes.create({ name: "cache", sizeMb: 2048 });
 * const a = await Sandbox.create({ volumes: [{ name: "cache", mountPath: "/cache" }] });
 * const b = await Sandbox.create({ volumes: [{ name: "cache", mountPath: "/cache", readOnly: true }] });
 * ```
 */
export class Volumes {
  private constructor() {}

  /**
   * Creates an empty volume; `sizeMb` (default 1024) is a hard limit. Throws a {@link ConflictError}
   * when your organisation already has a volume of that name.
   */
  static async create(request: CreateVolumeRequest, opts?: ConnectionOptions): Promise<Volume> {
    return client(opts).json(volumeSchema, "/volumes", { method: "POST", json: request });
  }

  /** Lists your organisation's volumes by name, with the sandboxes that mount each. */
  static async list(opts?: ConnectionOptions): Promise<Volume[]> {
    const { volumes } = await client(opts).json(listVolumesResponseSchema, "/volumes");
    return volumes;
  }

  /** Fetches one volume by name; throws a {@link NotFoundError} when there is none. */
  static async get(name: string, opts?: ConnectionOptions): Promise<Volume> {
    return client(opts).json(volumeSchema, `/volumes/${encodeURIComponent(name)}`);
  }

  /**
   * Deletes a volume and its files. Throws a {@link ConflictError} (code `volume_in_use`) while a
   * sandbox that is not destroyed mounts it.
   */
  static async delete(name: string, opts?: ConnectionOptions): Promise<void> {
    await client(opts).empty(`/volumes/${encodeURIComponent(name)}`, { method: "DELETE" });
  }
}

function client(opts: ConnectionOptions | undefined): ApiClient {
  return new ApiClient(resolveConfig(opts));
}
