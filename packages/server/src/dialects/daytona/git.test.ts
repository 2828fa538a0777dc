import { describe, expect, it } from "vitest";
import { gitErrorCode, parseGitStatus } from "./git.js";

describe("Daytona git status", () => {
  it("reads branch, upstream, ahead/behind and each file's staged and worktree state from git's porcelain v2", () => {
    // Printed by git 2.39 for a clone two commits ahead, with a modified file, a staged rename of a
    // name with a space, and an untracked file.
    const output = [
      "# branch.oid 2210ff028fb8921a211629d3c78960cc915bd08a",
      "# branch.head main",
      "# branch.upstream origin/main",
      "# branch.ab +2 -0",
      "1 .M N... 100644 100644 100644 78981922613b2afb6025042ff6bd878ac1994e85 78981922613b2afb6025042ff6bd878ac1994e85 a.txt",
      "2 R. N... 100644 100644 100644 61780798228d17af2d34fce4cfbdf35556832472 61780798228d17af2d34fce4cfbdf35556832472 R100 d e.txt",
      "b c.txt",
      "? new.txt",
      "",
    ].join("\0");
    expect(parseGitStatus(output)).toEqual({
      currentBranch: "main",
      detached: false,
      upstream: "origin/main",
      branchPublished: true,
      ahead: 2,
      behind: 0,
      fileStatus: [
        { name: "a.txt", staging: "Unmodified", worktree: "Modified", extra: "" },
        { name: "d e.txt", staging: "Renamed", worktree: "Unmodified", extra: "b c.txt" },
        { name: "new.txt", staging: "Untracked", worktree: "Untracked", extra: "" },
      ],
    });
  });

  it("reports a detached head and a branch without upstream", () => {
    const status = parseGitStatus("# branch.oid abc\0# branch.head (detached)\0");
    expect(status).toMatchObject({ currentBranch: "HEAD", detached: true, branchPublished: false, fileStatus: [] });
  });

  it("names git's failures with the daemon's codes, from what git printed", () => {
    expect(gitErrorCode("error: pathspec 'nope' did not match any file(s) known to git")).toBe("GIT_BRANCH_NOT_FOUND");
    expect(gitErrorCode("fatal: a branch named 'feature' already exists")).toBe("GIT_BRANCH_EXISTS");
    expect(gitErrorCode("fatal: '/tmp/x' does not appear to be a git repository")).toBe("GIT_REPO_NOT_FOUND");
    expect(gitErrorCode(" ! [rejected]        main -> main (fetch first)\nerror: failed to push some refs")).toBe(
      "GIT_PUSH_REJECTED",
    );
    expect(gitErrorCode("fatal: could not read Username for 'http://h': terminal prompts disabled")).toBe(
      "GIT_AUTH_FAILED",
    );
    expect(gitErrorCode("CONFLICT (content): Merge conflict in a.txt\nAutomatic merge failed")).toBe(
      "GIT_MERGE_CONFLICT",
    );
    expect(gitErrorCode("fatal: unable to access 'http://h/': Could not resolve host: h")).toBe("GIT_TRANSPORT_FAILED");
    expect(gitErrorCode("fatal: something else")).toBeUndefined();
  });
});
