/*
 * The sandbox's process 1, as /sbin/init: starts the command in INIT_EXEC (phonehome's observer,
 * when the run has one), reaps every process that ends up its child (a fork bomb's orphans
 * would otherwise hold the pids limit as zombies), and exits 0 on SIGTERM (the engine's stop).
 * Its command line is "/sbin/init" alone: what it starts comes in its environment, which only
 * root can read. Static, so the run's preloads (libfaketime, libextraca) are not in it.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_term(int sig) {
  (void)sig;
  stopping = 1;
}

static void on_child(int sig) { (void)sig; }

static void start(char *cmd, const sigset_t *mask) {
  char *argv[16];
  int argc = 0;
  for (char *save = NULL, *word = strtok_r(cmd, " ", &save); word && argc < 15;
       word = strtok_r(NULL, " ", &save))
    argv[argc++] = word;
  argv[argc] = NULL;
  if (argc == 0) return;
  pid_t pid = fork();
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, mask, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    execv(argv[0], argv);
    _exit(127);
  }
}

int main(void) {
  struct sigaction term = {0}, child = {0};
  term.sa_handler = on_term;
  child.sa_handler = on_child;
  sigaction(SIGTERM, &term, NULL);
  sigaction(SIGINT, &term, NULL);
  sigaction(SIGCHLD, &child, NULL);
  sigset_t blocked, orig;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGCHLD);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGINT);
  sigprocmask(SIG_BLOCK, &blocked, &orig);

  const char *exec = getenv("INIT_EXEC");
  if (exec && *exec) {
    char *cmd = strdup(exec);
    unsetenv("INIT_EXEC");
    if (cmd) start(cmd, &orig);
  }
  for (;;) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (stopping) return 0;
    // Wakes on SIGCHLD or SIGTERM, which stay blocked between the checks: none is missed.
    sigsuspend(&orig);
  }
}
