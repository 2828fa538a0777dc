import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import type { CreateSandboxParams, SandboxStatus, Volume, VolumeMount } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import { type OrgRecord, type SandboxVolumeRecord, VolumeNameTakenError, type VolumeRecord } from "../domain/index.js";
import { ApiError } from "../errors.js";
import { iso, now } from "../lib/clock.js";
import { randomBase32 } from "../lib/ids.js";
import { keyedToken, loadOrCreateSharedKey, tokensEqual } from "../lib/server-key.js";
import { VolumeDisk } from "../runtime/volume-disk.js";
import { openDirBeneath, type VolumeMountSpec } from "../runtime/volume-mounts.js";
import type { Store } from "../store/store.js";
import { VolumeFiles } from "./volume-files.js";

/** Sandboxes in these statuses hold their volumes on the host: a volume they mount cannot be deleted. */
const HOLDING: SandboxStatus[] = ["creating", "running", "pausing", "paused", "resuming", "destroying"];

function fieldError(code: "validation_failed" | "forbidden", field: string, rule: string, message: string) {
  return new ApiError(code, `${code === "forbidden" ? "Forbidden" : "Invalid request"}: ${field}: ${message}`, {
    fields: [{ field, rule, message }],
  });
}

/** The API's view of a sandbox's mount. */
export function toSandboxVolume(m: SandboxVolumeRecord) {
  return {
    ...(m.name !== undefined ? { name: m.name } : {}),
    ...(m.hostPath !== undefined ? { hostPath: m.hostPath } : {}),
    mountPath: m.mountPath,
    readOnly: m.readOnly,
    ...(m.subPath !== undefined ? { subPath: m.subPath } : {}),
  };
}

/**
 * Named volumes per organisation — each a size-capped ext4 image mounted on the host under
 * `<dataDir>/volumes/<orgId>/<volumeId>` — and the checks that turn a create request's `volumes` into
 * mounts: the volume is the caller's, a subPath stays inside its volume, a host path is under a prefix
 * the admin allows.
 */
export class VolumeService {
  /** Real paths of the host directories under which host-path volumes are allowed (set by init). */
  private hostPathPrefixes: string[] = [];
  /** Key of the volumes' access tokens (set by init, kept in `tokenKeyFile` across restarts). */
  private tokenKey: Buffer | undefined;

  constructor(
    private readonly store: Store,
    /** `<volumesDir>/<orgId>/<volumeId>`: nothing else lives there. */
    private readonly volumesDir: string,
    private readonly tokenKeyFile: string,
    /** SANDPIT_HOST_VOLUME_PATHS: host directories under which host-path volumes are allowed. */
    private readonly allowedHostPaths: string[],
    private readonly log: FastifyBaseLogger,
  ) {}

  private disk(v: Pick<VolumeRecord, "orgId" | "id">): VolumeDisk {
    return new VolumeDisk(path.join(this.volumesDir, v.orgId, v.id));
  }

  /**
   * Resolves the allowed host directories (symlinks included: what counts is where a path really is),
   * and mounts every volume's disk on the host (they stay mounted while the server is down; not after a
   * reboot).
   */
  async init(): Promise<void> {
    this.tokenKey = await loadOrCreateSharedKey(this.store, "volume-access-token", this.tokenKeyFile);
    for (const allowed of this.allowedHostPaths) {
      const real = await realpath(allowed).catch(() => undefined);
      if (real) this.hostPathPrefixes.push(real);
      else this.log.warn({ path: allowed }, "SANDPIT_HOST_VOLUME_PATHS names a directory that does not exist");
    }
    for (const v of await this.store.listVolumes(undefined)) {
      await this.disk(v)
        .mount()
        .catch((e) => this.log.error({ err: e, volumeId: v.id }, "volume disk could not be mounted"));
    }
  }

  /**
   * A token that grants access to this volume's files and nothing else (E2B's volume token): derived
   * from the volume id with the server's key, so it needs no storage and dies with the volume.
   */
  accessToken(volume: Pick<VolumeRecord, "id">): string {
    if (!this.tokenKey) throw new Error("VolumeService.init has not run");
    return `vtok_${keyedToken(this.tokenKey, `volume-files:${volume.id}`)}`;
  }

  /** The volume an access token was made for; 401 for a wrong or missing token, 404 for a deleted volume. */
  async byAccessToken(volumeId: string, token: string | undefined): Promise<VolumeRecord> {
    if (!tokensEqual(token ?? "", this.accessToken({ id: volumeId }))) {
      throw new ApiError("unauthorized", "Invalid volume token: send Authorization: Bearer <the volume's token>");
    }
    const record = await this.store.getVolume(volumeId);
    if (!record) throw new ApiError("volume_not_found", `volume ${volumeId} not found`);
    return record;
  }

  /** The files of a volume, read and written on the host without following symlinks. */
  files(volume: Pick<VolumeRecord, "orgId" | "id">): VolumeFiles {
    return new VolumeFiles(this.disk(volume).data);
  }

  async create(org: OrgRecord, req: { name: string; sizeMb: number }): Promise<VolumeRecord> {
    const record: VolumeRecord = {
      id: `vol_${randomBase32(20)}`,
      orgId: org.id,
      name: req.name,
      sizeMb: req.sizeMb,
      createdAt: now(),
    };
    // The record first: it claims the name, so two concurrent creates of one name make one disk.
    await this.store.insertVolume(record).catch((e) => {
      if (e instanceof VolumeNameTakenError) {
        throw new ApiError("conflict", `volume ${req.name} already exists`, { field: "name", name: req.name });
      }
      throw e;
    });
    try {
      await this.disk(record).create(record.sizeMb);
    } catch (e) {
      await this.disk(record).remove();
      await this.store.deleteVolumeUnlessUsed(record.id, HOLDING);
      throw new ApiError("internal", `volume ${req.name} could not be made: ${e instanceof Error ? e.message : e}`);
    }
    this.log.info({ volumeId: record.id, orgId: org.id, sizeMb: record.sizeMb }, "volume created");
    return record;
  }

  /** The caller's volume of that name, or 404 — also when another organisation has one of that name. */
  async get(org: OrgRecord, name: string): Promise<VolumeRecord> {
    const record = await this.store.getVolumeByName(org.id, name);
    if (!record) throw new ApiError("volume_not_found", `volume ${name} not found`);
    return record;
  }

  /** The caller's volume with that id, or 404 — also when it is another organisation's. */
  async getById(org: OrgRecord, id: string): Promise<VolumeRecord> {
    const record = await this.store.getVolume(id);
    if (!record || record.orgId !== org.id) throw new ApiError("volume_not_found", `volume ${id} not found`);
    return record;
  }

  list(org: OrgRecord): Promise<VolumeRecord[]> {
    return this.store.listVolumes(org.id);
  }

  /** Deletes a volume and its files; 409 `volume_in_use` while a sandbox that is not destroyed mounts it. */
  async delete(org: OrgRecord, name: string): Promise<void> {
    const record = await this.get(org, name);
    const { deleted, users } = await this.store.deleteVolumeUnlessUsed(record.id, HOLDING);
    if (!deleted) {
      throw new ApiError("volume_in_use", `volume ${name} is mounted by ${users.join(", ")}; destroy them first`, {
        sandboxes: users,
      });
    }
    await this.disk(record).remove();
    this.log.info({ volumeId: record.id, orgId: org.id }, "volume deleted");
  }

  async toVolume(record: VolumeRecord): Promise<Volume> {
    return {
      id: record.id,
      name: record.name,
      sizeMb: record.sizeMb,
      usedBytes: await this.disk(record).usedBytes(),
      mountedBy: await this.store.volumeUsers(record.id, HOLDING),
      createdAt: iso(record.createdAt)!,
    };
  }

  /**
   * A create request's `volumes` as mounts to record: each named volume must be the caller's (404
   * naming the field), each subPath a directory inside it (made when missing; never through a symlink),
   * each host path allowed by the admin (403 naming the field).
   */
  async resolve(org: OrgRecord, mounts: CreateSandboxParams["volumes"]): Promise<SandboxVolumeRecord[]> {
    const records: SandboxVolumeRecord[] = [];
    for (const [i, m] of mounts.entries()) records.push(await this.resolveOne(org, m, `volumes.${i}`));
    return records;
  }

  private async resolveOne(org: OrgRecord, m: VolumeMount, field: string): Promise<SandboxVolumeRecord> {
    if (m.hostPath !== undefined) {
      await this.hostMountSpec(m.hostPath, m.mountPath, m.readOnly, `${field}.hostPath`);
      return { hostPath: m.hostPath, mountPath: m.mountPath, readOnly: m.readOnly };
    }
    const name = m.name!;
    const volume = await this.store.getVolumeByName(org.id, name);
    if (!volume) {
      throw new ApiError("volume_not_found", `${field}.name: volume ${name} not found`, {
        fields: [{ field: `${field}.name`, rule: "not_found", message: `volume ${name} not found` }],
      });
    }
    const record: SandboxVolumeRecord = {
      volumeId: volume.id,
      name,
      mountPath: m.mountPath,
      readOnly: m.readOnly,
      ...(m.subPath !== undefined ? { subPath: m.subPath } : {}),
    };
    // Checked (and made) now, so that a bad subPath is a clear 400 and not a failed start. The runtime
    // walks it again, the same safe way, when it binds it.
    const spec = this.volumeMountSpec(volume, record);
    await openDirBeneath(spec.root, spec.subPath, { create: true }).then(
      (dir) => dir.close(),
      (e: Error) => {
        throw fieldError("validation_failed", `${field}.subPath`, "not_a_directory", e.message);
      },
    );
    return record;
  }

  private volumeMountSpec(volume: VolumeRecord, m: SandboxVolumeRecord): VolumeMountSpec {
    return {
      root: this.disk(volume).data,
      subPath: m.subPath ?? "",
      create: true,
      destination: m.mountPath,
      readOnly: m.readOnly,
    };
  }

  /**
   * A host directory as a mount: its real path must be under an allowed prefix; the part below the
   * prefix is walked without following symlinks when it is bound.
   */
  private async hostMountSpec(
    hostPath: string,
    mountPath: string,
    readOnly: boolean,
    field: string,
  ): Promise<VolumeMountSpec> {
    if (this.hostPathPrefixes.length === 0) {
      throw fieldError(
        "forbidden",
        field,
        "host_paths_disabled",
        "host-path volumes are disabled on this server (an admin allows them with SANDPIT_HOST_VOLUME_PATHS)",
      );
    }
    const real = await realpath(hostPath).catch(() => undefined);
    const info = real ? await stat(real).catch(() => undefined) : undefined;
    if (!real || !info?.isDirectory()) {
      throw fieldError("validation_failed", field, "not_a_directory", `${hostPath} is not a directory on the host`);
    }
    const prefix = this.hostPathPrefixes.find((p) => p === "/" || real === p || real.startsWith(`${p}/`));
    if (!prefix) {
      throw fieldError(
        "forbidden",
        field,
        "host_path_not_allowed",
        `${hostPath} is not under a directory this server allows (SANDPIT_HOST_VOLUME_PATHS)`,
      );
    }
    return { root: prefix, subPath: path.relative(prefix, real), create: false, destination: mountPath, readOnly };
  }

  /**
   * Recorded mounts (a new sandbox's, or a snapshot's for its children) as what the runtime binds. A
   * volume deleted since, or a host path no longer allowed, fails with the mount named.
   */
  async launchSpecs(mounts: SandboxVolumeRecord[]): Promise<VolumeMountSpec[]> {
    const specs: VolumeMountSpec[] = [];
    for (const [i, m] of mounts.entries()) {
      if (m.hostPath !== undefined) {
        specs.push(await this.hostMountSpec(m.hostPath, m.mountPath, m.readOnly, `volumes.${i}.hostPath`));
        continue;
      }
      const volume = await this.store.getVolume(m.volumeId!);
      if (!volume) throw this.missing(m);
      specs.push(this.volumeMountSpec(volume, m));
    }
    return specs;
  }

  /** A recorded mount whose volume no longer exists. */
  missing(m: Pick<SandboxVolumeRecord, "name" | "mountPath">): ApiError {
    return new ApiError("volume_not_found", `volume ${m.name} (mounted at ${m.mountPath}) no longer exists`, {
      name: m.name,
      mountPath: m.mountPath,
    });
  }
}
