/*
 * memmap/common.h - what every memmap module shares: the export macro,
 * function attributes, the version, and the error codes.
 *
 * ERRORS
 * Every memmap function that can fail returns an int: 0 on success, or a
 * negative value on failure. A negative value is either a negated errno
 * (-ENOENT, -ENOMEM, ...) passed through from the kernel, or one of the
 * library's own codes below. The library codes live in the band
 * [-5099, -5000], far outside the errno range (errno values are < 4096), so
 * the two never collide. mm_strerror() and mm_errname() cover both.
 */
#ifndef MEMMAP_COMMON_H
#define MEMMAP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(MM_BUILDING_LIBRARY)
#define MM_API __attribute__((visibility("default")))
#else
#define MM_API
#endif

/* Functions whose result says whether they worked. Ignoring it is a bug. */
#define MM_NODISCARD __attribute__((warn_unused_result))

#define MM_VERSION_MAJOR 0
#define MM_VERSION_MINOR 1
#define MM_VERSION_PATCH 0
#define MM_VERSION_STRING "0.1.0"

/*
 * The library's own error codes: X(name, value, message).
 * One list generates the enum, mm_strerror() and mm_errname().
 */
#define MM_ERROR_LIST(X)                                                       \
  X(MM_ECORRUPT,     -5000, "data is corrupt or was written by something else") \
  X(MM_EVERSION,     -5001, "unsupported format version")                      \
  X(MM_ETRUNCATED,   -5002, "the file shrank under the mapping")               \
  X(MM_EPEERDEAD,    -5003, "the peer process died")                           \
  X(MM_EFULL,        -5004, "the reservation or capacity is exhausted")        \
  X(MM_EOF,          -5005, "end of stream")                                   \
  X(MM_ERANGE,       -5006, "the range lies outside the file")                 \
  X(MM_ENOTMAPPABLE, -5007, "this file cannot be memory-mapped")               \
  X(MM_EMAPCOUNT,    -5008, "too many mappings: vm.max_map_count is reached") \
  X(MM_ENOTHEAP,     -5009, "the file is not a memmap heap")                  \
  X(MM_EPLATFORM,    -5010, "made on a machine with another page size, byte order or word size")

enum mm_error {
#define MM__ERROR_ENUM(name, value, msg) name = (value),
  MM_ERROR_LIST(MM__ERROR_ENUM)
#undef MM__ERROR_ENUM
  MM_ERROR_FIRST = -5000,
  MM_ERROR_LAST = -5099
};

/* Sync flags, for every module that writes back to a file. */
enum mm_sync_flags {
  MM_SYNC_WAIT = 0,  /* write back and wait: durable when it returns 0 */
  MM_SYNC_ASYNC = 1  /* start write-back, do not wait; promises nothing */
};

/*
 * A message for any return value: 0 ("success"), a negated errno, or a
 * library code. Unknown values give "unknown error". The string is static
 * and valid for the life of the process. Thread-safe.
 */
MM_API const char *mm_strerror(int rc);

/*
 * The symbolic name of a return value: "MM_ETRUNCATED", "ENOENT", "OK".
 * Unknown values give "EUNKNOWN". The string is static. Thread-safe.
 */
MM_API const char *mm_errname(int rc);

/* The library's version string, e.g. "0.1.0". Static. */
MM_API const char *mm_version(void);

#endif /* MEMMAP_COMMON_H */
