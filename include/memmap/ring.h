/*
 * memmap/ring.h - a message channel between two processes in shared memory.
 *
 * One producer, one consumer. Messages are byte strings of any length from
 * 0 to the ring's max_msg (set at creation; up to capacity - 16, by default
 * capacity / 2), delivered whole and in order. The data area is mapped
 * twice, back to back, so every message is contiguous in memory however it
 * wraps: the zero-copy calls hand out plain pointers.
 *
 * CREATING AND SHARING
 *   anonymous  mm_ring_create(&r, NULL, opts): a sealed memfd (it can
 *              neither shrink nor grow). Share it by fork() (both processes
 *              then hold the handle) or by passing mm_ring_fd() over a Unix
 *              socket (mm_ring_send_fd / mm_ring_recv_fd) to a process that
 *              calls mm_ring_open_fd().
 *   named      mm_ring_create(&r, path, opts) creates the file with
 *              O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 unless opts->perm says
 *              otherwise (e.g. under /dev/shm); mm_ring_open(&r, path, opts)
 *              checks owner, mode and size before mapping it.
 * Then each side claims its role with mm_ring_attach().
 *
 * WAITING
 * Calls take a timeout in milliseconds: 0 tries once (-EAGAIN if it would
 * wait), -1 waits for ever, otherwise -ETIMEDOUT when it runs out. A waiting
 * side spins for opts->spin_us microseconds, then sleeps on a futex; the
 * other side makes a system call (a futex wake) only when it sees a sleeper,
 * so a busy channel costs no system call per message.
 *
 * ENDING
 * When the producer closes, the consumer gets the messages still in the ring
 * and then MM_EOF. When the consumer closes, a send fails with -EPIPE. If
 * the other process dies without closing (SIGKILL, crash), a blocked or
 * later call returns MM_EPEERDEAD within about 20 ms (the consumer first
 * gets every message the producer had committed; a message being written
 * when it died is never seen, not even in part).
 *
 * TRUST
 * The shared area is writable by the other process, which may be buggy or
 * hostile. Each side reads every shared index and length once, checks it
 * against the capacity and the rules, and returns MM_ECORRUPT on anything
 * impossible; nothing in the shared area can make this library read or
 * write outside the mapping. (The bytes of a message can of course change
 * under a reader who holds a pointer to them; copy them out with
 * mm_ring_recv if that matters.)
 *
 * THREADS
 * A handle is used by one thread at a time per role: one thread sends, one
 * receives. Different handles are independent.
 */
#ifndef MEMMAP_RING_H
#define MEMMAP_RING_H

#include "common.h"

typedef struct mm_ring mm_ring_t;

/* Roles (mm_ring_attach). */
enum mm_ring_role { MM_RING_PRODUCER = 1, MM_RING_CONSUMER = 2 };

/* The default capacity: 1 MiB of data. */
#define MM_RING_CAPACITY_DEFAULT ((uint64_t)1 << 20)

/* Options. All zero: 1 MiB, max_msg = capacity / 2, spin 20 us, 0600. */
typedef struct mm_ring_opts {
  uint64_t capacity; /* data bytes; rounded up to a power of two of at
                        least a page; at most 1 GiB */
  uint64_t max_msg;  /* longest message; 0: capacity / 2; at most
                        capacity - 16 */
  int spin_us;       /* spin this long before sleeping (0: 20 us);
                        MM_RING_SPIN_ONLY never sleeps, MM_RING_SPIN_NONE
                        sleeps at once */
  unsigned perm;     /* named rings: file mode (0: 0600) */
  unsigned flags;    /* MM_RING_ANY_OWNER */
} mm_ring_opts_t;

#define MM_RING_SPIN_ONLY (-1)
#define MM_RING_SPIN_NONE (-2)

enum mm_ring_flags {
  /* mm_ring_open: accept a file owned by another user, or accessible to
   * group or others. Without it such a file is refused with -EACCES. */
  MM_RING_ANY_OWNER = 1u << 0
};

/*
 * Create a ring: anonymous when path is NULL, else a new file at path.
 * The creator has no role yet: call mm_ring_attach (after fork, in each
 * process). Errors: -EINVAL (options), -EEXIST (path exists), -errno.
 */
MM_API MM_NODISCARD int mm_ring_create(mm_ring_t **out, const char *path,
                                       const mm_ring_opts_t *opts);

/*
 * Open an existing named ring. Checks, before mapping: a regular file,
 * owned by this user with no group or other permissions (unless
 * MM_RING_ANY_OWNER), then the header (magic, version, word size, page
 * size, capacity and size, creator uid). Errors: -EACCES (owner or mode),
 * MM_ECORRUPT (not a ring, or a size that does not match), MM_EVERSION.
 * opts: only spin_us and flags are used; may be NULL.
 */
MM_API MM_NODISCARD int mm_ring_open(mm_ring_t **out, const char *path,
                                     const mm_ring_opts_t *opts);

/* The same for a descriptor (received over a socket, or inherited); the
 * descriptor stays the caller's (the ring keeps a duplicate). */
MM_API MM_NODISCARD int mm_ring_open_fd(mm_ring_t **out, int fd,
                                        const mm_ring_opts_t *opts);

/*
 * Claim a role in this process. -EBUSY if another handle or process has
 * it. The role stays with this process until mm_ring_close (or death).
 */
MM_API MM_NODISCARD int mm_ring_attach(mm_ring_t *ring, int role);

/*
 * Close: if attached, tell the other side (the consumer then drains and
 * gets MM_EOF; the producer gets -EPIPE), unmap, free. NULL is fine.
 */
MM_API int mm_ring_close(mm_ring_t *ring);

/* The descriptor of the shared memory (valid until mm_ring_close), to pass
 * to another process. */
MM_API int mm_ring_fd(const mm_ring_t *ring);

/* The ring's data capacity and its longest message. */
MM_API uint64_t mm_ring_capacity(const mm_ring_t *ring);
MM_API uint64_t mm_ring_max_msg(const mm_ring_t *ring);

/*
 * Copy a message in. Errors: -EMSGSIZE (len > max_msg), -EAGAIN (full,
 * timeout 0), -ETIMEDOUT, -EPIPE (consumer closed), MM_EPEERDEAD,
 * MM_ECORRUPT, -EINVAL (not the producer).
 */
MM_API MM_NODISCARD int mm_ring_send(mm_ring_t *ring, const void *data,
                                     size_t len, int timeout_ms);

/*
 * Copy the next message out into buf (cap bytes); *len receives its length.
 * A message longer than cap stays in the ring and -EMSGSIZE is returned
 * with *len set to its length. Errors: -EAGAIN, -ETIMEDOUT, MM_EOF (the
 * producer closed and the ring is empty), MM_EPEERDEAD (it died and the
 * ring is empty), MM_ECORRUPT, -EINVAL (not the consumer).
 */
MM_API MM_NODISCARD int mm_ring_recv(mm_ring_t *ring, void *buf, size_t cap,
                                     size_t *len, int timeout_ms);

/*
 * Zero-copy send: reserve room for a message of up to len bytes; *p points
 * to it (contiguous, 8-byte aligned) until mm_ring_commit. Write it, then
 * commit the length actually written (<= len). Errors as mm_ring_send.
 */
MM_API MM_NODISCARD int mm_ring_reserve(mm_ring_t *ring, size_t len, void **p,
                                        int timeout_ms);
MM_API MM_NODISCARD int mm_ring_commit(mm_ring_t *ring, size_t len);

/*
 * Zero-copy receive: *p and *len describe the next message, valid until
 * mm_ring_release (which hands its room back to the producer). Peeking
 * again before releasing returns the same message. Errors as
 * mm_ring_recv.
 */
MM_API MM_NODISCARD int mm_ring_peek(mm_ring_t *ring, const void **p,
                                     size_t *len, int timeout_ms);
MM_API MM_NODISCARD int mm_ring_release(mm_ring_t *ring);

/*
 * Pass a ring's descriptor over a connected Unix socket (SCM_RIGHTS), and
 * receive it on the other end (the received descriptor is the caller's;
 * open it with mm_ring_open_fd, then close it).
 */
MM_API MM_NODISCARD int mm_ring_send_fd(int sock, const mm_ring_t *ring);
MM_API MM_NODISCARD int mm_ring_recv_fd(int sock, int *fd);

#endif /* MEMMAP_RING_H */
