import { useEffect, useRef, useState } from "preact/hooks";
import type { ConsoleApi, FileEntry, Sandbox } from "../api";
import { formatBytes, formatTime, joinPath, parentPath } from "../format";
import { usePolling } from "../hooks";
import { navigate } from "../router";
import { ErrorBanner, Panel } from "./common";

/** Saves a blob under `name` through a temporary link (the download carries no key in a URL). */
function saveBlob(blob: Blob, name: string) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** A directory of the sandbox: browse, download, upload, new folder, delete. */
export function FileBrowser({ api, sandbox, path }: { api: ConsoleApi; sandbox: Sandbox; path: string }) {
  const listing = usePolling(() => api.listFiles(sandbox.id, path), 10_000, [api, sandbox.id, path]);
  const [busy, setBusy] = useState<string | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [typedPath, setTypedPath] = useState(path);
  const upload = useRef<HTMLInputElement>(null);
  useEffect(() => setTypedPath(path), [path]);

  const open = (to: string) => {
    setTypedPath(to);
    navigate(`/sandboxes/${sandbox.id}/files?${new URLSearchParams({ path: to })}`);
  };
  const act = async (label: string, work: () => Promise<void>) => {
    setBusy(label);
    setError(undefined);
    try {
      await work();
      listing.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(undefined);
    }
  };
  const uploadFiles = (files: FileList | null) => {
    if (!files?.length) return;
    const chosen = [...files];
    act(`Uploading ${chosen.map((f) => f.name).join(", ")}…`, async () => {
      for (const file of chosen) await api.writeFile(sandbox.id, joinPath(path, file.name), file);
    }).finally(() => {
      if (upload.current) upload.current.value = "";
    });
  };

  const entries = [...(listing.data ?? [])].sort(
    (a, b) => Number(b.type === "dir") - Number(a.type === "dir") || a.name.localeCompare(b.name),
  );

  return (
    <Panel
      title="Files"
      actions={
        <>
          <button type="button" onClick={() => open(parentPath(path))} disabled={path === "/"} data-testid="files-up">
            Up
          </button>
          <button
            type="button"
            onClick={() => {
              const name = prompt("New folder name");
              if (name) act(`Creating ${name}…`, () => api.mkdir(sandbox.id, joinPath(path, name)));
            }}
          >
            New folder
          </button>
          <label class="button primary">
            Upload
            <input
              ref={upload}
              type="file"
              multiple
              hidden
              onChange={(e) => uploadFiles(e.currentTarget.files)}
              data-testid="files-upload"
            />
          </label>
        </>
      }
    >
      <form
        class="path-bar"
        onSubmit={(e) => {
          e.preventDefault();
          if (typedPath.startsWith("/")) open(typedPath);
          else setError(new Error("the path must be absolute (start with /)"));
        }}
      >
        <input
          class="mono"
          value={typedPath}
          onInput={(e) => setTypedPath(e.currentTarget.value)}
          data-testid="files-path"
        />
        <button type="submit">Go</button>
      </form>
      {busy && <p class="pending">{busy}</p>}
      <ErrorBanner error={error} onDismiss={() => setError(undefined)} />
      <ErrorBanner error={listing.error} />
      <table class="grid" data-testid="file-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Size</th>
            <th>Mode</th>
            <th>Modified</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {entries.map((f: FileEntry) => (
            <tr key={f.path} data-testid="file-row" data-name={f.name} data-type={f.type}>
              <td class="mono">
                {f.type === "dir" ? (
                  <button type="button" class="link" onClick={() => open(f.path)}>
                    {f.name}/
                  </button>
                ) : (
                  <span>
                    {f.name}
                    {f.target ? ` → ${f.target}` : ""}
                  </span>
                )}
              </td>
              <td>{f.type === "dir" ? "" : formatBytes(f.size)}</td>
              <td class="mono">{f.mode}</td>
              <td class="nowrap">{formatTime(f.mtime)}</td>
              <td>
                <div class="actions">
                  {f.type === "file" && (
                    <button
                      type="button"
                      onClick={() =>
                        act(`Downloading ${f.name}…`, async () =>
                          saveBlob(await api.readFile(sandbox.id, f.path), f.name),
                        )
                      }
                      data-testid="file-download"
                    >
                      Download
                    </button>
                  )}
                  <button
                    type="button"
                    class="danger"
                    onClick={() => {
                      if (confirm(`Delete ${f.path}${f.type === "dir" ? " and everything in it" : ""}?`))
                        act(`Deleting ${f.name}…`, () => api.removeFile(sandbox.id, f.path, f.type === "dir"));
                    }}
                  >
                    Delete
                  </button>
                </div>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {listing.data && entries.length === 0 && <p class="empty">Empty directory.</p>}
    </Panel>
  );
}
