/**
 * Which SDK method calls each route of the native API, as `"METHOD /path"` → `"Class.staticMethod"` or
 * `"Class#instanceMethod"` (reached as `sandbox.commands.run` for `Commands#run`). A test checks it
 * against the server's OpenAPI document: every route there has an entry, and every entry names a
 * method the SDK exports.
 */
export const sdkRoutes = {
  "GET /v1/openapi.json": "Meta.openApi",
  "GET /v1/health": "Meta.health",
  "GET /metrics": "Admin.prometheusMetrics",

  "POST /v1/sandboxes": "Sandbox.create",
  "GET /v1/sandboxes": "Sandbox.list",
  "GET /v1/sandboxes/{id}": "Sandbox.get",
  "PATCH /v1/sandboxes/{id}": "Sandbox#setMetadata",
  "DELETE /v1/sandboxes/{id}": "Sandbox#kill",
  "POST /v1/sandboxes/{id}/timeout": "Sandbox#setTimeout",
  "POST /v1/sandboxes/{id}/pause": "Sandbox#pause",
  "POST /v1/sandboxes/{id}/resume": "Sandbox#resume",
  // Another name for /resume (same handler), kept for clients that say "wake".
  "POST /v1/sandboxes/{id}/wake": "Sandbox#resume",
  "GET /v1/sandboxes/{id}/metrics": "Sandbox#metrics",

  "POST /v1/sandboxes/{id}/snapshots": "Sandbox#snapshot",
  "POST /v1/sandboxes/{id}/fork": "Sandbox#fork",
  "GET /v1/snapshots": "Snapshots.list",
  "GET /v1/snapshots/{id}": "Snapshots.get",
  "DELETE /v1/snapshots/{id}": "Snapshots.delete",

  "GET /v1/sandboxes/{id}/ports": "Sandbox#ports",
  "PUT /v1/sandboxes/{id}/network-policy": "Sandbox#setNetworkPolicy",
  "GET /v1/sandboxes/{id}/egress-log": "Sandbox#egressLog",
  "GET /v1/egress-log": "EgressLog.list",

  "POST /v1/sandboxes/{id}/exec": "Commands#run",
  "GET /v1/sandboxes/{id}/commands": "Commands#list",
  "GET /v1/sandboxes/{id}/commands/{commandId}": "Commands#get",
  "GET /v1/sandboxes/{id}/commands/{commandId}/logs": "CommandHandle#logs",
  "POST /v1/sandboxes/{id}/commands/{commandId}/kill": "CommandHandle#kill",
  "POST /v1/sandboxes/{id}/commands/{commandId}/stdin": "CommandHandle#sendStdin",

  "GET /v1/sandboxes/{id}/desktop": "Desktop#state",
  "GET /v1/sandboxes/{id}/desktop/screenshot": "Desktop#screenshot",
  "POST /v1/sandboxes/{id}/desktop/mouse": "Desktop#click",
  "POST /v1/sandboxes/{id}/desktop/keyboard": "Desktop#type",
  "GET /v1/sandboxes/{id}/desktop/windows": "Desktop#windows",
  "POST /v1/sandboxes/{id}/desktop/windows/{windowId}/focus": "Desktop#focus",
  "POST /v1/sandboxes/{id}/desktop/launch": "Desktop#launch",
  "POST /v1/sandboxes/{id}/desktop/stream": "DesktopStreams#start",
  "GET /v1/sandboxes/{id}/desktop/stream": "DesktopStreams#get",
  "DELETE /v1/sandboxes/{id}/desktop/stream": "DesktopStreams#stop",

  "POST /v1/sandboxes/{id}/code/run": "Code#run",
  "POST /v1/sandboxes/{id}/code/contexts": "Code#createContext",
  "GET /v1/sandboxes/{id}/code/contexts": "Code#listContexts",
  "POST /v1/sandboxes/{id}/code/contexts/{contextId}/restart": "Code#restartContext",
  "DELETE /v1/sandboxes/{id}/code/contexts/{contextId}": "Code#removeContext",

  "GET /v1/sandboxes/{id}/files": "Files#read",
  "PUT /v1/sandboxes/{id}/files": "Files#write",
  "DELETE /v1/sandboxes/{id}/files": "Files#remove",
  "GET /v1/sandboxes/{id}/files/list": "Files#list",
  "GET /v1/sandboxes/{id}/files/watch": "Files#watch",
  "POST /v1/sandboxes/{id}/files/mkdir": "Files#mkdir",

  "POST /v1/sandboxes/{id}/terminals": "Terminals#create",
  "GET /v1/sandboxes/{id}/terminals": "Terminals#list",
  "GET /v1/sandboxes/{id}/terminals/{terminalId}": "Terminals#get",
  "DELETE /v1/sandboxes/{id}/terminals/{terminalId}": "Terminals#kill",
  "POST /v1/sandboxes/{id}/terminals/{terminalId}/input": "Terminals#sendInput",
  "POST /v1/sandboxes/{id}/terminals/{terminalId}/resize": "Terminals#resize",

  "POST /v1/templates": "Templates.create",
  "GET /v1/templates": "Templates.list",
  "GET /v1/templates/{name}": "Templates.get",
  "DELETE /v1/templates/{name}": "Templates.delete",
  "POST /v1/templates/{name}/build": "Templates.build",

  "POST /v1/images/pull": "Images.pull",
  "GET /v1/images": "Images.list",
  "GET /v1/images/{ref}": "Images.get",

  "POST /v1/volumes": "Volumes.create",
  "GET /v1/volumes": "Volumes.list",
  "GET /v1/volumes/{name}": "Volumes.get",
  "DELETE /v1/volumes/{name}": "Volumes.delete",

  "GET /v1/events": "Events.list",
  "GET /v1/events/stream": "Events.stream",
  "POST /v1/webhooks": "Webhooks.create",
  "GET /v1/webhooks": "Webhooks.list",
  "DELETE /v1/webhooks/{id}": "Webhooks.delete",
  "GET /v1/webhooks/{id}/deliveries": "Webhooks.deliveries",

  "GET /v1/nodes": "Nodes.list",
  "POST /v1/nodes/{id}/drain": "Nodes.drain",
  "POST /v1/nodes/{id}/undrain": "Nodes.undrain",

  "GET /v1/admin/warm-pools": "Admin.warmPools",
  "PUT /v1/admin/warm-pools/{id}": "Admin.putWarmPool",
  "DELETE /v1/admin/warm-pools/{id}": "Admin.deleteWarmPool",
  "GET /v1/admin/orgs/{org}/quota": "Admin.quota",
  "PUT /v1/admin/orgs/{org}/quota": "Admin.setQuota",
} as const satisfies Record<string, string>;

/** A route of the native API as `"METHOD /path"`. */
export type SdkRoute = keyof typeof sdkRoutes;
