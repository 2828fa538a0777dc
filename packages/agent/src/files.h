/* File endpoints: read, atomic write, stat, list, remove, mkdir, move. */
#ifndef SANDPIT_FILES_H
#define SANDPIT_FILES_H

#include "http.h"

/* Uploads write a temp file beside the target and rename it over the target, so that nobody sees half a
 * file. The temp's name is this prefix, then 'c' when the target did not exist (the upload creates it) or
 * 'w' when it did (the upload writes it), then '.' and a unique tail. Watchers hide the temp file and report
 * the rename as what the user did. */
#define UPLOAD_TEMP_PREFIX ".sandpit-upload."
#define UPLOAD_TEMP_CREATES 'c'
#define UPLOAD_TEMP_WRITES 'w'

void handle_file_get(struct http_conn *c);
void handle_file_put(struct http_conn *c);
void handle_file_delete(struct http_conn *c);
void handle_file_stat(struct http_conn *c);
void handle_file_list(struct http_conn *c);
void handle_file_mkdir(struct http_conn *c);
void handle_file_move(struct http_conn *c);

#endif
