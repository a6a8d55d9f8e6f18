/*
 * Allocates memory and touches every page, reporting its progress, as a tenant trying to take
 * more memory than its sandbox may have:
 *
 *   hog <megabytes>   →   "allocated 8 MB", "allocated 16 MB", … and "done" when it got all of it
 *
 * Under a working memory limit it is killed (SIGKILL from the OOM killer) before "done".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEP_MB 8

int main(int argc, char **argv) {
  long target = argc > 1 ? atol(argv[1]) : 512;
  char line[64];
  for (long total = STEP_MB; total <= target; total += STEP_MB) {
    char *block = malloc(STEP_MB << 20);
    if (!block) {
      puts("malloc failed");
      return 1;
    }
    memset(block, 0x5a, STEP_MB << 20); /* every page touched, so it is really resident */
    int length = snprintf(line, sizeof line, "allocated %ld MB\n", total);
    if (write(1, line, length) < 0) return 3;
  }
  if (write(1, "done\n", 5) < 0) return 3;
  return 0;
}
