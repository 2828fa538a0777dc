import { render } from "preact";
import { useMemo, useState } from "preact/hooks";
import { adminSession, ConsoleApi, session } from "./api";
import { Link, useRoute } from "./router";
import "./styles.css";
import { EventLog } from "./views/event-log";
import { Login } from "./views/login";
import { NodeList } from "./views/node-list";
import { SandboxDetail, type SandboxTab } from "./views/sandbox-detail";
import { SandboxList } from "./views/sandbox-list";

const SANDBOX_ROUTE = /^\/sandboxes\/([^/]+)(?:\/(terminal|code|desktop|files|events))?\/?$/;

function App() {
  const [key, setKey] = useState(session.key());
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const api = useMemo(
    () =>
      key
        ? new ConsoleApi(key, () => {
            session.clear();
            setNotice("The server refused the key (401): sign in again.");
            setKey(null);
          })
        : undefined,
    [key],
  );

  if (!api) {
    return (
      <Login
        notice={notice}
        onLogin={(k) => {
          session.save(k);
          setNotice(undefined);
          setKey(k);
        }}
      />
    );
  }
  return (
    <Shell
      api={api}
      onSignOut={() => {
        session.clear();
        adminSession.clear();
        setKey(null);
      }}
    />
  );
}

function Shell({ api, onSignOut }: { api: ConsoleApi; onSignOut: () => void }) {
  const route = useRoute();
  const sandbox = route.path.match(SANDBOX_ROUTE);
  let page: preact.JSX.Element;
  if (route.path === "/" || route.path === "/sandboxes") page = <SandboxList api={api} />;
  else if (sandbox) {
    page = (
      <SandboxDetail api={api} id={sandbox[1]!} tab={(sandbox[2] ?? "overview") as SandboxTab} query={route.query} />
    );
  } else if (route.path === "/events") page = <EventLog api={api} />;
  else if (route.path === "/nodes") page = <NodeList />;
  else page = <p class="empty">Nothing here: {route.path}</p>;

  return (
    <div class="shell">
      <header class="topbar">
        <Link to="/" class="brand">
          Sandpit <span class="brand-sub">console</span>
        </Link>
        <nav>
          <Link to="/" class={route.path === "/" || sandbox ? "nav-link active" : "nav-link"}>
            Sandboxes
          </Link>
          <Link to="/events" class={route.path === "/events" ? "nav-link active" : "nav-link"}>
            Events
          </Link>
          <Link to="/nodes" class={route.path === "/nodes" ? "nav-link active" : "nav-link"} testId="nav-nodes">
            Nodes
          </Link>
        </nav>
        <button type="button" class="ghost" onClick={onSignOut} data-testid="sign-out">
          Sign out
        </button>
      </header>
      <main>{page}</main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
