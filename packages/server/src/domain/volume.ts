/** A named volume of an organisation: a directory on its own size-capped disk image. */
export interface VolumeRecord {
  id: string;
  orgId: string;
  name: string;
  sizeMb: number;
  createdAt: number;
}

/** Thrown by insertVolume when the organisation already has a volume of that name. */
export class VolumeNameTakenError extends Error {
  constructor(readonly volumeName: string) {
    super(`volume ${volumeName} already exists`);
  }
}

/** Thrown by insertSandbox when a volume it mounts no longer exists. */
export class VolumeMissingError extends Error {
  constructor(readonly volumeId: string) {
    super(`volume ${volumeId} no longer exists`);
  }
}
