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
 * It reads `environ` itself instead of calling the next getenv, so it needs nothing that could
 * call getenv back.
 *
 * It also keeps libfaketime's plumbing out of sight. libfaketime shares a counter between a
 * process and its children through a semaphore and a shared memory object in /dev/shm
 * (`faketime_sem_<pid>`, `faketime_shm_<pid>`), an open descriptor on it, and the variable
 * FAKETIME_SHARED that names them: any of these says "libfaketime" to a package that lists
 * /dev/shm, its own descriptors or its environment. The virtual clock (a rate from each
 * process's start, /etc/faketimerc) needs none of it: when libfaketime asks, sem_open answers its
 * names with a failure, which it takes as a platform without semaphores and goes on without, and
 * getenv says the variable is not set, so it never sets it. Every other caller gets the real
 * thing (a package that sets FAKETIME_SHARED itself reads it back).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef CA_FILE
#define CA_FILE "/run/identity/ca.pem"
#endif
#ifndef NODE_BINARY
#define NODE_BINARY "/usr/local/bin/node"
#endif
#define WANTED "NODE_EXTRA_CA_CERTS"
#define FT_SHARED "FAKETIME_SHARED"
#define FT_PREFIX "/faketime_"

extern char **environ;

static int served;

/* Whether the code at `where` is libfaketime's. */
static int from_faketime(const void *where) {
  Dl_info info;
  return dladdr(where, &info) != 0 && info.dli_fname != NULL &&
         strstr(info.dli_fname, "libfaketime") != NULL;
}

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
  if (name[0] == 'F' && strcmp(name, FT_SHARED) == 0 &&
      from_faketime(__builtin_return_address(0)))
    return NULL;
  char *value = real_getenv(name);
  if (!served && value == NULL && name[0] == 'N' && strcmp(name, WANTED) == 0) {
    served = 1;
    if (is_node() && access(CA_FILE, R_OK) == 0) return (char *)CA_FILE;
  }
  return value;
}

sem_t *sem_open(const char *name, int oflag, ...) {
  if (strncmp(name, FT_PREFIX, sizeof(FT_PREFIX) - 1) == 0 &&
      from_faketime(__builtin_return_address(0))) {
    errno = ENOSYS;
    return SEM_FAILED;
  }
  static sem_t *(*next)(const char *, int, ...);
  if (next == NULL) next = (sem_t * (*)(const char *, int, ...)) dlsym(RTLD_NEXT, "sem_open");
  if (next == NULL) {
    errno = ENOSYS;
    return SEM_FAILED;
  }
  if (oflag & O_CREAT) {
    va_list ap;
    va_start(ap, oflag);
    mode_t mode = va_arg(ap, mode_t);
    unsigned int value = va_arg(ap, unsigned int);
    va_end(ap);
    return next(name, oflag, mode, value);
  }
  return next(name, oflag);
}
