/*
 * cache.c - page-cache residency, touch, evict and lock; a tree walker.
 *
 * Residency comes from cachestat(2) when the kernel has it: one system call
 * per file whatever its size, and it also counts dirty, writeback and
 * evicted pages. Otherwise from mincore(2) over a read-only mapping of the
 * range, made and dropped in windows of at most 256 MiB so a 32-bit process
 * can query files of any size and a 64-bit one does not pin gigabytes of
 * address space. Mapping a file does not read it: mincore only looks.
 */
#include "internal.h"

#include <dirent.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memmap/cache.h"

#define WINDOW ((uint64_t)256 << 20)

const char *mm_cache_method_name(int method) {
  switch (method) {
  case MM_CACHE_AUTO: return "auto";
  case MM_CACHE_CACHESTAT: return "cachestat";
  case MM_CACHE_MINCORE: return "mincore";
  default: return "?";
  }
}

/* 0 unknown, 1 present, 2 absent. Probing is idempotent, so a race only
 * probes twice. */
static _Atomic int cachestat_state;

int mm_cache_have_cachestat(void) {
  int s = atomic_load_explicit(&cachestat_state, memory_order_relaxed);
  if (s == 0) {
    /* A bad descriptor tells ENOSYS (no such call) from EBADF (it exists). */
    struct mm__cachestat cs;
    int rc = mm__sys_cachestat(-1, 0, 0, &cs);
    s = rc == -ENOSYS ? 2 : 1;
    atomic_store_explicit(&cachestat_state, s, memory_order_relaxed);
  }
  return s == 1;
}

/* The file's size in bytes, for regular files and block devices. */
static int file_size(int fd, uint64_t *size, uid_t *owner) {
  struct stat st;
  int rc = mm__sys_fstat(fd, &st);
  if (rc < 0) return rc;
  if (S_ISREG(st.st_mode)) {
    *size = (uint64_t)st.st_size;
  } else if (S_ISBLK(st.st_mode)) {
    /* Not lseek: that would move the caller's file offset. */
    if (ioctl(fd, BLKGETSIZE64, size) < 0) return -errno;
  } else {
    return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
  }
  if (owner) *owner = st.st_uid;
  return 0;
}

/* Clip [off, off+len) (len 0: to the end) to the file; page-aligned
 * bounds of what exists. */
static void clip(uint64_t size, uint64_t off, uint64_t len, uint64_t *lo,
                 uint64_t *hi) {
  size_t page = mm__page_size();
  if (off >= size) {
    *lo = *hi = 0;
    return;
  }
  uint64_t end = len == 0 || len > size - off ? size : off + len;
  *lo = mm__align_down(off, page);
  *hi = mm__align_up(end, page);
}

/* Would the kernel tell this caller about this file's pages through
 * mincore? It does for the owner, for root (CAP_FOWNER) and for anyone
 * allowed to write the file. */
static int mincore_allowed(int fd, uid_t owner) {
  if (geteuid() == 0 || geteuid() == owner) return 1;
  char p[64];
  snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
  return faccessat(AT_FDCWD, p, W_OK, AT_EACCESS) == 0;
}

/* Count resident pages of [lo, hi) (page aligned) with mincore. If vec is
 * given, also store per-page bits for the first n pages. */
static int mincore_range(int fd, uint64_t lo, uint64_t hi, uint64_t *resident,
                         unsigned char *vec, size_t n) {
  size_t page = mm__page_size();
  size_t wpages = (size_t)(WINDOW / page);
  unsigned char *bits = malloc(wpages);
  if (!bits) return -ENOMEM;
  uint64_t count = 0, done = 0;
  int rc = 0;
  for (uint64_t at = lo; at < hi && rc == 0; at += WINDOW) {
    size_t len = (size_t)(hi - at < WINDOW ? hi - at : WINDOW);
    void *m;
    rc = mm__sys_mmap(&m, NULL, len, PROT_READ, MAP_SHARED, fd, at);
    if (rc < 0) {
      rc = mm__mmap_error(rc);
      break;
    }
    rc = mm__sys_mincore(m, len, bits);
    (void)mm__sys_munmap(m, len);
    if (rc < 0) break;
    size_t np = len / page;
    for (size_t i = 0; i < np; i++) {
      count += bits[i] & 1;
      if (vec && done + i < n) vec[done + i] = bits[i] & 1;
    }
    done += np;
  }
  free(bits);
  *resident = count;
  return rc;
}

int mm_cache_stat_fd(int fd, uint64_t off, uint64_t len, int method,
                     mm_cache_stat_t *out) {
  if (!out || method < MM_CACHE_AUTO || method > MM_CACHE_MINCORE) return -EINVAL;
  memset(out, 0, sizeof *out);
  uint64_t size, lo, hi;
  uid_t owner = 0;
  int rc = file_size(fd, &size, &owner);
  if (rc < 0) return rc;
  size_t page = mm__page_size();
  clip(size, off, len, &lo, &hi);
  out->page_size = page;
  out->pages = (hi - lo) / page;
  out->dirty = out->writeback = out->evicted = out->recently_evicted = -1;
  if (method == MM_CACHE_AUTO)
    method = mm_cache_have_cachestat() ? MM_CACHE_CACHESTAT : MM_CACHE_MINCORE;
  out->method = method;
  if (method == MM_CACHE_CACHESTAT) {
    struct mm__cachestat cs;
    memset(&cs, 0, sizeof cs);
    /* An empty range would mean "to the end" to cachestat: skip it. */
    if (hi > lo && (rc = mm__sys_cachestat(fd, lo, hi - lo, &cs)) < 0) return rc;
    out->resident = cs.nr_cache;
    out->dirty = (int64_t)cs.nr_dirty;
    out->writeback = (int64_t)cs.nr_writeback;
    out->evicted = (int64_t)cs.nr_evicted;
    out->recently_evicted = (int64_t)cs.nr_recently_evicted;
    return 0;
  }
  if (!mincore_allowed(fd, owner)) return -EPERM;
  return hi > lo ? mincore_range(fd, lo, hi, &out->resident, NULL, 0) : 0;
}

int mm_cache_stat(const char *path, uint64_t off, uint64_t len, int method,
                  mm_cache_stat_t *out) {
  if (!path) return -EINVAL;
  int fd = mm__sys_open(path, O_RDONLY | O_NOCTTY, 0);
  if (fd < 0) return fd;
  int rc = mm_cache_stat_fd(fd, off, len, method, out);
  (void)mm__sys_close(fd);
  return rc;
}

int mm_cache_pages(int fd, uint64_t off, uint64_t len, unsigned char *vec,
                   size_t n, uint64_t *npages) {
  uint64_t size, lo, hi;
  uid_t owner = 0;
  if (!npages || (n && !vec)) return -EINVAL;
  int rc = file_size(fd, &size, &owner);
  if (rc < 0) return rc;
  clip(size, off, len, &lo, &hi);
  *npages = (hi - lo) / mm__page_size();
  if (!mincore_allowed(fd, owner)) return -EPERM;
  uint64_t resident;
  return hi > lo ? mincore_range(fd, lo, hi, &resident, vec, n) : 0;
}

int mm_cache_touch(int fd, uint64_t off, uint64_t len) {
  uint64_t size, lo, hi;
  int rc = file_size(fd, &size, NULL);
  if (rc < 0) return rc;
  clip(size, off, len, &lo, &hi);
  for (uint64_t at = lo; at < hi; at += WINDOW) {
    size_t wlen = (size_t)(hi - at < WINDOW ? hi - at : WINDOW);
    void *m;
    rc = mm__sys_mmap(&m, NULL, wlen, PROT_READ, MAP_SHARED, fd, at);
    if (rc < 0) return mm__mmap_error(rc);
    /* Read exactly the range, in large requests (WILLNEED), then fault it
     * in without the mapping's read-around, which would load up to
     * read_ahead_kb around every fault (MADV_RANDOM). Both are hints. */
    (void)mm__sys_madvise(m, wlen, MADV_WILLNEED);
    (void)mm__sys_madvise(m, wlen, MADV_RANDOM);
    rc = mm__sys_madvise(m, wlen, MADV_POPULATE_READ);
    if (rc == -EINVAL) {
      /* A kernel before 5.14: read the window instead, which loads it. */
      rc = 0;
      char buf[65536];
      /* The window is whole pages; the file may end inside the last. */
      uint64_t want = size - at < wlen ? size - at : wlen;
      for (uint64_t r = 0; r < want && rc == 0;) {
        ssize_t got = mm__sys_pread(fd, buf, sizeof buf, at + r);
        if (got < 0) rc = (int)got;
        else if (got == 0) rc = MM_ETRUNCATED;
        r += (uint64_t)(got > 0 ? got : 0);
      }
    } else if (rc == -EFAULT) {
      rc = MM_ETRUNCATED; /* pages past a new end of file */
    }
    (void)mm__sys_munmap(m, wlen);
    if (rc < 0) return rc;
  }
  return 0;
}

int mm_cache_evict(int fd, uint64_t off, uint64_t len, int method,
                   mm_cache_stat_t *left) {
  uint64_t size;
  int rc = file_size(fd, &size, NULL);
  if (rc < 0) return rc;
  if (off < size) {
    rc = mm__sys_fadvise(fd, off, len, POSIX_FADV_DONTNEED);
    if (rc < 0) return rc;
  }
  return left ? mm_cache_stat_fd(fd, off, len, method, left) : 0;
}

struct mm_cache_lock {
  void *addr;
  size_t len;
};

int mm_cache_lock(int fd, uint64_t off, uint64_t len, mm_cache_lock_t **out) {
  if (!out) return -EINVAL;
  *out = NULL;
  uint64_t size, lo, hi;
  int rc = file_size(fd, &size, NULL);
  if (rc < 0) return rc;
  clip(size, off, len, &lo, &hi);
  if (hi <= lo) return -EINVAL;
  if (hi - lo > SIZE_MAX) return -EFBIG;
  mm_cache_lock_t *l = calloc(1, sizeof *l);
  if (!l) return -ENOMEM;
  l->len = (size_t)(hi - lo);
  rc = mm__sys_mmap(&l->addr, NULL, l->len, PROT_READ, MAP_SHARED, fd, lo);
  if (rc < 0) {
    free(l);
    return mm__mmap_error(rc);
  }
  rc = mm__sys_mlock(l->addr, l->len);
  if (rc < 0) {
    (void)mm__sys_munmap(l->addr, l->len);
    free(l);
    return rc;
  }
  *out = l;
  return 0;
}

int mm_cache_unlock(mm_cache_lock_t *l) {
  if (!l) return 0;
  int rc = mm__sys_munlock(l->addr, l->len);
  int r2 = mm__sys_munmap(l->addr, l->len);
  free(l);
  return rc ? rc : r2;
}

uint64_t mm_cache_locked_bytes(const mm_cache_lock_t *l) { return l ? l->len : 0; }

/* ---------------------------------------------------------------------- */
/* Walking                                                                 */

struct walk {
  unsigned flags;
  dev_t dev; /* of the start path, for MM_CACHE_XDEV */
  mm_cache_walk_fn fn;
  void *arg;
  char path[PATH_MAX];
  /* Directories on the current path, to catch loops through links. */
  struct {
    dev_t dev;
    ino_t ino;
  } stack[256];
  int depth;
};

static int walk_dir(struct walk *w, size_t plen, const struct stat *st, int fd);

/* Visit w->path (length plen), whose parent directory is open as dirfd
 * and whose name there is `name` (dirfd -1: the start path). */
static int walk_one(struct walk *w, size_t plen, int dirfd, const char *name) {
  struct stat st;
  int follow = (w->flags & MM_CACHE_FOLLOW) || dirfd < 0;
  int r = dirfd < 0 ? (follow ? stat(w->path, &st) : lstat(w->path, &st))
                    : fstatat(dirfd, name, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW);
  if (r < 0) return w->fn(w->arg, w->path, -errno, 0, w->depth);
  if (S_ISLNK(st.st_mode)) return 0; /* not followed: skipped */
  if (dirfd >= 0 && (w->flags & MM_CACHE_XDEV) && st.st_dev != w->dev) return 0;
  if (S_ISDIR(st.st_mode)) {
    for (int i = 0; i < w->depth; i++)
      if (w->stack[i].dev == st.st_dev && w->stack[i].ino == st.st_ino)
        return w->fn(w->arg, w->path, -ELOOP, 1, w->depth);
    /* Open what was checked, relative to its parent and without following
     * a link that replaced it meanwhile; make sure it is the same one. */
    int oflags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW);
    int fd = dirfd < 0 ? open(w->path, oflags) : openat(dirfd, name, oflags);
    struct stat again;
    if (fd < 0) return w->fn(w->arg, w->path, -errno, 1, w->depth);
    if (fstat(fd, &again) < 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
      close(fd);
      return w->fn(w->arg, w->path, -EAGAIN, 1, w->depth); /* changed under us */
    }
    int rc = w->fn(w->arg, w->path, 0, 1, w->depth);
    if (rc) {
      close(fd);
      return rc;
    }
    return walk_dir(w, plen, &st, fd);
  }
  if (S_ISREG(st.st_mode)) return w->fn(w->arg, w->path, 0, 0, w->depth);
  return 0; /* devices, FIFOs, sockets: no page cache to speak of */
}

/* Walk the directory open as fd (taken over). */
static int walk_dir(struct walk *w, size_t plen, const struct stat *st, int fd) {
  if (w->depth >= (int)(sizeof w->stack / sizeof w->stack[0])) {
    close(fd);
    return w->fn(w->arg, w->path, -ELOOP, 1, w->depth);
  }
  DIR *d = fdopendir(fd);
  if (!d) {
    int e = -errno;
    close(fd);
    return w->fn(w->arg, w->path, e, 1, w->depth);
  }
  w->stack[w->depth].dev = st->st_dev;
  w->stack[w->depth].ino = st->st_ino;
  w->depth++;
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (errno = 0, e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    size_t nlen = strlen(e->d_name);
    int sep = plen > 0 && w->path[plen - 1] != '/';
    if (plen + (size_t)sep + nlen >= sizeof w->path) {
      rc = w->fn(w->arg, w->path, -ENAMETOOLONG, 0, w->depth);
      continue;
    }
    if (sep) w->path[plen] = '/';
    memcpy(w->path + plen + (size_t)sep, e->d_name, nlen + 1);
    rc = walk_one(w, plen + (size_t)sep + nlen, dirfd(d), e->d_name);
    w->path[plen] = 0;
  }
  if (rc == 0 && errno) rc = w->fn(w->arg, w->path, -errno, 1, w->depth);
  w->depth--;
  closedir(d);
  return rc;
}

int mm_cache_walk(const char *path, unsigned flags, mm_cache_walk_fn fn,
                  void *arg) {
  if (!path || !fn || (flags & ~(unsigned)(MM_CACHE_FOLLOW | MM_CACHE_XDEV)))
    return -EINVAL;
  struct walk *w = calloc(1, sizeof *w);
  if (!w) return -ENOMEM;
  size_t plen = strlen(path);
  if (plen >= sizeof w->path) {
    free(w);
    return -ENAMETOOLONG;
  }
  memcpy(w->path, path, plen + 1);
  w->flags = flags;
  w->fn = fn;
  w->arg = arg;
  struct stat st;
  if (stat(path, &st) < 0) {
    int e = -errno;
    free(w);
    return e;
  }
  w->dev = st.st_dev;
  int rc = walk_one(w, plen, -1, path);
  free(w);
  return rc;
}
