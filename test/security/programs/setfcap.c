/*
 * What `setcap cap_dac_read_search+ep <file>` does, for images without libcap's setcap: writes a
 * file capability xattr (security.capability, VFS_CAP_REVISION_2) granting CAP_DAC_READ_SEARCH,
 * permitted and effective. Inside a user namespace the kernel rewrites it with the namespace's
 * root uid (revision 3).
 *
 *   setfcap <file>
 */
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  struct vfs_cap_data cap;
  memset(&cap, 0, sizeof cap);
  cap.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE;
  cap.data[0].permitted = 1u << CAP_DAC_READ_SEARCH;
  if (setxattr(argv[1], "security.capability", &cap, XATTR_CAPS_SZ_2, 0) != 0) {
    perror("setxattr security.capability");
    return 1;
  }
  return 0;
}
