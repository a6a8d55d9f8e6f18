/*
 * Calls kernel interfaces that a sandbox must not reach and prints how each went, as root inside
 * a sandbox, each in a child process of its own (so that e.g. a successful unshare does not change
 * the next call):
 *
 *   syscalls <name>...   →   one line each: "<name> ok"  or  "<name> errno=<EPERM|ENOSYS|…>"
 *
 * Each call is well-formed, so that a call the kernel lets through succeeds (or fails past its
 * permission checks with e.g. ENOKEY/ENOENT/EINVAL); a blocked one fails with EPERM, EACCES or
 * ENOSYS. Nothing harmful happens when a call goes through: a key is added to the child's own
 * keyring, a trivial socket filter is loaded, kexec only unloads (no image is loaded), the module
 * calls name nothing that exists, mounts happen in the sandbox's own mount namespace and are undone,
 * pivot_root and umount2 name paths that are no mount points.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/kexec.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif

/* clone() of a child in new namespaces: the child exits at once. */
static long clone_into(int flags) {
  long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid(pid, NULL, 0);
  return pid;
}

static long call(const char *name) {
  if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1);
  if (!strcmp(name, "add_key")) return syscall(SYS_add_key, "user", "sandbox-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
  if (!strcmp(name, "request_key")) return syscall(SYS_request_key, "user", "sandbox-probe-missing", NULL, 0);
  if (!strcmp(name, "bpf")) {
    struct bpf_insn program[] = {
      { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
      { .code = BPF_JMP | BPF_EXIT },
    };
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insn_cnt = 2;
    attr.insns = (uint64_t)(uintptr_t)program;
    attr.license = (uint64_t)(uintptr_t)"GPL";
    return syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
  }
  if (!strcmp(name, "perf_event_open")) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
  }
  if (!strcmp(name, "userfaultfd")) return syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
  if (!strcmp(name, "open_by_handle_at")) {
    /* a handle of the volume (overlayfs roots cannot export handles), opened back by handle */
    const char *paths[] = { "/workspace", ".", "/tmp", "/" };
    struct { struct file_handle handle; unsigned char bytes[MAX_HANDLE_SZ]; } h;
    for (unsigned i = 0; i < sizeof paths / sizeof *paths; i++) {
      int mount_id;
      h.handle.handle_bytes = MAX_HANDLE_SZ;
      if (name_to_handle_at(AT_FDCWD, paths[i], &h.handle, &mount_id, 0) != 0) continue;
      int mount_fd = open(paths[i], O_RDONLY | O_DIRECTORY);
      return syscall(SYS_open_by_handle_at, mount_fd, &h.handle, O_RDONLY);
    }
    return -1; /* no handle to be had: errno of the last name_to_handle_at */
  }
  if (!strcmp(name, "kexec_load")) return syscall(SYS_kexec_load, 0UL, 0UL, NULL, KEXEC_ARCH_DEFAULT);
  if (!strcmp(name, "kexec_file_load")) return syscall(SYS_kexec_file_load, -1, -1, 0UL, "", KEXEC_FILE_UNLOAD);
  if (!strcmp(name, "init_module")) return syscall(SYS_init_module, "", 0UL, "");
  if (!strcmp(name, "finit_module")) return syscall(SYS_finit_module, -1, "", 0);
  if (!strcmp(name, "delete_module")) return syscall(SYS_delete_module, "sandbox_probe_missing", O_NONBLOCK);
  if (!strcmp(name, "unshare_user")) return unshare(CLONE_NEWUSER);
  if (!strcmp(name, "unshare_mount")) return unshare(CLONE_NEWNS);
  if (!strcmp(name, "unshare_cgroup")) return unshare(CLONE_NEWCGROUP);
  if (!strcmp(name, "unshare_net")) return unshare(CLONE_NEWNET);
  if (!strcmp(name, "clone_newuser")) return clone_into(CLONE_NEWUSER);
  if (!strcmp(name, "clone_newns")) return clone_into(CLONE_NEWNS);
  if (!strcmp(name, "setns")) {
    int fd = open("/proc/self/ns/uts", O_RDONLY);
    return setns(fd, CLONE_NEWUTS); /* re-entering its own namespace needs CAP_SYS_ADMIN all the same */
  }
  if (!strcmp(name, "mount")) {
    long result = mount("none", "/tmp", "tmpfs", 0, "size=1m");
    if (result == 0) umount2("/tmp", MNT_DETACH);
    return result;
  }
  if (!strcmp(name, "umount2")) return umount2("/proc/self/fd", 0);                          /* no mount point: EINVAL if let through */
  if (!strcmp(name, "pivot_root")) return syscall(SYS_pivot_root, "/proc/self/fd", "/proc/self/fd"); /* likewise */
  if (!strcmp(name, "fsopen")) return syscall(SYS_fsopen, "tmpfs", 0);
  if (!strcmp(name, "open_tree")) return syscall(SYS_open_tree, AT_FDCWD, "/tmp", OPEN_TREE_CLONE);
  fprintf(stderr, "unknown call %s\n", name);
  exit(2);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  for (int i = 1; i < argc; i++) {
    pid_t child = fork();
    if (child == 0) {
      errno = 0;
      long result = call(argv[i]);
      if (result >= 0) printf("%s ok\n", argv[i]);
      else printf("%s errno=%s\n", argv[i], strerrorname_np(errno));
      _exit(0);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) < 0 || !WIFEXITED(status)) printf("%s crashed\n", argv[i]);
  }
  return 0;
}
