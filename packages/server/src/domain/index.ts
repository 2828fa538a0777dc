// What the services work with. The store maps these to and from its rows; routes and dialects map them
// to their wire contracts.

export * from "./desktop-stream.js";
export * from "./egress.js";
export * from "./event.js";
export * from "./idempotency.js";
export * from "./lifecycle-events.js";
export * from "./node.js";
export * from "./org.js";
export * from "./sandbox.js";
export * from "./snapshot.js";
export * from "./volume.js";
export * from "./warm-pool.js";
export * from "./webhook.js";
