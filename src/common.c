/*
 * common.c - error messages and names, the version, and small helpers
 * shared by the modules (page size, mapping counts).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

const char *mm_strerror(int rc) {
  switch (rc) {
#define MM__ERROR_MSG(name, value, msg) \
  case value:                           \
    return msg;
    MM_ERROR_LIST(MM__ERROR_MSG)
#undef MM__ERROR_MSG
  case 0:
    return "success";
  default:
    break;
  }
  if (rc < 0 && rc > -4096) {
    const char *s = strerrordesc_np(-rc);
    if (s) return s;
  }
  return "unknown error";
}

const char *mm_errname(int rc) {
  switch (rc) {
#define MM__ERROR_NAME(name, value, msg) \
  case value:                            \
    return #name;
    MM_ERROR_LIST(MM__ERROR_NAME)
#undef MM__ERROR_NAME
  case 0:
    return "OK";
  default:
    break;
  }
  if (rc < 0 && rc > -4096) {
    const char *s = strerrorname_np(-rc);
    if (s) return s;
  }
  return "EUNKNOWN";
}

const char *mm_version(void) { return MM_VERSION_STRING; }

size_t mm__page_size(void) {
  static size_t page;
  if (MM__UNLIKELY(page == 0)) page = (size_t)sysconf(_SC_PAGESIZE);
  return page;
}

/* Count newlines in a /proc file, or parse it as a number when parse is
 * set. Uses plain libc calls so injected faults in sys do not touch these
 * diagnostics. */
static long proc_read(const char *path, int parse) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[4096]; /* small: callers may run on threads with small stacks */
  long lines = 0;
  ssize_t n;
  char first[32] = {0};
  size_t have = 0;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    if (parse && have < sizeof first - 1) {
      size_t k = (size_t)n < sizeof first - 1 - have ? (size_t)n
                                                     : sizeof first - 1 - have;
      memcpy(first + have, buf, k);
      have += k;
    }
    for (ssize_t i = 0; i < n; i++) lines += buf[i] == '\n';
  }
  close(fd);
  if (n < 0) return -1;
  return parse ? strtol(first, NULL, 10) : lines;
}

long mm__map_count(void) { return proc_read("/proc/self/maps", 0); }

long mm__max_map_count(void) {
  return proc_read("/proc/sys/vm/max_map_count", 1);
}

int mm__mmap_error(int rc) {
  if (rc != -ENOMEM) return rc;
  long count = mm__map_count(), max = mm__max_map_count();
  /* The kernel refuses a new mapping once the count reaches the limit; a
   * mapping that would split another needs one or two more. */
  if (count >= 0 && max > 0 && count + 2 >= max) return MM_EMAPCOUNT;
  return rc;
}
