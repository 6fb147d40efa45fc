/*
 * view.c - file views: a window on a file, mapped or read, with
 * SIGBUS-safe access.
 *
 * HOW IT WORKS
 *
 * Opening. mm_view_open() opens the path (O_RDONLY, or O_RDWR for a WRITE
 * view), fstat()s it and picks a backend:
 *   - a regular file whose range is at least the threshold, any WRITE view,
 *     or a character device with an explicit length: mmap;
 *   - everything else (small files, pipes, sockets, ttys, procfs files whose
 *     size reads as 0, devices that refuse mmap): read() into a buffer.
 * A failed mmap with an error that means "this cannot be mapped" (ENODEV,
 * EACCES, EINVAL, ...) falls back to reading unless the caller forced
 * MM_BACKEND_MMAP. The mapping starts at the page below the offset; `delta`
 * is the slack before the first byte of the view. READ and PRIVATE views
 * close their descriptor as soon as the bytes are mapped or read.
 *
 * The guard. A truncated file raises SIGBUS when a page past its new end is
 * touched. Guarded functions push a `struct guard` (a sigjmp_buf and the
 * mapping's address range) on a per-thread stack, do the access, and pop
 * it. One process-wide SIGBUS handler, installed on first use with
 * SA_NODEFER (so that jumping out leaves SIGBUS unblocked without saving the
 * signal mask, which would cost a system call per guarded access), walks the
 * faulting thread's stack: if a kernel-generated fault's address lies in a
 * guarded range, it pops down to that guard and siglongjmps to it. Anything
 * else goes to the handler that was installed before ours, or, if that was
 * SIG_DFL, the default action is restored and the fault re-raised so the
 * process dies exactly as it would have.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "memmap/view.h"

struct mm_view {
  unsigned char *data; /* first byte of the view */
  uint64_t size;       /* bytes in the view */
  void *map;           /* mapping base (page aligned) or read buffer; NULL
                          for an empty view */
  size_t map_len;      /* bytes mapped (whole pages) or allocated */
  uint64_t offset;     /* file offset of data[0] */
  size_t delta;        /* data - map for a mapping (offset % page) */
  int backend;         /* MM_BACKEND_MMAP or MM_BACKEND_READ */
  int mode;            /* enum mm_view_mode */
  unsigned flags;      /* enum mm_view_flags */
  int fd;              /* kept by WRITE views only; -1 otherwise */
};

/* The address an empty view hands out: valid, never dereferenced. */
static unsigned char empty_view_byte;

const char *mm_backend_name(int backend) {
  switch (backend) {
  case MM_BACKEND_AUTO: return "auto";
  case MM_BACKEND_MMAP: return "mmap";
  case MM_BACKEND_READ: return "read";
  default: return "?";
  }
}

/* ---------------------------------------------------------------------- */
/* Reading into a buffer                                                   */

/* Read the range of a regular file (known size) with pread. */
static int read_file_range(mm_view_t *v, int fd, uint64_t off, uint64_t len,
                           int exact) {
  if (len > SIZE_MAX - 1) return -EFBIG;
  unsigned char *buf = malloc(len ? (size_t)len : 1);
  if (!buf) return -ENOMEM;
  uint64_t got = 0;
  while (got < len) {
    ssize_t n = mm__sys_pread(fd, buf + got, (size_t)(len - got), off + got);
    if (n < 0) {
      free(buf);
      return (int)n;
    }
    if (n == 0) break; /* end of file: the file shrank, or a sysfs file */
    got += (uint64_t)n;
  }
  if (got < len && exact) {
    free(buf);
    return MM_ERANGE;
  }
  if (got == 0 && off > 0) {
    /* Nothing at the offset of a file whose size lied (sysfs reports 4096
     * for a few bytes): the offset is past the real end unless the byte
     * before it exists. */
    unsigned char b;
    ssize_t n = mm__sys_pread(fd, &b, 1, off - 1);
    if (n <= 0) {
      free(buf);
      return n < 0 ? (int)n : MM_ERANGE;
    }
  }
  v->map = buf;
  v->map_len = len ? (size_t)len : 1;
  v->data = buf;
  v->size = got;
  return 0;
}

/* Read a stream (pipe, socket, tty, device, procfs file) from its current
 * position: skip `off` bytes, then read `len` bytes, or to the end when
 * len is 0, at most `limit`. */
static int read_stream(mm_view_t *v, int fd, uint64_t off, uint64_t len,
                       uint64_t limit) {
  unsigned char scratch[4096];
  while (off > 0) {
    ssize_t n = mm__sys_read(fd, scratch,
                             off < sizeof scratch ? (size_t)off : sizeof scratch);
    if (n < 0) return (int)n;
    if (n == 0) return MM_ERANGE;
    off -= (uint64_t)n;
  }
  uint64_t cap = len ? len : 65536;
  if (!len && cap > limit) cap = limit ? limit : 1;
  if (cap > SIZE_MAX - 1) return -EFBIG;
  unsigned char *buf = malloc((size_t)cap);
  if (!buf) return -ENOMEM;
  uint64_t got = 0;
  for (;;) {
    if (got == cap) {
      if (len) break;                /* read all that was asked for */
      if (cap >= limit) {            /* there may be more: probe one byte */
        ssize_t n = mm__sys_read(fd, scratch, 1);
        if (n == 0) break;
        free(buf);
        return n < 0 ? (int)n : -EFBIG;
      }
      uint64_t ncap = cap * 2 > limit ? limit : cap * 2;
      unsigned char *nbuf = realloc(buf, (size_t)ncap);
      if (!nbuf) {
        free(buf);
        return -ENOMEM;
      }
      buf = nbuf;
      cap = ncap;
    }
    ssize_t n = mm__sys_read(fd, buf + got, (size_t)(cap - got));
    if (n < 0) {
      free(buf);
      return (int)n;
    }
    if (n == 0) break;
    got += (uint64_t)n;
  }
  if (len && got < len) {
    free(buf);
    return MM_ERANGE;
  }
  v->map = buf;
  v->map_len = (size_t)cap;
  v->data = buf;
  v->size = got;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Mapping                                                                 */

/* Errors from mmap that mean "this object cannot be mapped": no mmap
 * method (ENODEV, from procfs, sysfs, most character devices), or a driver
 * that rejects the request (EINVAL, EOPNOTSUPP). Permission errors (EACCES:
 * descriptor not open for what the mode needs; EPERM: a seal or a noexec
 * mount) are not: they are passed through, as reading would not be what
 * the caller asked for either. */
static int unmappable_error(int rc) {
  return rc == -ENODEV || rc == -EINVAL || rc == -EOPNOTSUPP || rc == -ENOSYS;
}

/* Large-folio alignment: mappings of at least this size are placed at an
 * address congruent to their file offset modulo it, so that the kernel can
 * map the page cache's PMD-sized folios with one PMD entry instead of 512
 * PTEs. On x86_64 with 4 KiB pages that is 2 MiB. It matters more than it
 * looks: the first touch of each new PTE costs a TLB fill at least, and
 * about 1.3 us under a hypervisor that shadows page tables (measured on the
 * machine this was written on, where it made a 256 MiB mapped scan 30x
 * slower than with PMDs). */
#define HUGE_ALIGN ((size_t)2 << 20)

/* mmap `len` bytes of fd at `off`, at a HUGE_ALIGN-congruent address when
 * the mapping is that large: reserve len + HUGE_ALIGN of address space,
 * map the file over the right spot with MAP_FIXED, give the rest back. */
static int map_aligned(void **out, size_t len, int prot, int flags, int fd,
                       uint64_t off) {
  if (len < HUGE_ALIGN || len > SIZE_MAX - HUGE_ALIGN)
    return mm__sys_mmap(out, NULL, len, prot, flags, fd, off);
  void *res;
  int rc = mm__sys_mmap(&res, NULL, len + HUGE_ALIGN, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (rc < 0) return mm__sys_mmap(out, NULL, len, prot, flags, fd, off);
  uintptr_t lo = (uintptr_t)res, want = (uintptr_t)(off % HUGE_ALIGN);
  uintptr_t at = (lo - want + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN + want;
  if (at < lo) at += HUGE_ALIGN;
  void *p;
  rc = mm__sys_mmap(&p, (void *)at, len, prot, flags | MAP_FIXED, fd, off);
  if (rc < 0) {
    (void)mm__sys_munmap(res, len + HUGE_ALIGN);
    return rc;
  }
  /* Trim the reservation around the mapping. These cannot fail for lack of
   * memory (they shrink, never split, the reservation); if one did, the
   * PROT_NONE remainder would only waste address space. */
  if (at > lo) (void)mm__sys_munmap(res, at - lo);
  uintptr_t end = at + len, rend = lo + len + HUGE_ALIGN;
  if (rend > end) (void)mm__sys_munmap((void *)end, rend - end);
  *out = p;
  return 0;
}

static int map_range(mm_view_t *v, int fd, uint64_t off, uint64_t len,
                     int access, unsigned flags) {
  size_t page = mm__page_size();
  uint64_t aoff = mm__align_down(off, page);
  size_t delta = (size_t)(off - aoff);
  if (len > UINT64_MAX - delta) return -EFBIG; /* a device's length is the caller's */
  uint64_t mlen = mm__align_up(len + delta, page);
  if (mlen == 0 || mlen > SIZE_MAX) return -EFBIG;
  int prot = PROT_READ, mflags = MAP_PRIVATE;
  if (v->mode == MM_VIEW_WRITE) {
    prot |= PROT_WRITE;
    mflags = MAP_SHARED;
  } else if (v->mode == MM_VIEW_PRIVATE) {
    prot |= PROT_WRITE;
  }
  int populate = (flags & MM_VIEW_POPULATE) || access == MM_ACCESS_SEQUENTIAL;
  /* MAP_POPULATE write-faults a writable private mapping, which would copy
   * every page; a PRIVATE view is populated for reading after mapping. */
  if (populate && v->mode != MM_VIEW_PRIVATE) mflags |= MAP_POPULATE;
  void *p;
  int rc = map_aligned(&p, (size_t)mlen, prot, mflags, fd, aoff);
  if (rc < 0) return mm__mmap_error(rc);
  /* Advice is a hint: a kernel that refuses it changes nothing we promise. */
  if (access == MM_ACCESS_SEQUENTIAL)
    (void)mm__sys_madvise(p, (size_t)mlen, MADV_SEQUENTIAL);
  else if (access == MM_ACCESS_RANDOM)
    (void)mm__sys_madvise(p, (size_t)mlen, MADV_RANDOM);
  if (populate && v->mode == MM_VIEW_PRIVATE)
    (void)mm__sys_madvise(p, (size_t)mlen, MADV_POPULATE_READ);
  v->backend = MM_BACKEND_MMAP;
  v->map = p;
  v->map_len = (size_t)mlen;
  v->delta = delta;
  v->data = (unsigned char *)p + delta;
  v->size = len;
  return 0;
}

static void set_empty(mm_view_t *v, int backend) {
  v->backend = backend;
  v->map = NULL;
  v->map_len = 0;
  v->delta = 0;
  v->data = &empty_view_byte;
  v->size = 0;
}

/* ---------------------------------------------------------------------- */
/* Opening                                                                 */

static int check_opts(const mm_view_opts_t *o) {
  if (o->mode < MM_VIEW_READ || o->mode > MM_VIEW_PRIVATE) return -EINVAL;
  if (o->backend < MM_BACKEND_AUTO || o->backend > MM_BACKEND_READ)
    return -EINVAL;
  if (o->access < MM_ACCESS_DEFAULT || o->access > MM_ACCESS_RANDOM)
    return -EINVAL;
  unsigned known = MM_VIEW_CREATE | MM_VIEW_EXCL | MM_VIEW_POPULATE |
                   MM_VIEW_SYNC_ON_CLOSE;
  if (o->flags & ~known) return -EINVAL;
  if ((o->flags & (MM_VIEW_CREATE | MM_VIEW_EXCL)) && o->mode != MM_VIEW_WRITE)
    return -EINVAL;
  if ((o->flags & MM_VIEW_EXCL) && !(o->flags & MM_VIEW_CREATE)) return -EINVAL;
  if (o->mode == MM_VIEW_WRITE && o->backend == MM_BACKEND_READ) return -EINVAL;
  if (o->offset > (uint64_t)INT64_MAX) return MM_ERANGE;
  /* No range may end past what a file offset can name. */
  if (o->length > (uint64_t)INT64_MAX - o->offset) return MM_ERANGE;
  return 0;
}

/* Fill a view from fd (not closed here). */
static int view_fill(mm_view_t *v, int fd, const mm_view_opts_t *o) {
  struct stat st;
  int rc = mm__sys_fstat(fd, &st);
  if (rc < 0) return rc;
  uint64_t threshold = o->threshold                       ? o->threshold
                       : o->access == MM_ACCESS_RANDOM ? MM_VIEW_RANDOM_THRESHOLD_DEFAULT
                                                       : MM_VIEW_THRESHOLD_DEFAULT;
  uint64_t limit = o->stream_limit ? o->stream_limit : MM_VIEW_STREAM_LIMIT_DEFAULT;
  int want = o->backend;

  if (S_ISDIR(st.st_mode)) return -EISDIR;

  if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
    uint64_t fsize = (uint64_t)st.st_size;
    if (S_ISBLK(st.st_mode)) {
      /* Not lseek: that would move the caller's file offset. */
      if (ioctl(fd, BLKGETSIZE64, &fsize) < 0) return -errno;
    }
    if (fsize == 0 && S_ISREG(st.st_mode) && v->mode != MM_VIEW_WRITE) {
      /* Empty, or a procfs-like file whose size reads as 0 but which has
       * contents. One byte at offset 0 tells them apart without consuming
       * anything from the descriptor's position. */
      unsigned char b;
      ssize_t n = mm__sys_pread(fd, &b, 1, 0);
      if (n > 0 || (n < 0 && n != -ESPIPE)) {
        if (n < 0 && want != MM_BACKEND_MMAP) return (int)n;
        if (want == MM_BACKEND_MMAP) return MM_ENOTMAPPABLE;
        v->backend = MM_BACKEND_READ;
        return read_stream(v, fd, o->offset, o->length, limit);
      }
    }
    if (o->offset > fsize) return MM_ERANGE;
    uint64_t len = o->length ? o->length : fsize - o->offset;
    if (len > fsize - o->offset) return MM_ERANGE;
    if (len == 0) {
      set_empty(v, want == MM_BACKEND_READ ? MM_BACKEND_READ : MM_BACKEND_MMAP);
      return 0;
    }
    int map = want == MM_BACKEND_MMAP ||
              (want == MM_BACKEND_AUTO &&
               (v->mode == MM_VIEW_WRITE || len >= threshold));
    if (map) {
      rc = map_range(v, fd, o->offset, len, o->access, o->flags);
      if (rc == 0) return 0;
      if (!unmappable_error(rc)) return rc;
      if (want == MM_BACKEND_MMAP || v->mode == MM_VIEW_WRITE)
        return MM_ENOTMAPPABLE;
    }
    v->backend = MM_BACKEND_READ;
    return read_file_range(v, fd, o->offset, len, o->length != 0);
  }

  if (S_ISCHR(st.st_mode) && o->length && want != MM_BACKEND_READ) {
    /* Devices such as /dev/zero map with an explicit length; most others
     * (ttys, /dev/urandom) refuse, and are then read. */
    rc = map_range(v, fd, o->offset, o->length, o->access, o->flags);
    if (rc == 0) return 0;
    if (!unmappable_error(rc)) return rc;
    if (want == MM_BACKEND_MMAP || v->mode == MM_VIEW_WRITE)
      return MM_ENOTMAPPABLE;
  } else if (want == MM_BACKEND_MMAP || v->mode == MM_VIEW_WRITE) {
    /* A pipe, FIFO, socket, or a device without a length. */
    return S_ISCHR(st.st_mode) && want == MM_BACKEND_MMAP && !o->length
               ? -EINVAL
               : MM_ENOTMAPPABLE;
  }
  v->backend = MM_BACKEND_READ;
  return read_stream(v, fd, o->offset, o->length, limit);
}

static int view_new(mm_view_t **out, const mm_view_opts_t *opts,
                    mm_view_opts_t *o) {
  *out = NULL;
  if (opts)
    *o = *opts;
  else
    memset(o, 0, sizeof *o);
  int rc = check_opts(o);
  if (rc < 0) return rc;
  mm_view_t *v = calloc(1, sizeof *v);
  if (!v) return -ENOMEM;
  v->mode = o->mode;
  v->flags = o->flags;
  v->offset = o->offset;
  v->fd = -1;
  *out = v;
  return 0;
}

int mm_view_open_fd(mm_view_t **out, int fd, const mm_view_opts_t *opts) {
  mm_view_opts_t o;
  mm_view_t *v;
  if (!out) return -EINVAL;
  int rc = view_new(&v, opts, &o);
  if (rc < 0) return *out = NULL, rc;
  if (o.flags & MM_VIEW_CREATE) rc = -EINVAL; /* no name to create */
  if (rc == 0) rc = view_fill(v, fd, &o);
  if (rc == 0 && v->mode == MM_VIEW_WRITE) {
    rc = mm__sys_fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (rc >= 0) v->fd = rc, rc = 0;
  }
  if (rc < 0) {
    (void)mm_view_close(v);
    v = NULL;
  }
  *out = v;
  return rc;
}

int mm_view_open(mm_view_t **out, const char *path, const mm_view_opts_t *opts) {
  mm_view_opts_t o;
  mm_view_t *v;
  if (!out) return -EINVAL;
  *out = NULL;
  if (!path) return -EINVAL;
  int rc = view_new(&v, opts, &o);
  if (rc < 0) return rc;
  int oflags = (o.mode == MM_VIEW_WRITE ? O_RDWR : O_RDONLY) | O_NOCTTY;
  if (o.flags & MM_VIEW_CREATE) oflags |= O_CREAT | O_NOFOLLOW;
  if (o.flags & MM_VIEW_EXCL) oflags |= O_EXCL;
  int fd = mm__sys_open(path, oflags, o.perm ? o.perm : 0600);
  if (fd < 0) {
    free(v);
    return fd;
  }
  rc = view_fill(v, fd, &o);
  if (rc == 0 && v->mode == MM_VIEW_WRITE) {
    v->fd = fd; /* kept for resize */
  } else {
    /* READ and PRIVATE views keep no descriptor. A close error on a
     * descriptor only read from cannot lose data. */
    (void)mm__sys_close(fd);
  }
  if (rc < 0) {
    (void)mm_view_close(v);
    return rc;
  }
  *out = v;
  return 0;
}

int mm_view_close(mm_view_t *v) {
  if (!v) return 0;
  int rc = 0;
  if (v->backend == MM_BACKEND_MMAP && v->map) {
    if ((v->flags & MM_VIEW_SYNC_ON_CLOSE) && v->mode == MM_VIEW_WRITE)
      rc = mm__sys_msync(v->map, v->map_len, MS_SYNC);
    int r = mm__sys_munmap(v->map, v->map_len);
    if (rc == 0) rc = r;
  } else if (v->map) {
    free(v->map);
  }
  if (v->fd >= 0) {
    int r = mm__sys_close(v->fd);
    if (rc == 0) rc = r;
  }
  free(v);
  return rc;
}

void *mm_view_data(const mm_view_t *v) { return v->data; }
uint64_t mm_view_size(const mm_view_t *v) { return v->size; }
int mm_view_backend(const mm_view_t *v) { return v->backend; }

uint64_t mm_view_slack(const mm_view_t *v) {
  if (v->backend != MM_BACKEND_MMAP || !v->map) return 0;
  return v->map_len - v->size;
}

/* ---------------------------------------------------------------------- */
/* Ranges: advise, populate, lock, sync                                    */

/* Check [off, off+*len) against the view (len 0 = to the end) and give the
 * page-aligned span of the mapping that covers it. *alen is 0 when the
 * range is empty. */
static int view_span(const mm_view_t *v, uint64_t off, uint64_t *len,
                     unsigned char **addr, size_t *alen) {
  if (off > v->size) return MM_ERANGE;
  if (*len == 0) *len = v->size - off;
  if (*len > v->size - off) return MM_ERANGE;
  *addr = NULL;
  *alen = 0;
  if (*len == 0 || !v->map) return 0;
  size_t page = mm__page_size();
  uint64_t lo = mm__align_down(v->delta + off, page);
  uint64_t hi = mm__align_up(v->delta + off + *len, page);
  if (v->backend == MM_BACKEND_READ) { /* the buffer itself, unaligned */
    lo = off;
    hi = off + *len;
  }
  *addr = (unsigned char *)v->map + lo;
  *alen = (size_t)(hi - lo);
  return 0;
}

int mm_view_advise(mm_view_t *v, uint64_t off, uint64_t len, int advice) {
  static const int advices[] = {MADV_NORMAL,   MADV_SEQUENTIAL, MADV_RANDOM,
                                MADV_WILLNEED, MADV_DONTNEED,   MADV_HUGEPAGE};
  if (advice < 0 || advice > MM_ADVISE_HUGEPAGE) return -EINVAL;
  unsigned char *a;
  size_t alen;
  int rc = view_span(v, off, &len, &a, &alen);
  if (rc < 0 || alen == 0 || v->backend != MM_BACKEND_MMAP) return rc;
  return mm__sys_madvise(a, alen, advices[advice]);
}

int mm_view_populate(mm_view_t *v, uint64_t off, uint64_t len) {
  unsigned char *a;
  size_t alen;
  int rc = view_span(v, off, &len, &a, &alen);
  if (rc < 0 || alen == 0 || v->backend != MM_BACKEND_MMAP) return rc;
  int adv = v->mode == MM_VIEW_WRITE ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;
  rc = mm__sys_madvise(a, alen, adv);
  if (rc == -EFAULT) return MM_ETRUNCATED; /* pages past the end of file */
  if (rc != -EINVAL) return rc;
  /* A kernel before 5.14: read one byte of each page, under the guard.
   * Pages are counted from the mapping's start, which is delta bytes
   * before the view's. */
  size_t page = mm__page_size();
  for (uint64_t at = off; at < off + len;
       at = mm__align_down(v->delta + at, page) + page - v->delta) {
    unsigned char b;
    if ((rc = mm_view_read(v, at, &b, 1)) < 0) return rc;
  }
  return 0;
}

int mm_view_lock(mm_view_t *v, uint64_t off, uint64_t len) {
  unsigned char *a;
  size_t alen;
  int rc = view_span(v, off, &len, &a, &alen);
  if (rc < 0 || alen == 0) return rc;
  return mm__sys_mlock(a, alen);
}

int mm_view_unlock(mm_view_t *v, uint64_t off, uint64_t len) {
  unsigned char *a;
  size_t alen;
  int rc = view_span(v, off, &len, &a, &alen);
  if (rc < 0 || alen == 0) return rc;
  return mm__sys_munlock(a, alen);
}

int mm_view_sync(mm_view_t *v, uint64_t off, uint64_t len, int flags) {
  if (flags != MM_SYNC_WAIT && flags != MM_SYNC_ASYNC) return -EINVAL;
  unsigned char *a;
  size_t alen;
  int rc = view_span(v, off, &len, &a, &alen);
  if (rc < 0 || alen == 0) return rc;
  if (v->mode != MM_VIEW_WRITE || v->backend != MM_BACKEND_MMAP) return 0;
  return mm__sys_msync(a, alen, flags == MM_SYNC_ASYNC ? MS_ASYNC : MS_SYNC);
}

/* ---------------------------------------------------------------------- */
/* Resize                                                                  */

int mm_view_resize(mm_view_t *v, uint64_t new_size, unsigned flags) {
  if (v->mode != MM_VIEW_WRITE || v->fd < 0) return -EINVAL;
  if (flags & ~(unsigned)MM_RESIZE_MAYMOVE) return -EINVAL;
  struct stat st;
  int rc = mm__sys_fstat(v->fd, &st);
  if (rc < 0) return rc;
  if (!S_ISREG(st.st_mode)) return -EINVAL;
  uint64_t old_end = v->offset + v->size;
  if ((uint64_t)st.st_size != old_end) return -EINVAL;
  if (new_size > (uint64_t)INT64_MAX - v->offset) return -EFBIG;
  if (new_size == v->size) return 0;
  uint64_t new_end = v->offset + new_size;
  size_t page = mm__page_size();
  uint64_t aoff = mm__align_down(v->offset, page);
  size_t delta = (size_t)(v->offset - aoff);
  uint64_t new_mlen = new_size ? mm__align_up(delta + new_size, page) : 0;
  if (new_size && (new_mlen == 0 || new_mlen > SIZE_MAX)) return -EFBIG;

  if (new_size > v->size) {
    /* Allocate the blocks first so a full disk is an error now, not a
     * SIGBUS on some later store. Filesystems without fallocate get a
     * sparse extension (ftruncate) and no such promise. */
    rc = mm__sys_fallocate(v->fd, 0, old_end, new_end - old_end);
    if (rc == -EOPNOTSUPP) rc = mm__sys_ftruncate(v->fd, new_end);
    if (rc < 0) {
      /* ext4 may have grown the file by the part it could allocate. */
      (void)mm__sys_ftruncate(v->fd, old_end);
      return rc;
    }
    void *p;
    if (v->map) {
      int mflags = (flags & MM_RESIZE_MAYMOVE) ? MREMAP_MAYMOVE : 0;
      rc = mm__sys_mremap(&p, v->map, v->map_len, (size_t)new_mlen, mflags,
                          NULL);
    } else {
      /* An empty view had no address to keep. */
      rc = mm__sys_mmap(&p, NULL, (size_t)new_mlen, PROT_READ | PROT_WRITE,
                        MAP_SHARED, v->fd, aoff);
      if (rc < 0) rc = mm__mmap_error(rc);
    }
    if (rc < 0) {
      (void)mm__sys_ftruncate(v->fd, old_end);
      return rc;
    }
    v->map = p;
    v->map_len = (size_t)new_mlen;
  } else {
    /* Swap the tail's file pages for a PROT_NONE placeholder at the same
     * address (MAP_FIXED replaces atomically), so that no page of ours is
     * past the end of file, then cut the file. If the cut fails, the file's
     * pages go back exactly where they were: nothing moved. */
    size_t keep = (size_t)new_mlen, tail = v->map_len - keep;
    unsigned char *m = v->map;
    void *p;
    if (tail) {
      rc = mm__sys_mmap(&p, m + keep, tail, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
      if (rc < 0) return rc;
    }
    rc = mm__sys_ftruncate(v->fd, new_end);
    if (rc < 0) {
      if (tail && mm__sys_mmap(&p, m + keep, tail, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_FIXED, v->fd, aoff + keep) < 0) {
        /* Two failures in a row: keep the smaller view, which is still a
         * correct view of the file's first bytes. */
        (void)mm__sys_munmap(m + keep, tail);
        if (keep == 0) {
          set_empty(v, MM_BACKEND_MMAP);
        } else {
          v->map_len = keep;
          v->size = new_size;
        }
      }
      return rc;
    }
    if (tail) (void)mm__sys_munmap(m + keep, tail); /* only addresses */
    if (new_size == 0) {
      set_empty(v, MM_BACKEND_MMAP);
      return 0;
    }
    v->map_len = keep;
  }
  v->delta = delta;
  v->data = (unsigned char *)v->map + delta;
  v->size = new_size;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* The SIGBUS guard                                                        */

struct guard {
  sigjmp_buf jb;
  uintptr_t lo, hi; /* guarded addresses [lo, hi) */
  struct guard *prev;
};

/* initial-exec: the handler must not call __tls_get_addr, which may
 * allocate and is not async-signal-safe. */
static __thread struct guard *guard_top
    __attribute__((tls_model("initial-exec")));
static struct sigaction guard_prev; /* the handler before ours */
static _Atomic int guard_installed;
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;

static void guard_handler(int sig, siginfo_t *si, void *uc) {
  /* si_code > 0: raised by the kernel for a fault, so si_addr is real. */
  if (si && si->si_code > 0) {
    uintptr_t a = (uintptr_t)si->si_addr;
    for (struct guard *g = guard_top; g; g = g->prev) {
      if (a >= g->lo && a < g->hi) {
        guard_top = g->prev;
        siglongjmp(g->jb, 1);
      }
    }
  }
  /* Not ours: do what would have happened without us. */
  if (guard_prev.sa_flags & SA_SIGINFO) {
    guard_prev.sa_sigaction(sig, si, uc);
  } else if (guard_prev.sa_handler == SIG_IGN) {
    if (si && si->si_code > 0) goto die; /* a fault cannot be ignored */
  } else if (guard_prev.sa_handler == SIG_DFL) {
  die:;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    (void)sigaction(sig, &dfl, NULL);
    /* Returning re-executes a faulting access, which now kills us; a sent
     * signal has no access to re-execute, so send it again. */
    if (!si || si->si_code <= 0) (void)raise(sig);
  } else {
    guard_prev.sa_handler(sig);
  }
}

static int guard_install(void) {
  if (MM__LIKELY(atomic_load_explicit(&guard_installed, memory_order_acquire)))
    return 0;
  pthread_mutex_lock(&guard_lock);
  int rc = 0;
  if (!atomic_load(&guard_installed)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = guard_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    /* Read the old action first: once ours is installed, a SIGBUS in
     * another thread may already need guard_prev. (A handler installed by
     * another thread between the two calls would be replaced unseen;
     * install yours before using the guard, as view.h says.) */
    rc = mm__sys_sigaction(SIGBUS, NULL, &guard_prev);
    if (rc == 0) rc = mm__sys_sigaction(SIGBUS, &sa, NULL);
    if (rc == 0) atomic_store_explicit(&guard_installed, 1, memory_order_release);
  }
  pthread_mutex_unlock(&guard_lock);
  return rc;
}

/* Push/pop must be ordered against the guarded accesses: a signal fence
 * keeps the compiler from moving memory accesses across them. */
#define GUARD_PUSH(g, v)                                  \
  do {                                                    \
    (g)->lo = (uintptr_t)(v)->map;                        \
    (g)->hi = (uintptr_t)(v)->map + (v)->map_len;         \
    (g)->prev = guard_top;                                \
    guard_top = (g);                                      \
    atomic_signal_fence(memory_order_seq_cst);            \
  } while (0)

#define GUARD_POP(g)                                      \
  do {                                                    \
    atomic_signal_fence(memory_order_seq_cst);            \
    guard_top = (g)->prev;                                \
  } while (0)

static int check_io(const mm_view_t *v, uint64_t off, size_t n) {
  if (off > v->size || n > v->size - off) return MM_ERANGE;
  return 0;
}

int mm_view_read(const mm_view_t *v, uint64_t off, void *dst, size_t n) {
  int rc = check_io(v, off, n);
  if (rc < 0 || n == 0) return rc;
  if (v->backend != MM_BACKEND_MMAP) {
    memcpy(dst, v->data + off, n);
    return 0;
  }
  if ((rc = guard_install()) < 0) return rc;
  struct guard g;
  GUARD_PUSH(&g, v);
  if (sigsetjmp(g.jb, 0)) return MM_ETRUNCATED; /* the handler popped g */
  memcpy(dst, v->data + off, n);
  GUARD_POP(&g);
  return 0;
}

int mm_view_write(mm_view_t *v, uint64_t off, const void *src, size_t n) {
  if (v->mode == MM_VIEW_READ) return -EBADF;
  int rc = check_io(v, off, n);
  if (rc < 0 || n == 0) return rc;
  if (v->backend != MM_BACKEND_MMAP) {
    memcpy(v->data + off, src, n);
    return 0;
  }
  if ((rc = guard_install()) < 0) return rc;
  struct guard g;
  GUARD_PUSH(&g, v);
  if (sigsetjmp(g.jb, 0)) return MM_ETRUNCATED;
  memcpy(v->data + off, src, n);
  GUARD_POP(&g);
  return 0;
}

int mm_view_guard(const mm_view_t *v, mm_view_fn fn, void *arg) {
  if (!fn) return -EINVAL;
  if (v->backend != MM_BACKEND_MMAP || !v->map)
    return fn(arg, v->data, v->size);
  int rc = guard_install();
  if (rc < 0) return rc;
  struct guard g;
  GUARD_PUSH(&g, v);
  if (sigsetjmp(g.jb, 0)) return MM_ETRUNCATED;
  rc = fn(arg, v->data, v->size);
  GUARD_POP(&g);
  return rc;
}
