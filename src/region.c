/*
 * region.c - growable regions whose address never changes.
 *
 * HOW IT WORKS
 *
 * Stable regions (the usual case). Creation reserves `reserve` bytes of
 * address space with one PROT_NONE, MAP_NORESERVE anonymous mapping: no
 * memory, no swap, no commit charge, just addresses. The first `committed`
 * bytes of it are usable:
 *   - anonymous: growing mprotect()s [committed, new) to read-write; the
 *     kernel supplies zero pages on first touch. Shrinking MADV_DONTNEEDs
 *     the tail (its pages are freed at once, so RSS drops) and mprotect()s
 *     it back to PROT_NONE.
 *   - file-backed: growing fallocate()s the file to the new size (so a full
 *     disk fails here, not as a SIGBUS on a later store), then maps the new
 *     part of the file with MAP_FIXED over the reservation at the matching
 *     file offset. The kernel merges the adjacent shared mappings of one
 *     file into one VMA, so thousands of growth steps do not use up
 *     vm.max_map_count. Shrinking maps fresh PROT_NONE reservation over the
 *     tail (MAP_FIXED replaces atomically), then truncates the file.
 *
 * Because the whole reserve is one mapping from the start, nothing else can
 * be placed inside it, and the base never moves.
 *
 * Fallback regions. When the reservation fails (a 32-bit process, or an
 * RLIMIT_AS below the reserve), the region maps only what is committed and
 * grows with mremap(MREMAP_MAYMOVE), counting every move, unless the caller
 * asked for MM_REGION_STABLE.
 *
 * size vs committed. `size` is the caller's; `committed` is whole pages and
 * runs ahead of size when it grows (by an eighth, at least 64 KiB), so
 * most growth steps and appends cost no system call. For a file-backed region the file's size is
 * kept equal to `committed` while it is open and set to `size` on close. A
 * crash in between leaves at most the append slack as trailing zero bytes.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "memmap/region.h"

struct mm_region {
  unsigned char *base; /* first byte; &empty_region_byte when nothing is
                          mapped in a fallback region */
  uint64_t size;       /* bytes the caller uses */
  uint64_t committed;  /* bytes usable (whole pages), >= size */
  uint64_t reserve;    /* most the region may grow to */
  uint64_t moves;      /* times base moved (fallback regions) */
  int fd;              /* backing file, or -1 */
  uint64_t flen;       /* the backing file's length (== committed, except
                          while MM_REGION_TRUNCATE's old contents wait to
                          be discarded at the end of a successful create) */
  int stable;          /* 1: base is inside a reservation of `reserve` */
  int mapped_once;     /* fallback: base has been a real mapping */
  size_t span;         /* bytes of address space reserved (stable) */
};

static unsigned char empty_region_byte;

/* The largest reserve accepted: a quarter of the address space user
 * programs get on this architecture (47 bits on x86_64). */
static uint64_t max_reserve(void) {
  return sizeof(void *) >= 8 ? (uint64_t)1 << 45 : (uint64_t)1 << 30;
}

/* ---------------------------------------------------------------------- */
/* Committing and releasing                                                */

/* A fallback region's base changes: count it as a move (every change,
 * including to and from the placeholder of an empty region). */
static void move_base(mm_region_t *r, unsigned char *p) {
  if (p != r->base && r->mapped_once) r->moves++;
  if (p != &empty_region_byte) r->mapped_once = 1;
  r->base = p;
}

/* Grow the usable part to `want` bytes (a multiple of the page size). On
 * failure nothing changed. */
static int commit_to(mm_region_t *r, uint64_t want) {
  uint64_t have = r->committed;
  if (want <= have) return 0;
  int rc;
  uint64_t flen = r->flen;
  if (r->fd >= 0) {
    rc = mm__sys_fallocate(r->fd, 0, have, want - have);
    if (rc == -EOPNOTSUPP) rc = want > flen ? mm__sys_ftruncate(r->fd, want) : 0;
    if (rc < 0) {
      /* ext4 may have grown the file by the part it could allocate. */
      if (want > flen) (void)mm__sys_ftruncate(r->fd, flen);
      return rc;
    }
  }
  if (r->stable) {
    void *p;
    if (r->fd >= 0)
      rc = mm__sys_mmap(&p, r->base + have, (size_t)(want - have),
                        PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, r->fd,
                        have);
    else
      rc = mm__sys_mprotect(r->base + have, (size_t)(want - have),
                            PROT_READ | PROT_WRITE);
    if (rc < 0) {
      if (r->fd >= 0 && want > flen) (void)mm__sys_ftruncate(r->fd, flen);
      return mm__mmap_error(rc);
    }
  } else {
    void *p;
    if (have == 0)
      rc = mm__sys_mmap(&p, NULL, (size_t)want, PROT_READ | PROT_WRITE,
                        r->fd >= 0 ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS,
                        r->fd, 0);
    else
      rc = mm__sys_mremap(&p, r->base, (size_t)have, (size_t)want,
                          MREMAP_MAYMOVE, NULL);
    if (rc < 0) {
      if (r->fd >= 0 && want > flen) (void)mm__sys_ftruncate(r->fd, flen);
      return mm__mmap_error(rc);
    }
    move_base(r, p);
  }
  r->committed = want;
  if (r->fd >= 0 && want > r->flen) r->flen = want;
  return 0;
}

/* Shrink the usable part to `want` bytes (a multiple of the page size),
 * giving the memory back. On failure nothing changed. */
static int release_to(mm_region_t *r, uint64_t want) {
  uint64_t have = r->committed;
  if (want >= have) return 0;
  size_t tail = (size_t)(have - want);
  int rc;
  void *p;
  if (r->fd >= 0) {
    /* Replace the tail's file pages with a PROT_NONE placeholder (MAP_FIXED
     * replaces atomically, at the same address), then cut the file: no page
     * of ours is ever past the end of the file, and if the cut fails the
     * file's pages go back exactly where they were. */
    rc = mm__sys_mmap(&p, r->base + want, tail, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    if (rc < 0) return rc;
    rc = mm__sys_ftruncate(r->fd, want);
    if (rc < 0) {
      int r2 = mm__sys_mmap(&p, r->base + want, tail, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_FIXED, r->fd, want);
      if (r2 < 0) {
        /* Two failures in a row: the region is shorter, which is still a
         * correct view of the file's first bytes. */
        r->committed = want;
        if (r->size > want) r->size = want;
      }
      return rc;
    }
    r->flen = want;
    /* A stable region keeps the placeholder as its reservation; a fallback
     * region gives it back (failing to would only waste addresses). */
    if (!r->stable) {
      (void)mm__sys_munmap(r->base + want, tail);
      if (want == 0) move_base(r, &empty_region_byte);
    }
  } else if (r->stable) {
    /* Close the pages first (nothing is lost if that fails), then free
     * them; if freeing fails, open them again, contents untouched. */
    rc = mm__sys_mprotect(r->base + want, tail, PROT_NONE);
    if (rc < 0) return rc;
    rc = mm__sys_madvise(r->base + want, tail, MADV_DONTNEED);
    if (rc < 0) {
      (void)mm__sys_mprotect(r->base + want, tail, PROT_READ | PROT_WRITE);
      return rc;
    }
  } else if (want == 0) {
    rc = mm__sys_munmap(r->base, (size_t)have);
    if (rc < 0) return rc;
    move_base(r, &empty_region_byte);
  } else {
    rc = mm__sys_mremap(&p, r->base, (size_t)have, (size_t)want, 0, NULL);
    if (rc < 0) return rc;
  }
  r->committed = want;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                              */

static int reserve_span(mm_region_t *r) {
  void *p;
  int rc = mm__sys_mmap(&p, NULL, r->span, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (rc < 0) return rc;
  r->base = p;
  r->stable = 1;
  return 0;
}

int mm_region_create(mm_region_t **out, const mm_region_opts_t *opts) {
  static const mm_region_opts_t defaults;
  if (!out) return -EINVAL;
  *out = NULL;
  const mm_region_opts_t *o = opts ? opts : &defaults;
  size_t page = mm__page_size();
  unsigned known = MM_REGION_CREATE | MM_REGION_EXCL | MM_REGION_STABLE |
                   MM_REGION_TRUNCATE;
  if (o->flags & ~known) return -EINVAL;
  if ((o->flags & (MM_REGION_CREATE | MM_REGION_EXCL | MM_REGION_TRUNCATE)) &&
      !o->path)
    return -EINVAL;
  if ((o->flags & MM_REGION_EXCL) && !(o->flags & MM_REGION_CREATE))
    return -EINVAL;
  uint64_t reserve = o->reserve ? o->reserve : MM_REGION_RESERVE_DEFAULT;
  if (reserve > max_reserve() || o->initial > reserve) return -EINVAL;

  mm_region_t *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  r->fd = -1;
  r->base = &empty_region_byte;
  int rc = 0;
  uint64_t fsize = 0, old_size = 0;
  if (o->path) {
    int flags = O_RDWR | O_CLOEXEC;
    if (o->flags & MM_REGION_CREATE) flags |= O_CREAT | O_NOFOLLOW;
    if (o->flags & MM_REGION_EXCL) flags |= O_EXCL;
    r->fd = mm__sys_open(o->path, flags, o->perm ? o->perm : 0600);
    if (r->fd < 0) {
      rc = r->fd;
      r->fd = -1;
      goto fail;
    }
    struct stat st;
    if ((rc = mm__sys_fstat(r->fd, &st)) < 0) goto fail;
    if (!S_ISREG(st.st_mode)) {
      rc = -EINVAL;
      goto fail;
    }
    /* With MM_REGION_TRUNCATE the old contents are discarded only at the
     * very end, once nothing else can fail. */
    old_size = (uint64_t)st.st_size;
    r->flen = old_size;
    if (!(o->flags & MM_REGION_TRUNCATE)) fsize = old_size;
    if (fsize > max_reserve()) {
      rc = -EFBIG;
      goto fail;
    }
    if (fsize > reserve) reserve = fsize;
  }
  r->reserve = reserve;
  uint64_t span = mm__align_up(reserve, page);
  if (span == 0 || span > SIZE_MAX) {
    rc = -EINVAL;
    goto fail;
  }
  r->span = (size_t)span;
  rc = reserve_span(r);
  if (rc < 0) {
    if (rc != -ENOMEM || (o->flags & MM_REGION_STABLE)) goto fail;
    r->span = 0; /* fall back to remapping */
    r->base = &empty_region_byte;
  }
  /* An existing file's pages first: its size is already allocated. */
  uint64_t fpages = mm__align_up(fsize, page);
  if (fsize) {
    void *p;
    if (r->stable)
      rc = mm__sys_mmap(&p, r->base, (size_t)fpages, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_FIXED, r->fd, 0);
    else
      rc = mm__sys_mmap(&p, NULL, (size_t)fpages, PROT_READ | PROT_WRITE,
                        MAP_SHARED, r->fd, 0);
    if (rc < 0) {
      rc = mm__mmap_error(rc);
      goto fail;
    }
    r->base = p;
    r->mapped_once = 1;
    r->committed = fpages;
    r->size = fsize;
    /* The file's length is the region's size, and the committed pages
     * past it are not in the file yet: bring the file to the page end so
     * the whole committed span is backed (and trimmed again on close). */
    if (fpages != fsize &&
        (rc = mm__sys_fallocate(r->fd, 0, fsize, fpages - fsize)) < 0 &&
        rc != -EOPNOTSUPP)
      goto fail;
    if (rc == -EOPNOTSUPP && (rc = mm__sys_ftruncate(r->fd, fpages)) < 0)
      goto fail;
    r->flen = fpages;
    rc = 0;
  }
  if (o->initial > r->size) {
    if ((rc = mm_region_resize(r, o->initial)) < 0) goto fail;
  }
  if ((o->flags & MM_REGION_TRUNCATE) && old_size) {
    /* Now discard: cut what lies past the region, then zero the old bytes
     * still mapped (a memset cannot fail). */
    if (r->flen > r->committed) {
      if ((rc = mm__sys_ftruncate(r->fd, r->committed)) < 0) goto fail;
      r->flen = r->committed;
    }
    memset(r->base, 0, (size_t)(old_size < r->committed ? old_size : r->committed));
  }
  *out = r;
  return 0;
fail:
  /* Closing cuts the file to r->size: make that the size it had. */
  r->size = old_size;
  (void)mm_region_close(r);
  return rc;
}

int mm_region_close(mm_region_t *r) {
  if (!r) return 0;
  int rc = 0;
  if (r->stable) {
    rc = mm__sys_munmap(r->base, r->span);
  } else if (r->committed) {
    rc = mm__sys_munmap(r->base, (size_t)r->committed);
  }
  if (r->fd >= 0) {
    /* The file ends where the region does, not where commits ran ahead. */
    int r2 = 0;
    if (r->flen != r->size) r2 = mm__sys_ftruncate(r->fd, r->size);
    int r3 = mm__sys_close(r->fd);
    if (rc == 0) rc = r2 ? r2 : r3;
  }
  free(r);
  return rc;
}

void *mm_region_base(const mm_region_t *r) { return r->base; }
uint64_t mm_region_size(const mm_region_t *r) { return r->size; }
uint64_t mm_region_reserve(const mm_region_t *r) { return r->reserve; }
uint64_t mm_region_committed(const mm_region_t *r) { return r->committed; }
int mm_region_stable(const mm_region_t *r) { return r->stable; }
uint64_t mm_region_moves(const mm_region_t *r) { return r->moves; }

/* ---------------------------------------------------------------------- */
/* Resize, append, trim, sync                                              */

/* What to commit to hold `need` bytes: at least an eighth more than now
 * (and 64 KiB), so that growing in small steps costs a system call only
 * once in a while, as a vector's capacity does; never past the reserve. */
static uint64_t grow_target(const mm_region_t *r, uint64_t need) {
  size_t page = mm__page_size();
  uint64_t ahead = r->committed / 8;
  if (ahead < 65536) ahead = 65536;
  uint64_t want = mm__align_up(need, page);
  if (want < r->committed + ahead) want = mm__align_up(r->committed + ahead, page);
  uint64_t limit = mm__align_up(r->reserve, page); /* >= align_up(need) */
  return want > limit ? limit : want;
}

/* Commit enough for `need` bytes, with room ahead if the disk or memory
 * allows; without the room if only the exact size fits. */
static int grow_to(mm_region_t *r, uint64_t need) {
  uint64_t exact = mm__align_up(need, mm__page_size());
  if (exact <= r->committed) return 0;
  uint64_t want = grow_target(r, need);
  int rc = commit_to(r, want);
  if ((rc == -ENOSPC || rc == -ENOMEM || rc == -EFBIG) && want > exact)
    rc = commit_to(r, exact);
  return rc;
}

int mm_region_resize(mm_region_t *r, uint64_t new_size) {
  if (new_size > r->reserve) return MM_EFULL;
  size_t page = mm__page_size();
  uint64_t want = mm__align_up(new_size, page);
  if (new_size > r->size) {
    int rc = grow_to(r, new_size);
    if (rc < 0) return rc;
    /* Bytes left in committed pages by an earlier, larger size must read
     * as zero again. Fresh pages already do. */
    uint64_t dirty_end = r->committed < new_size ? r->committed : new_size;
    uint64_t old_end = mm__align_up(r->size, page);
    if (old_end > dirty_end) old_end = dirty_end;
    if (old_end > r->size) memset(r->base + r->size, 0, (size_t)(old_end - r->size));
  } else {
    int rc = release_to(r, want);
    if (rc < 0) return rc;
  }
  r->size = new_size;
  return 0;
}

int mm_region_append(mm_region_t *r, const void *src, size_t n, uint64_t *at) {
  uint64_t off = r->size;
  if (n > r->reserve - off) return MM_EFULL;
  uint64_t need = off + n;
  int rc = grow_to(r, need);
  if (rc < 0) return rc;
  if (src)
    memcpy(r->base + off, src, n);
  else
    memset(r->base + off, 0, n);
  r->size = need;
  if (at) *at = off;
  return 0;
}

int mm_region_trim(mm_region_t *r) {
  return release_to(r, mm__align_up(r->size, mm__page_size()));
}

int mm_region_sync(mm_region_t *r, uint64_t off, uint64_t len, int flags) {
  if (flags != MM_SYNC_WAIT && flags != MM_SYNC_ASYNC) return -EINVAL;
  if (off > r->size) return MM_ERANGE;
  if (len == 0) len = r->size - off;
  if (len > r->size - off) return MM_ERANGE;
  if (r->fd < 0 || len == 0) return 0;
  size_t page = mm__page_size();
  uint64_t lo = mm__align_down(off, page), hi = mm__align_up(off + len, page);
  return mm__sys_msync(r->base + lo, (size_t)(hi - lo),
                       flags == MM_SYNC_ASYNC ? MS_ASYNC : MS_SYNC);
}
