/* The HTTP server process: accept loop, connection threads, routing. */
#ifndef SANDPIT_SERVER_H
#define SANDPIT_SERVER_H

/* Binds the configured address. Returns the listening fd or -1. */
int server_listen(void);
/* Runs the server; listen_fd < 0: bind it here (retrying until it works). Never returns. */
void server_main(int listen_fd) __attribute__((noreturn));

#endif
