/*
 * sandbox-helper: the few steps of the local sandbox engine that no shell tool can do safely.
 *
 *   sandbox-helper stage <uid base> <count> <init binary> [<source> <target>…]
 *       In the launcher's private mount and pid namespaces, as host root: mounts each source on
 *       its target as an idmapped bind mount (host id N appears as base+N), so that host-owned
 *       lower layers look owned by the sandbox's own root; then a tmpfs over /run holding the
 *       mount points bwrap will use (/run/root, /run/volume) and the init (/run/init, bound
 *       read-only from <init binary>); then a /proc of the launcher's pid namespace, which bwrap
 *       reads. One process instead of a mount(8) per step.
 *   sandbox-helper seccomp-bpf
 *       Writes the sandbox seccomp filter as a BPF program (for bwrap --seccomp) to stdout.
 *   sandbox-helper init
 *       Pid 1 of a sandbox: says it is ready, then reaps orphans until it is killed (the sandbox
 *       outlives the service; the engine ends it by killing its launcher or its cgroups).
 *   sandbox-helper enter <host pid of the sandbox init> <program> [args…]
 *       Starts program inside the sandbox of that init (every namespace and its root) as the
 *       sandbox's root, with the sandbox's capabilities, no_new_privs and seccomp filter.
 *
 * Why `enter` is safe against /proc/<pid>/exe hijacking (runc CVE-2019-5736): it makes itself
 * non-dumpable before it joins anything, and its memory was created by exec on the host, so no
 * process of the sandbox (which has no capability in the host's user namespace) may ptrace it or
 * open its /proc/<pid>/exe or descriptors. It sheds host root (uid and capabilities) and loads the
 * filter before the fork that makes it visible in the sandbox's pid namespace; the first thing the
 * sandbox can touch is the program it then executes from the sandbox's own root.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_LINE "sandbox-ready\n"
#define USERNS_BLOCK_FD 4

static void die(const char *what) {
  fprintf(stderr, "sandbox-helper: %s: %s\n", what, strerror(errno));
  exit(125);
}

static void die_msg(const char *what) {
  fprintf(stderr, "sandbox-helper: %s\n", what);
  exit(125);
}

/* ---------------------------------------------------------------- seccomp */

static const char *const DENIED_SYSCALLS[] = {
    /* filesystems and mounts */
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "swapon", "swapoff", "quotactl", "quotactl_fd", "nfsservctl",
    /* namespaces */
    "unshare", "setns",
    /* kernel keyring, BPF, perf, modules, kexec */
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module",
    /* handles that bypass path checks, fault handling, async I/O rings */
    "open_by_handle_at", "name_to_handle_at", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    /* the host's clock, accounting, logs, reboot, raw I/O */
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "acct", "syslog", "reboot", "vhangup", "iopl", "ioperm",
    "lookup_dcookie", "uselib", "ustat", "sysfs", "_sysctl", "fanotify_init", "kcmp", "process_madvise",
    "lsm_set_self_attr", "landlock_create_ruleset",
};

static const unsigned long NAMESPACE_FLAGS[] = {
    CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWCGROUP,
};

/* Denies at least what Docker's default profile denies; other architectures' syscalls kill. */
static scmp_filter_ctx sandbox_filter(void) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) die_msg("seccomp_init failed");
  for (size_t i = 0; i < sizeof DENIED_SYSCALLS / sizeof *DENIED_SYSCALLS; i++) {
    int nr = seccomp_syscall_resolve_name(DENIED_SYSCALLS[i]);
    if (nr == __NR_SCMP_ERROR) continue; /* not a syscall on this architecture */
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) < 0) die_msg("seccomp_rule_add failed");
  }
  /* clone() may not make namespaces; clone3() hides its flags from seccomp, so it reports ENOSYS
     and the C library falls back to clone(). */
  for (size_t i = 0; i < sizeof NAMESPACE_FLAGS / sizeof *NAMESPACE_FLAGS; i++) {
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, NAMESPACE_FLAGS[i], NAMESPACE_FLAGS[i])) < 0)
      die_msg("seccomp_rule_add(clone) failed");
  }
  if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0) die_msg("seccomp_rule_add(clone3) failed");
  return ctx;
}

static int export_bpf(void) {
  scmp_filter_ctx ctx = sandbox_filter();
  if (seccomp_export_bpf(ctx, STDOUT_FILENO) < 0) die_msg("seccomp_export_bpf failed");
  seccomp_release(ctx);
  return 0;
}

/* ------------------------------------------------------------ idmap mounts */

/* A user namespace with the mapping `0 base count`, held by a child that waits; returns its fd. */
static int mapped_userns(const char *base, const char *count) {
  int ready[2], release[2];
  if (pipe(ready) || pipe(release)) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    char self[32] = {0};
    close(release[1]);
    if (unshare(CLONE_NEWUSER)) _exit(1);
    /* The pid as /proc sees it: this may run in a pid namespace whose /proc is the host's. */
    if (readlink("/proc/self", self, sizeof self - 1) < 0) _exit(1);
    if (write(ready[1], self, sizeof self) != sizeof self) _exit(1);
    char byte;
    if (read(release[0], &byte, 1) < 0) _exit(1);
    _exit(0);
  }
  close(release[0]);
  close(ready[1]);
  char proc_pid[32];
  if (read(ready[0], proc_pid, sizeof proc_pid) != sizeof proc_pid) die_msg("the user namespace holder failed");
  char map[64], path[96];
  snprintf(map, sizeof map, "0 %s %s\n", base, count);
  const char *files[] = {"uid_map", "gid_map"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "/proc/%s/%s", proc_pid, files[i]);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, map, strlen(map)) != (ssize_t)strlen(map)) die(path);
    close(fd);
  }
  snprintf(path, sizeof path, "/proc/%s/ns/user", proc_pid);
  int userns = open(path, O_RDONLY | O_CLOEXEC);
  if (userns < 0) die(path);
  close(release[1]);
  waitpid(child, NULL, 0);
  return userns;
}

static void idmap_mounts(const char *base, const char *count, int pairs, char **paths) {
  if (pairs == 0) return;
  int userns = mapped_userns(base, count);
  for (int i = 0; i < pairs * 2; i += 2) {
    const char *source = paths[i], *target = paths[i + 1];
    int tree = syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0) die(source);
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, .userns_fd = userns};
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr)) die(source);
    if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)) die(target);
    close(tree);
  }
  close(userns);
}

static int stage(int argc, char **argv) {
  if (argc < 3 || (argc - 3) % 2 != 0) die_msg("usage: stage <base> <count> <init binary> (<source> <target>)…");
  idmap_mounts(argv[0], argv[1], (argc - 3) / 2, argv + 3);
  if (mount("sandbox-stage", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")) die("tmpfs on /run");
  if (mkdir("/run/root", 0755) || mkdir("/run/volume", 0755)) die("mkdir in /run");
  int init_file = open("/run/init", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
  if (init_file < 0) die("/run/init");
  close(init_file);
  if (mount(argv[2], "/run/init", NULL, MS_BIND, NULL)) die(argv[2]);
  if (mount(NULL, "/run/init", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL)) die("/run/init read-only");
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) die("proc");
  return 0;
}

/* -------------------------------------------------------------------- init */

static _Noreturn void init(void) {
  close(USERNS_BLOCK_FD); /* bwrap leaves it open */
  umask(022);
  sigset_t child_signals;
  sigemptyset(&child_signals);
  sigaddset(&child_signals, SIGCHLD);
  sigprocmask(SIG_BLOCK, &child_signals, NULL);
  int children = signalfd(-1, &child_signals, SFD_CLOEXEC);
  if (children < 0) die("signalfd");
  if (write(STDOUT_FILENO, READY_LINE, strlen(READY_LINE)) < 0) die("write");
  /* Nothing more is said: the service's end of stdout may close at any time without ending the sandbox. */
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(null_fd, STDOUT_FILENO) < 0 || dup2(null_fd, STDERR_FILENO) < 0) die("/dev/null");
  if (null_fd > STDERR_FILENO) close(null_fd);
  for (;;) {
    struct signalfd_siginfo info;
    if (read(children, &info, sizeof info) < 0 && errno != EINTR) die("read signalfd");
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
  }
}

/* ------------------------------------------------------------------- enter */

/* Docker's default capability set; CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_NET_ADMIN… stay out. */
static const int KEPT_CAPABILITIES[] = {
    CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW, CAP_SETGID,
    CAP_SETUID, CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
};

static void keep_sandbox_capabilities(void) {
  __u64 kept = 0;
  for (size_t i = 0; i < sizeof KEPT_CAPABILITIES / sizeof *KEPT_CAPABILITIES; i++) kept |= 1ULL << KEPT_CAPABILITIES[i];
  for (int cap = 0; prctl(PR_CAPBSET_READ, cap) >= 0; cap++) {
    if (!(kept & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap)) die("PR_CAPBSET_DROP");
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)) die("PR_CAP_AMBIENT");
  struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2] = {{0}};
  data[0].effective = data[0].permitted = data[0].inheritable = (__u32)kept;
  data[1].effective = data[1].permitted = data[1].inheritable = (__u32)(kept >> 32);
  if (syscall(SYS_capset, &header, data)) die("capset");
}

static int open_namespace(const char *pid, const char *name) {
  char path[96];
  snprintf(path, sizeof path, "/proc/%s/ns/%s", pid, name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(path);
  return fd;
}

static int wait_and_mirror(pid_t child) {
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) die("waitpid");
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  int signal_number = WTERMSIG(status);
  signal(signal_number, SIG_DFL);
  kill(getpid(), signal_number);
  return 128 + signal_number;
}

static int enter(int argc, char **argv) {
  if (argc < 2) die_msg("usage: enter <init pid> <program> [args…]");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) die("PR_SET_DUMPABLE");
  const char *pid = argv[0];
  /* The user namespace is joined last: until then host root may join the others (an "open"
     sandbox shares the host's network namespace, which the sandbox's user namespace does not own). */
  const char *names[] = {"cgroup", "ipc", "uts", "net", "pid", "mnt"};
  const int types[] = {CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWNS};
  int fds[6];
  for (int i = 0; i < 6; i++) fds[i] = open_namespace(pid, names[i]);
  int user = open_namespace(pid, "user");
  char root_path[96];
  snprintf(root_path, sizeof root_path, "/proc/%s/root", pid);
  int root = open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die(root_path);

  for (int i = 0; i < 6; i++) {
    if (setns(fds[i], types[i])) die(names[i]);
    close(fds[i]);
  }
  if (setns(user, CLONE_NEWUSER)) die("user");
  close(user);
  if (fchdir(root) || chroot(".") || chdir("/")) die("chroot");
  close(root);
  if (setgroups(0, NULL) || setresgid(0, 0, 0) || setresuid(0, 0, 0)) die("becoming the sandbox's root");
  keep_sandbox_capabilities();
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("PR_SET_NO_NEW_PRIVS");
  scmp_filter_ctx filter = sandbox_filter();
  if (seccomp_load(filter) < 0) die_msg("seccomp_load failed");
  seccomp_release(filter);

  pid_t child = fork(); /* only children join the pid namespace */
  if (child < 0) die("fork");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    umask(022); /* the sandbox's default, not the service's private one */
    execvp(argv[1], argv + 1);
    die(argv[1]);
  }
  return wait_and_mirror(child);
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "stage") == 0) return stage(argc - 2, argv + 2);
  if (argc >= 2 && strcmp(argv[1], "seccomp-bpf") == 0) return export_bpf();
  if (argc >= 2 && strcmp(argv[1], "init") == 0) init();
  if (argc >= 2 && strcmp(argv[1], "enter") == 0) return enter(argc - 2, argv + 2);
  die_msg("usage: sandbox-helper stage|seccomp-bpf|init|enter …");
  return 125;
}
