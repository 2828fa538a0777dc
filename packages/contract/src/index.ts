export * from "./common.js";
export * from "./errors.js";
export * from "./exec.js";
export * from "./files.js";
export * from "./network.js";
export * from "./sandbox.js";
export * from "./snapshots.js";
export * from "./templates.js";
