/*
 * test_common.c - errors, version, the sys layer's fault injection, and the
 * shared library's exported symbols.
 */
#include "test.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sys.h"

TEST(errors_library_codes_are_outside_the_errno_range) {
  int codes[] = {MM_ECORRUPT, MM_EVERSION, MM_ETRUNCATED, MM_EPEERDEAD,
                 MM_EFULL, MM_EOF, MM_ERANGE, MM_ENOTMAPPABLE, MM_EMAPCOUNT, MM_ENOTHEAP, MM_EPLATFORM};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    ASSERT(codes[i] <= MM_ERROR_FIRST && codes[i] >= MM_ERROR_LAST);
    ASSERT(-codes[i] > 4095); /* the kernel's largest errno is 4095 */
    ASSERT(strcmp(mm_strerror(codes[i]), "unknown error") != 0);
    ASSERT(!strncmp(mm_errname(codes[i]), "MM_E", 4));
  }
  ASSERT(!strcmp(mm_errname(MM_ETRUNCATED), "MM_ETRUNCATED"));
}

TEST(errors_errno_values_get_the_system_message_and_name) {
  ASSERT(!strcmp(mm_errname(-ENOENT), "ENOENT"));
  ASSERT(!strcmp(mm_strerror(-ENOENT), strerror(ENOENT)));
  ASSERT(!strcmp(mm_errname(0), "OK"));
  ASSERT(!strcmp(mm_strerror(0), "success"));
  ASSERT(!strcmp(mm_strerror(-4999), "unknown error"));
  ASSERT(!strcmp(mm_errname(12345), "EUNKNOWN"));
}

TEST(version_matches_the_header) {
  ASSERT(!strcmp(mm_version(), MM_VERSION_STRING));
}

TEST(sys_fault_fails_exactly_the_nth_call) {
  void *p;
  mm__fault_set(MM_SYS_MMAP, 2, ENOMEM, 0);
  ASSERT_OK(mm__sys_mmap(&p, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_OK(mm__sys_munmap(p, 4096));
  ASSERT_RC(mm__sys_mmap(&p, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), -ENOMEM);
  ASSERT(p == NULL);
  ASSERT_OK(mm__sys_mmap(&p, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_OK(mm__sys_munmap(p, 4096));
}

TEST(sys_fault_sticky_fails_every_later_call_until_cleared) {
  mm__fault_set(MM_SYS_OPEN, 1, EMFILE, 1);
  ASSERT_RC(mm__sys_open("/dev/null", 0, 0), -EMFILE);
  ASSERT_RC(mm__sys_open("/dev/null", 0, 0), -EMFILE);
  mm__fault_clear();
  int fd = mm__sys_open("/dev/null", 0, 0);
  ASSERT(fd >= 0);
  ASSERT_OK(mm__sys_close(fd));
}

TEST(sys_injected_close_failure_still_frees_the_descriptor) {
  int fd = mm__sys_open("/dev/null", 0, 0);
  ASSERT(fd >= 0);
  mm__fault_set(MM_SYS_CLOSE, 1, EIO, 0);
  ASSERT_RC(mm__sys_close(fd), -EIO);
  ASSERT(fcntl(fd, F_GETFD) < 0 && errno == EBADF);
}

static int trace_ops[16], trace_n;
static void trace(void *arg, int op, long result) {
  (void)arg, (void)result;
  if (trace_n < 16) trace_ops[trace_n++] = op;
}

TEST(sys_trace_records_calls_in_order) {
  mm__sys_trace(trace, NULL);
  int fd = mm__sys_open("/dev/null", 0, 0);
  struct stat st;
  ASSERT_OK(mm__sys_fstat(fd, &st));
  ASSERT_OK(mm__sys_close(fd));
  mm__sys_trace(NULL, NULL);
  ASSERT_EQ(trace_n, 3);
  ASSERT_EQ(trace_ops[0], MM_SYS_OPEN);
  ASSERT_EQ(trace_ops[1], MM_SYS_FSTAT);
  ASSERT_EQ(trace_ops[2], MM_SYS_CLOSE);
  ASSERT(!strcmp(mm__sys_name(MM_SYS_FSTAT), "fstat"));
}

TEST(shared_library_exports_only_public_names) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "nm -D --defined-only %s/libmemmap.so 2>/dev/null | awk '$2 ~ /[TDBR]/ {print $3}'",
           mm_test_bindir());
  FILE *p = popen(cmd, "r");
  if (!p) SKIP("cannot run nm");
  char line[256];
  int n = 0;
  while (fgets(line, sizeof line, p)) {
    line[strcspn(line, "\n")] = 0;
    if (!line[0]) continue;
    n++;
    if (strncmp(line, "mm_", 3) != 0 || !strncmp(line, "mm__", 4))
      FAIL("libmemmap.so exports internal symbol '%s'", line);
  }
  int st = pclose(p);
  if (n == 0) SKIP("nm found no symbols (binutils missing?), status %d", st);
  ASSERT(n >= 10);
}

TEST(shared_library_has_a_soname) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "readelf -d %s/libmemmap.so 2>/dev/null | grep -c 'SONAME.*libmemmap.so.0'",
           mm_test_bindir());
  FILE *p = popen(cmd, "r");
  if (!p) SKIP("cannot run readelf");
  int n = 0;
  if (fscanf(p, "%d", &n) != 1) n = -1;
  pclose(p);
  if (n < 0) SKIP("readelf unavailable");
  ASSERT_EQ(n, 1);
}
