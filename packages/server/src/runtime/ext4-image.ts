import { runCommand } from "../lib/run-command.js";

/**
 * A new sparse file of `sizeMb` holding an empty ext4 filesystem, for loop mounts whose size is a hard
 * limit (ENOSPC inside, never a full host). No reserved blocks: the whole size is the user's; lazy
 * inode-table and journal init keep creating a large one fast.
 */
export async function makeExt4Image(image: string, sizeMb: number): Promise<void> {
  await runCommand(["truncate", "-s", `${sizeMb}M`, image]);
  await runCommand([
    "mkfs.ext4",
    "-q",
    "-F",
    "-m",
    "0",
    "-E",
    "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
    image,
  ]);
}
