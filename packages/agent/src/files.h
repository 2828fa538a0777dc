/* File endpoints: read, atomic write, stat, list, remove, mkdir, move. */
#ifndef SANDPIT_FILES_H
#define SANDPIT_FILES_H

#include "http.h"

void handle_file_get(struct http_conn *c);
void handle_file_put(struct http_conn *c);
void handle_file_delete(struct http_conn *c);
void handle_file_stat(struct http_conn *c);
void handle_file_list(struct http_conn *c);
void handle_file_mkdir(struct http_conn *c);
void handle_file_move(struct http_conn *c);

#endif
