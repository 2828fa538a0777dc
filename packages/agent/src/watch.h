/* File change notifications (inotify) streamed as NDJSON. */
#ifndef SANDPIT_WATCH_H
#define SANDPIT_WATCH_H

#include "http.h"

void handle_file_watch(struct http_conn *c);

#endif
