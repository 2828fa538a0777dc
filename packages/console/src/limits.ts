import type { limits as contractLimits, EventType, SandboxStatus } from "@sandpit/contract";

// The contract's values, restated without its runtime (zod) so the bundle stays small. Each is typed
// by the contract's own literal type: when the contract changes, this file stops compiling.

export const limits = {
  vcpus: { min: 1, max: 8, default: 1 },
  memoryMb: { min: 256, max: 16_384, step: 256, default: 1024 },
  timeoutMs: { min: 1_000, max: 24 * 3600 * 1000, default: 5 * 60 * 1000 },
} as const satisfies Pick<typeof contractLimits, "vcpus" | "memoryMb" | "timeoutMs">;

export const sandboxStatuses = [
  "creating",
  "running",
  "pausing",
  "paused",
  "resuming",
  "destroying",
  "destroyed",
  "error",
] as const satisfies readonly SandboxStatus[];

// Every status of the contract is listed above.
const allStatusesListed: Exclude<SandboxStatus, (typeof sandboxStatuses)[number]> extends never ? true : false = true;
void allStatusesListed;

export const eventTypes = [
  "sandbox.created",
  "sandbox.paused",
  "sandbox.resumed",
  "sandbox.expired",
  "sandbox.error",
  "sandbox.destroyed",
  "sandbox.moved",
  "snapshot.created",
] as const satisfies readonly EventType[];

const allEventTypesListed: Exclude<EventType, (typeof eventTypes)[number]> extends never ? true : false = true;
void allEventTypesListed;
