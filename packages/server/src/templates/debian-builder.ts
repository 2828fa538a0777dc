import { runCommand } from "../lib/run-command.js";

export interface BuildProgress {
  phase: string;
  percent: number | null;
  message: string;
}

export interface DebianTemplateDefinition {
  name: string;
  description: string;
  suite: string;
  packages: string[];
  /** Shell commands run after the packages are installed, with `$1` the root filesystem (mmdebstrap hooks). */
  hooks?: string[];
}

/** mmdebstrap's stage messages, in order, with how far along the build is when each appears. */
const stages: [RegExp, string, number][] = [
  [/chosen mode|chosen format/, "resolving", 2],
  [/running apt-get update/, "resolving", 5],
  [/downloading packages/, "downloading", 15],
  [/extracting archives/, "extracting", 40],
  [/installing essential packages/, "installing", 50],
  [/installing remaining packages/, "installing", 70],
  [/running special hook|customize/, "finalizing", 90],
  [/cleaning package lists/, "finalizing", 95],
];

/** Builds a Debian root filesystem with mmdebstrap (minbase variant) into `target`. */
export async function buildDebianRootfs(
  def: DebianTemplateDefinition,
  target: string,
  mirror: string,
  onProgress: (p: BuildProgress) => void,
  onLog: (line: string) => void,
): Promise<void> {
  onProgress({ phase: "starting", percent: 0, message: `mmdebstrap ${def.suite} (${def.packages.length} packages)` });
  await runCommand(
    [
      "mmdebstrap",
      "--variant=minbase",
      "--mode=root",
      `--include=${def.packages.join(",")}`,
      '--customize-hook=mkdir -p "$1/workspace" && chmod 755 "$1/workspace"',
      '--customize-hook=rm -f "$1/etc/resolv.conf" "$1/etc/hostname"',
      // An unprivileged account (uid 1000) beside root, as E2B's and most images' `user`.
      '--customize-hook=chroot "$1" useradd --create-home --uid 1000 --user-group --shell /bin/bash user',
      ...(def.hooks ?? []).map((hook) => `--customize-hook=${hook}`),
      def.suite,
      target,
      mirror,
    ],
    {
      timeoutMs: 30 * 60 * 1000,
      onLine: (line) => {
        onLog(line);
        for (const [re, phase, percent] of stages) {
          if (re.test(line)) onProgress({ phase, percent, message: line.replace(/^I: /, "") });
        }
      },
    },
  );
}
