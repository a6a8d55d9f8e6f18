/*
 * The /proc/<pid>/exe race (runc CVE-2019-5736 class), run as root inside a sandbox.
 *
 *   race <log file> <stop file> [<st_dev>:<st_ino> of a host file]...
 *
 * Processes that enter the sandbox (an exec's nsenter, a launcher) are host binaries until they
 * exec the sandbox's program. The pid namespace hands out pids in order, so this spins over the
 * next few pids (and rescans /proc now and then), opening /proc/<pid>/exe with O_PATH. For every
 * executable it gets hold of it logs one line:
 *
 *   CAPTURE pid=<pid> dev=<st_dev> ino=<st_ino> view=<own|foreign> exe=<link text>
 *
 * "own" means the sandbox sees that very inode under that path anyway (e.g. its own
 * copy-on-write root or volume); "foreign" means a file outside its view (e.g. the host's
 * nsenter). For each foreign executable, and each one whose inode is one of the host files named
 * on the command line (however the sandbox sees it), it keeps the O_PATH descriptor and tries to
 * reopen /proc/self/fd/<n> O_WRONLY and O_RDWR, retrying while ETXTBSY (the binary still runs),
 * until the stop file appears and for up to 15 s more while they stay busy:
 *
 *   WRITABLE mode=<O_WRONLY|O_RDWR> view=.. dev=.. ino=.. exe=..   (the hole: a host file could be overwritten)
 *   DENIED mode=.. errno=<name> view=.. dev=.. ino=.. exe=..
 *   BUSY mode=.. view=.. dev=.. ino=.. exe=..                      (still running at the end)
 *
 * Its own copy-on-write files are left alone: a writable open of e.g. its /bin/sh, harmless in
 * itself, would make the next exec fail with ETXTBSY.
 *
 * It never writes a byte to anything it opens, and ends with "END captures=<n>".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SEEN 4096
#define MAX_HELD 64
#define LOOKAHEAD 12
/* After the stop file: how long busy binaries are retried (other execs on the host keep them busy). */
#define FINAL_RETRY_SECONDS 15

struct seen { int pid; dev_t dev; ino_t ino; };
struct held { int fd; int own; int done_wronly, done_rdwr; dev_t dev; ino_t ino; char exe[512]; };

static struct seen seen[MAX_SEEN];
static int nseen;
static struct held held[MAX_HELD];
static int nheld;
static int logfd;
#define VIEW(h) ((h)->own ? "own" : "foreign")
static int highest_pid;
static char **host_files; /* "<dev>:<ino>" */
static int nhost_files;

static int is_host_file(const struct stat *st) {
  char key[64];
  snprintf(key, sizeof key, "%llu:%llu", (unsigned long long)st->st_dev, (unsigned long long)st->st_ino);
  for (int i = 0; i < nhost_files; i++)
    if (!strcmp(host_files[i], key)) return 1;
  return 0;
}

static void logline(const char *format, ...) {
  char line[1024];
  va_list args;
  va_start(args, format);
  int length = vsnprintf(line, sizeof line - 1, format, args);
  va_end(args);
  if (length > (int)sizeof line - 2) length = sizeof line - 2;
  line[length++] = '\n';
  if (write(logfd, line, length) < 0) _exit(3);
}

static int already_seen(int pid, const struct stat *st) {
  for (int i = 0; i < nseen; i++)
    if (seen[i].pid == pid && seen[i].dev == st->st_dev && seen[i].ino == st->st_ino) return 1;
  if (nseen < MAX_SEEN) seen[nseen++] = (struct seen){ pid, st->st_dev, st->st_ino };
  return 0;
}

/* Tries one writable reopen of a held descriptor; returns 1 once settled (opened, or refused for good). */
static int try_reopen(struct held *h, int flags, const char *mode) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", h->fd);
  int fd = open(path, flags | O_CLOEXEC);
  if (fd >= 0) {
    close(fd); /* nothing is written */
    logline("WRITABLE mode=%s view=%s dev=%llu ino=%llu exe=%s", mode, VIEW(h), (unsigned long long)h->dev, (unsigned long long)h->ino, h->exe);
    return 1;
  }
  if (errno == ETXTBSY) return 0;
  logline("DENIED mode=%s errno=%s view=%s dev=%llu ino=%llu exe=%s", mode, strerrorname_np(errno), VIEW(h), (unsigned long long)h->dev, (unsigned long long)h->ino, h->exe);
  return 1;
}

/* Returns how many reopens are still waiting for the binary to be idle. */
static int retry_held(int final) {
  int busy = 0;
  for (int i = 0; i < nheld; i++) {
    struct held *h = &held[i];
    if (!h->done_wronly) h->done_wronly = try_reopen(h, O_WRONLY, "O_WRONLY");
    if (!h->done_rdwr) h->done_rdwr = try_reopen(h, O_RDWR, "O_RDWR");
    if (final && !h->done_wronly) logline("BUSY mode=O_WRONLY view=%s dev=%llu ino=%llu exe=%s", VIEW(h), (unsigned long long)h->dev, (unsigned long long)h->ino, h->exe);
    if (final && !h->done_rdwr) logline("BUSY mode=O_RDWR view=%s dev=%llu ino=%llu exe=%s", VIEW(h), (unsigned long long)h->dev, (unsigned long long)h->ino, h->exe);
    busy += !h->done_wronly + !h->done_rdwr;
  }
  return busy;
}

static void probe(int pid) {
  char path[64], exe[512];
  snprintf(path, sizeof path, "/proc/%d/exe", pid);
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) return;
  if (pid > highest_pid) highest_pid = pid;
  struct stat st, inside;
  /* the path of what was opened (the process may have exec'd something else meanwhile) */
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t length = readlink(path, exe, sizeof exe - 1);
  exe[length < 0 ? 0 : length] = 0;
  if (fstat(fd, &st) != 0 || already_seen(pid, &st)) {
    close(fd);
    return;
  }
  int own = stat(exe, &inside) == 0 && inside.st_dev == st.st_dev && inside.st_ino == st.st_ino;
  logline("CAPTURE pid=%d dev=%llu ino=%llu view=%s exe=%s", pid, (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, own ? "own" : "foreign", exe);
  int known = nheld == MAX_HELD;
  for (int i = 0; i < nheld; i++)
    if (held[i].dev == st.st_dev && held[i].ino == st.st_ino) known = 1;
  if (known || pid == getpid() || (own && !is_host_file(&st))) {
    close(fd);
    return;
  }
  struct held *h = &held[nheld++];
  *h = (struct held){ .fd = fd, .own = own, .dev = st.st_dev, .ino = st.st_ino };
  snprintf(h->exe, sizeof h->exe, "%s", exe);
}

static void scan_proc(void) {
  DIR *dir = opendir("/proc");
  if (!dir) return;
  for (struct dirent *entry; (entry = readdir(dir));) {
    int pid = atoi(entry->d_name);
    if (pid > 0 && pid != getpid()) probe(pid);
  }
  closedir(dir);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  host_files = argv + 3;
  nhost_files = argc - 3;
  logfd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (logfd < 0) return 2;
  logline("START pid=%d", getpid());
  highest_pid = getpid();
  for (unsigned long round = 0;; round++) {
    for (int pid = highest_pid + 1; pid <= highest_pid + LOOKAHEAD; pid++) probe(pid);
    if (round % 2048 == 0) {
      scan_proc();
      retry_held(0);
      if (access(argv[2], F_OK) == 0) break;
    }
  }
  for (int i = 0; i < FINAL_RETRY_SECONDS * 100 && retry_held(0) > 0; i++) usleep(10000);
  retry_held(1);
  logline("END captures=%d held=%d", nseen, nheld);
  return 0;
}
