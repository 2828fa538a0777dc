/* What the guest's processes are doing, for the host's idle detection (hibernation). */
#ifndef SANDPIT_ACTIVITY_H
#define SANDPIT_ACTIVITY_H

#include "http.h"

/* GET /activity → {"processes": N, "running": M}: the guest's processes, and how many of their threads are
 * running or ready to run (state R), the agent's own (init and this server) not counted. A loop starved of
 * CPU by a busy host receives little of it, so the host's counters show it as idle; in the guest it is
 * always runnable. */
void handle_activity(struct http_conn *c);

#endif
