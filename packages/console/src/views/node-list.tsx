import { useMemo, useState } from "preact/hooks";
import { adminSession, type ClusterNode, ConsoleApi } from "../api";
import { age, formatMb, formatTime } from "../format";
import { useNow, usePolling } from "../hooks";
import { describeError, ErrorBanner, StateBadge } from "./common";

/**
 * The cluster's nodes, for operators. The nodes API takes the server's admin key, not the organisation's
 * API key, so this view asks for it and keeps it for the tab as the API key is kept. Its own ConsoleApi
 * means a refused admin key never signs the console out.
 */
export function NodeList() {
  const [adminKey, setAdminKey] = useState(adminSession.key());
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const api = useMemo(
    () =>
      adminKey
        ? new ConsoleApi(adminKey, () => {
            adminSession.clear();
            setNotice("The server refused the admin key (401): enter it again.");
            setAdminKey(null);
          })
        : undefined,
    [adminKey],
  );

  return (
    <div>
      <div class="page-head">
        <h1>Nodes</h1>
        {api && (
          <button
            type="button"
            class="ghost"
            onClick={() => {
              adminSession.clear();
              setAdminKey(null);
            }}
            data-testid="forget-admin-key"
          >
            Forget admin key
          </button>
        )}
      </div>
      {api ? (
        <NodeTable api={api} />
      ) : (
        <AdminKeyForm
          notice={notice}
          onAccepted={(key) => {
            adminSession.save(key);
            setNotice(undefined);
            setAdminKey(key);
          }}
        />
      )}
    </div>
  );
}

/** Asks for the admin key and keeps it only once the nodes API accepted it; a refusal shows the API's message. */
function AdminKeyForm({ notice, onAccepted }: { notice: string | undefined; onAccepted: (key: string) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | undefined>(undefined);
  const [checking, setChecking] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const trimmed = key.trim();
    if (!trimmed) {
      setError("Enter the admin key.");
      return;
    }
    setChecking(true);
    setError(undefined);
    try {
      await new ConsoleApi(trimmed).listNodes();
      onAccepted(trimmed);
    } catch (e) {
      setError(describeError(e));
    } finally {
      setChecking(false);
    }
  };

  return (
    <form class="panel admin-key" onSubmit={submit} data-testid="admin-key-form">
      <p class="muted">The nodes API needs the server's admin key (SANDPIT_ADMIN_KEY). It is kept in this tab only.</p>
      {notice && <p class="notice">{notice}</p>}
      <label>
        Admin key
        <input
          type="password"
          name="adminKey"
          autoComplete="off"
          value={key}
          onInput={(e) => setKey(e.currentTarget.value)}
          data-testid="admin-key"
        />
      </label>
      {error && (
        <p class="error" role="alert" data-testid="admin-key-error">
          {error}
        </p>
      )}
      <button type="submit" class="primary" disabled={checking} data-testid="admin-key-submit">
        {checking ? "Checking…" : "Show nodes"}
      </button>
    </form>
  );
}

function NodeTable({ api }: { api: ConsoleApi }) {
  const nodes = usePolling(() => api.listNodes(), 3000, [api]);
  const [actionError, setActionError] = useState<unknown>(undefined);
  const now = useNow();

  return (
    <>
      <ErrorBanner error={actionError} onDismiss={() => setActionError(undefined)} />
      <ErrorBanner error={nodes.error} />
      <table class="grid" data-testid="node-table">
        <thead>
          <tr>
            <th>Node</th>
            <th>State</th>
            <th>Internal URL</th>
            <th>vCPUs</th>
            <th>Memory</th>
            <th>Sandboxes</th>
            <th>Version</th>
            <th>Last heartbeat</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(nodes.data ?? []).map((n) => (
            <tr key={n.id} data-testid="node-row" data-node-id={n.id}>
              <td class="mono">{n.id}</td>
              <td>
                <StateBadge status={n.state} />
              </td>
              <td class="mono small">{n.url}</td>
              <td data-testid="node-vcpus">
                {n.load.vcpus} / {n.capacity.vcpus}
              </td>
              <td data-testid="node-memory">
                {formatMb(n.load.memoryMb)} / {formatMb(n.capacity.memoryMb)}
              </td>
              <td data-testid="node-sandboxes">
                <SandboxCounts node={n} />
              </td>
              <td>{n.version}</td>
              <td title={formatTime(n.heartbeatAt)}>{age(n.heartbeatAt, now)} ago</td>
              <td>
                <DrainAction
                  api={api}
                  node={n}
                  onChanged={(changed) => {
                    nodes.update((all) => all.map((x) => (x.id === changed.id ? changed : x)));
                    nodes.reload();
                  }}
                  onError={setActionError}
                />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {nodes.data && nodes.data.length === 0 && <p class="empty">No nodes.</p>}
      {!nodes.data && !nodes.error && <p class="empty">Loading…</p>}
    </>
  );
}

/** The node's sandboxes by status, against the most it holds at once. */
function SandboxCounts({ node }: { node: ClusterNode }) {
  const counts = Object.entries(node.load.sandboxes).filter(([, n]) => n);
  return (
    <div class="chips">
      {counts.length === 0 && <span class="muted">none</span>}
      {counts.map(([status, n]) => (
        <span key={status} class="chip" data-status={status}>
          {status} {n}
        </span>
      ))}
      <span class="muted small">max {node.capacity.sandboxes}</span>
    </div>
  );
}

/** Drain a ready node, undrain a draining one; a lost node has neither (the API refuses it). */
function DrainAction({
  api,
  node,
  onChanged,
  onError,
}: {
  api: ConsoleApi;
  node: ClusterNode;
  onChanged: (n: ClusterNode) => void;
  onError: (e: unknown) => void;
}) {
  const [pending, setPending] = useState(false);
  if (node.state === "lost") return null;
  const draining = node.state === "ready";
  if (pending) return <span class="pending">{draining ? "Draining…" : "Undraining…"}</span>;
  return (
    <button
      type="button"
      onClick={async () => {
        setPending(true);
        try {
          onChanged(await api.setNodeDraining(node.id, draining));
        } catch (e) {
          onError(e);
        } finally {
          setPending(false);
        }
      }}
      data-testid={draining ? "drain" : "undrain"}
    >
      {draining ? "Drain" : "Undrain"}
    </button>
  );
}
