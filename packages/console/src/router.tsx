import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";

/** Where the server mounts the console ("/console"); every route below is relative to it. */
const BASE = import.meta.env.BASE_URL.replace(/\/$/, "");

export interface Route {
  /** The path below the base, starting with "/". */
  path: string;
  query: URLSearchParams;
}

function current(): Route {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : location.pathname;
  return { path: path || "/", query: new URLSearchParams(location.search) };
}

/** Goes to a console route (history navigation: the server answers every console path with the app). */
export function navigate(to: string, replace = false): void {
  const url = BASE + to;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  dispatchEvent(new PopStateEvent("popstate"));
}

/** The current route; re-renders on navigation. */
export function useRoute(): Route {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const update = () => setRoute(current());
    addEventListener("popstate", update);
    return () => removeEventListener("popstate", update);
  }, []);
  return route;
}

/** A link to a console route; a plain click navigates in place, modified clicks open as the browser does. */
export function Link(props: { to: string; class?: string; children: ComponentChildren; testId?: string }) {
  return (
    <a
      href={BASE + props.to}
      class={props.class}
      data-testid={props.testId}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(props.to);
      }}
    >
      {props.children}
    </a>
  );
}
