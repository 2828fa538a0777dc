import { useState } from "preact/hooks";
import { ApiError, ConsoleApi } from "../api";

/** Asks for an API key and keeps it only once the server accepted it. */
export function Login({ notice, onLogin }: { notice: string | undefined; onLogin: (key: string) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | undefined>(undefined);
  const [checking, setChecking] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const trimmed = key.trim();
    if (!trimmed) {
      setError("Enter an API key.");
      return;
    }
    setChecking(true);
    setError(undefined);
    try {
      await new ConsoleApi(trimmed).json("/sandboxes?limit=1");
      onLogin(trimmed);
    } catch (e) {
      setError(
        e instanceof ApiError && e.status === 401
          ? "The server refused this key."
          : `Could not check the key: ${e instanceof Error ? e.message : e}`,
      );
    } finally {
      setChecking(false);
    }
  };

  return (
    <div class="login">
      <form class="card" onSubmit={submit} data-testid="login-form">
        <h1>
          Sandpit <span class="brand-sub">console</span>
        </h1>
        <p class="muted">Sign in with an API key of your organisation. It is kept in this tab only.</p>
        {notice && <p class="notice">{notice}</p>}
        <label>
          API key
          <input
            type="password"
            name="apiKey"
            autoComplete="off"
            placeholder="sp_…"
            value={key}
            onInput={(e) => setKey(e.currentTarget.value)}
            data-testid="api-key"
          />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={checking} data-testid="sign-in">
          {checking ? "Checking…" : "Sign in"}
        </button>
      </form>
    </div>
  );
}
