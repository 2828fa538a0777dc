import { useState } from "preact/hooks";
import type { ConsoleApi, EventType, SandpitEvent } from "../api";
import { formatTime } from "../format";
import { usePolling } from "../hooks";
import { eventTypes } from "../limits";
import { Link } from "../router";
import { ErrorBanner, NotAvailable } from "./common";

/** The newest events of the organisation (or of one sandbox), polled. */
export function EventTable({ api, sandboxId, type }: { api: ConsoleApi; sandboxId?: string; type?: EventType }) {
  const events = usePolling(
    () => api.events({ ...(sandboxId ? { sandboxId } : {}), ...(type ? { types: [type] } : {}), limit: 200 }),
    5000,
    [api, sandboxId, type],
  );
  if (events.error) return <ErrorBanner error={events.error} />;
  if (!events.data) return <p class="empty">Loading…</p>;
  if (!events.data.available) return <NotAvailable what="The event log is" reason={events.data.reason} />;
  const rows = [...events.data.data].sort((a, b) => b.id - a.id);
  if (rows.length === 0) return <p class="empty">No events.</p>;
  return (
    <table class="grid" data-testid="event-table">
      <thead>
        <tr>
          <th>Time</th>
          <th>Event</th>
          {!sandboxId && <th>Sandbox</th>}
          <th>Details</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((e) => (
          <EventRow key={e.id} event={e} showSandbox={!sandboxId} />
        ))}
      </tbody>
    </table>
  );
}

function EventRow({ event, showSandbox }: { event: SandpitEvent; showSandbox: boolean }) {
  const details = Object.keys(event.data).length ? JSON.stringify(event.data) : "";
  return (
    <tr data-testid="event-row" data-event-type={event.type} data-sandbox-id={event.sandboxId}>
      <td class="nowrap">{formatTime(event.at)}</td>
      <td>
        <span class={`chip event-${event.type.replace(".", "-")}`}>{event.type}</span>
      </td>
      {showSandbox && (
        <td>
          <Link to={`/sandboxes/${event.sandboxId}`} class="mono">
            {event.sandboxId}
          </Link>
        </td>
      )}
      <td class="mono small">{details}</td>
    </tr>
  );
}

export function EventLog({ api }: { api: ConsoleApi }) {
  const [sandboxId, setSandboxId] = useState("");
  const [type, setType] = useState<EventType | "">("");
  const trimmed = sandboxId.trim();
  return (
    <div>
      <div class="page-head">
        <h1>Events</h1>
      </div>
      <div class="filters">
        <label>
          Event
          <select
            value={type}
            onChange={(e) => setType(e.currentTarget.value as EventType | "")}
            data-testid="event-filter-type"
          >
            <option value="">any</option>
            {eventTypes.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </label>
        <label class="grow">
          Sandbox
          <input
            type="search"
            placeholder="sbx_… (every sandbox when empty)"
            value={sandboxId}
            onInput={(e) => setSandboxId(e.currentTarget.value)}
            data-testid="event-filter-sandbox"
          />
        </label>
      </div>
      <EventTable api={api} {...(trimmed ? { sandboxId: trimmed } : {})} {...(type ? { type } : {})} />
    </div>
  );
}
