/*
 * Makes the real node binary trust the run's CA without a flag or a variable a package could read.
 *
 * Loaded into every dynamically linked program of the sandbox from /etc/ld.so.preload (after
 * libfaketime). It replaces getenv(): node asks once, while it starts and before any JavaScript
 * runs, for NODE_EXTRA_CA_CERTS; the first such question of a node process is answered with the
 * run's CA certificate (CA_FILE, written by phonehome before any package code runs) when that file
 * exists and the real environment does not set the variable. Every later question, and every
 * question of another program, gets the real environment: `process.env.NODE_EXTRA_CA_CERTS`,
 * `printenv` and /proc/self/environ show nothing.
 *
 * It reads `environ` itself instead of calling the next getenv, so it needs neither dlsym nor
 * anything that could call getenv back.
 */
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#ifndef CA_FILE
#define CA_FILE "/run/identity/ca.pem"
#endif
#ifndef NODE_BINARY
#define NODE_BINARY "/usr/local/bin/node"
#endif
#define WANTED "NODE_EXTRA_CA_CERTS"

extern char **environ;

static int served;

static char *real_getenv(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || strchr(name, '=') != NULL || environ == NULL) return NULL;
  for (char **e = environ; *e != NULL; e++) {
    if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
  }
  return NULL;
}

static int is_node(void) {
  char exe[sizeof(NODE_BINARY) + 1];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe));
  return len == (ssize_t)(sizeof(NODE_BINARY) - 1) && memcmp(exe, NODE_BINARY, (size_t)len) == 0;
}

char *getenv(const char *name) {
  if (name == NULL) return NULL;
  char *value = real_getenv(name);
  if (!served && value == NULL && name[0] == 'N' && strcmp(name, WANTED) == 0) {
    served = 1;
    if (is_node() && access(CA_FILE, R_OK) == 0) return (char *)CA_FILE;
  }
  return value;
}
