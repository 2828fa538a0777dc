/* Killing a command's whole process tree. */
#ifndef SANDPIT_EXEC_KILL_H
#define SANDPIT_EXEC_KILL_H

#include <sys/types.h>

/* Stops and SIGKILLs root, its process group, its descendants found in /proc, and (marker != NULL) every
 * process whose environment carries the entry `marker`. Stopping them first keeps any from forking away
 * while the tree is collected. */
void kill_tree(pid_t root, const char *marker);

#endif
