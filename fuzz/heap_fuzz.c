/*
 * heap_fuzz.c - a libFuzzer harness for the parts of mm_heap that read an
 * untrusted file: mm_heap_open (validation and recovery), mm_heap_check,
 * mm_heap_info and mm_heap_close. heap.h promises that neither open nor
 * check crashes on any input; crashes, hangs and sanitizer reports are the
 * findings. Nothing is asserted.
 *
 * Once per process the harness builds a small valid heap (64 KiB chunks,
 * 64 KiB log, allocations of mixed sizes, some freed, names, a root) in a
 * file under /dev/shm (else $TMPDIR, else /tmp) and keeps its bytes. Each
 * input then says how to make the file to open from it:
 *
 *   byte 0        mode (an empty input: the image as it is)
 *                   bit 0  1: the rest of the input is the whole file
 *                          (bit 1 applies too; bits 2 to 5 do not)
 *                          0: start from the image and apply the records
 *                   bit 1  after the records, recompute the CRC32C of both
 *                          header copies (so mutated header fields get past
 *                          the checksum and reach the field checks)
 *                   bit 2  the next 4 bytes (little-endian u32) give a new
 *                          file length, modulo image size + 64 KiB
 *                          (truncated, or extended with zeros)
 *                   bit 3  if check finds nothing, also list the names
 *                          and allocate, free and check again (the
 *                          allocator trusts a heap that passed open;
 *                          a crash here means check missed something)
 *                   bit 4  before the records, clear the undo log (all
 *                          but its magic and sequence number), so records
 *                          write log entries byte for byte
 *                   bit 5  after the records, give every log entry that
 *                          the log's `used` covers the log's seq and a
 *                          valid CRC, so the entries reach recovery (which
 *                          rolls them back, or redoes a commit record,
 *                          when open finds the log in use)
 *   then records  5 bytes each: u32 offset (little-endian, modulo the
 *                 file size), u8 value to XOR into that byte
 *
 * The same function runs in two builds: under libFuzzer (make fuzz, clang,
 * ASan + UBSan) and from fuzz/run_corpus.c, a plain main that feeds it
 * every file of a corpus directory (make fuzz-corpus, and make test).
 */
#define _GNU_SOURCE 1
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHUNK (64u << 10)
#define FUZZ_LOG (64u << 10)
#define FUZZ_MAX ((uint64_t)4 << 20)
#define FUZZ_LOCK_MS 200

#define MODE_RAW 1u
#define MODE_FIXCRC 2u
#define MODE_RESIZE 4u
#define MODE_EXERCISE 8u
#define MODE_CLEARLOG 16u
#define MODE_FIXLOG 32u

/* The undo log's layout (doc/heap-format.md, "Undo log"); if it changes,
 * modes 16 and 32 only mutate less cleverly. */
#define LOG_OFF 73728u
#define LOG_HDR 64u
#define LOG_AREA (FUZZ_LOG / 2) /* two areas, each a header and entries */
#define LOG_MAGIC 0x31474f4c504d4d48ull /* "HMMPLOG1" */
#define LOG_SEQ 8u                  /* in a header: u64, the greater is current */
#define LOG_USED 16u                /* u64: bytes of entries */
#define LOG_USED_AT (LOG_OFF + LOG_USED)
#define ENT_SIZE 24u /* u64 off, u32 len, u16 type, u16 seq_hi, u32 crc, u32 seq_lo */
#define ENT_FREE 2u

static unsigned char *image;   /* the valid heap's bytes */
static size_t image_size;
static char work_path[512];    /* the file each input is written to */
static unsigned char *filebuf; /* the bytes of that file, per input */
static size_t filebuf_cap;
static volatile size_t sink;   /* keeps the reads of messages and names */

static void die(const char *what, int rc) {
  fprintf(stderr, "heap_fuzz: %s: %s (%s)\n", what, mm_strerror(rc), mm_errname(rc));
  abort();
}

/* CRC32C (Castagnoli, reflected), as doc/heap-format.md specifies. */
static uint32_t crc32c(const unsigned char *p, size_t n) {
  uint32_t c = 0xffffffffu;
  while (n--) {
    c ^= *p++;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
  }
  return ~c;
}

static void fix_header_crcs(unsigned char *buf, size_t len) {
  for (size_t at = 0; at <= 4096; at += 4096) {
    if (at + 256 > len) break;
    uint32_t c = crc32c(buf + at, 252);
    memcpy(buf + at + 252, &c, 4); /* the machine's byte order */
  }
}

static void clear_log(unsigned char *buf, size_t len) {
  size_t end = LOG_OFF + FUZZ_LOG;
  if (len < end) end = len;
  if (end > LOG_USED_AT) memset(buf + LOG_USED_AT, 0, end - LOG_USED_AT);
}

/* Give every entry the current log's `used` covers (the area whose
 * header has the magic and the greater seq) the log's seq and a valid
 * CRC, walking them as recovery does. A range (type 1) and a commit
 * record (type 3) carry len bytes; a free none. */
static void fix_log_crcs(unsigned char *buf, size_t len) {
  if (len < LOG_OFF + LOG_AREA + LOG_HDR) return;
  uint64_t hdr = LOG_OFF, seq0, seq1, magic1, used, seq;
  memcpy(&seq0, buf + LOG_OFF + LOG_SEQ, 8);
  memcpy(&seq1, buf + LOG_OFF + LOG_AREA + LOG_SEQ, 8);
  memcpy(&magic1, buf + LOG_OFF + LOG_AREA, 8);
  if (magic1 == LOG_MAGIC && seq1 > seq0) hdr += LOG_AREA;
  memcpy(&used, buf + hdr + LOG_USED, 8);
  memcpy(&seq, buf + hdr + LOG_SEQ, 8);
  unsigned char *log = buf + hdr + LOG_HDR;
  uint64_t room = LOG_AREA - LOG_HDR;
  if (used > room) used = room;
  uint16_t seq_hi = (uint16_t)(seq >> 32);
  uint32_t seq_lo = (uint32_t)seq;
  for (uint64_t at = 0; at + ENT_SIZE <= used;) {
    unsigned char *e = log + at;
    uint32_t elen, crc0 = 0;
    uint16_t type;
    memcpy(&elen, e + 8, 4);
    memcpy(&type, e + 12, 2);
    uint64_t data = type != ENT_FREE ? ((uint64_t)elen + 7) / 8 * 8 : 0;
    if (type < 1 || type > 3 || ENT_SIZE + data > used - at) break;
    memcpy(e + 14, &seq_hi, 2);
    memcpy(e + 20, &seq_lo, 4);
    memcpy(e + 16, &crc0, 4);
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < ENT_SIZE + (type != ENT_FREE ? elen : 0); i++) {
      c ^= e[i];
      for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
    }
    c = ~c;
    memcpy(e + 16, &c, 4);
    at += ENT_SIZE + data;
  }
}

static const char *scratch_dir(void) {
  struct stat st;
  if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
    return "/dev/shm";
  const char *t = getenv("TMPDIR");
  return t && *t ? t : "/tmp";
}

/* Work files of harness processes that died mid-input (a crash, or the
 * time limit of a libFuzzer job): removed by the next one to start. */
static void remove_stale_files(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    long pid;
    char kind[8], extra;
    if (sscanf(e->d_name, "memmap-heap-fuzz.%ld.%7[a-z]%c", &pid, kind, &extra) != 2 ||
        pid <= 0 || (strcmp(kind, "work") && strcmp(kind, "heap")))
      continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive */
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    unlink(p);
  }
  closedir(d);
}

static void remove_work_file(void) {
  if (work_path[0]) unlink(work_path);
}

/* The heap every mode-0 input starts from. Its contents are deterministic
 * (but for the uuid), so a corpus means the same thing in every run. */
static void build_image(void) {
  static const uint64_t sizes[] = {16,   24,   40,   100,  128,   256,   500,
                                   1000, 2048, 2049, 4096, 5000,  12288, 30000,
                                   16,   64,   64,   64,   80000, 100};
  const size_t nsizes = sizeof sizes / sizeof sizes[0];
  uint64_t offs[sizeof sizes / sizeof sizes[0]];
  char path[512];
  const char *dir = scratch_dir();
  snprintf(path, sizeof path, "%s/memmap-heap-fuzz.%ld.heap", dir, (long)getpid());
  snprintf(work_path, sizeof work_path, "%s/memmap-heap-fuzz.%ld.work", dir, (long)getpid());
  unlink(path);
  remove_stale_files(dir);
  atexit(remove_work_file);

  mm_heap_t *h = NULL;
  mm_heap_opts_t o;
  memset(&o, 0, sizeof o);
  o.flags = MM_HEAP_CREATE | MM_HEAP_EXCL;
  o.chunk_size = FUZZ_CHUNK;
  o.log_size = FUZZ_LOG;
  o.max_size = FUZZ_MAX;
  int rc = mm_heap_open(&h, path, &o);
  if (rc < 0) die(path, rc);

  for (size_t i = 0; i < nsizes; i++) {
    if ((rc = mm_heap_alloc(h, sizes[i], &offs[i])) < 0) die("alloc", rc);
    /* Fill each object with a pattern, so user data is not all zero. */
    unsigned char *p = mm_heap_ptr(h, offs[i]);
    for (uint64_t k = 0; k < sizes[i]; k++) p[k] = (unsigned char)(i * 31 + k);
  }
  /* A few frees: a small block, a page run, and a block of a mostly
   * freed run. */
  const size_t frees[] = {1, 4, 11, 15, 16};
  for (size_t i = 0; i < sizeof frees / sizeof frees[0]; i++) {
    if ((rc = mm_heap_free(h, offs[frees[i]])) < 0) die("free", rc);
    offs[frees[i]] = 0;
  }
  if ((rc = mm_heap_realloc(h, &offs[2], 300)) < 0) die("realloc", rc);
  if ((rc = mm_heap_set_root(h, offs[0])) < 0) die("set_root", rc);
  if ((rc = mm_heap_name_set(h, "config", offs[5])) < 0) die("name_set", rc);
  if ((rc = mm_heap_name_set(h, "big", offs[19])) < 0) die("name_set", rc);
  if ((rc = mm_heap_name_set(h, "a-rather-longer-name-for-the-index/0001", offs[13])) < 0)
    die("name_set", rc);
  if ((rc = mm_heap_name_set(h, "gone", offs[3])) < 0) die("name_set", rc);
  if ((rc = mm_heap_name_del(h, "gone")) < 0) die("name_del", rc);

  /* One committed transaction and one aborted, so the log has been used. */
  if ((rc = mm_heap_tx_begin(h, NULL)) < 0) die("tx_begin", rc);
  if ((rc = mm_heap_tx_add(h, offs[0], 16)) < 0) die("tx_add", rc);
  memset(mm_heap_ptr(h, offs[0]), 0xab, 16);
  uint64_t t1;
  if ((rc = mm_heap_alloc(h, 700, &t1)) < 0) die("tx alloc", rc);
  if ((rc = mm_heap_name_set(h, "in-tx", t1)) < 0) die("tx name_set", rc);
  if ((rc = mm_heap_tx_commit(h)) < 0) die("tx_commit", rc);
  if ((rc = mm_heap_tx_begin(h, NULL)) < 0) die("tx_begin", rc);
  if ((rc = mm_heap_tx_add(h, offs[5], 64)) < 0) die("tx_add", rc);
  memset(mm_heap_ptr(h, offs[5]), 0xcd, 64);
  uint64_t t2;
  if ((rc = mm_heap_alloc(h, 9000, &t2)) < 0) die("tx alloc", rc);
  (void)mm_heap_tx_abort(h);
  if ((rc = mm_heap_close(h)) < 0) die("close", rc);

  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(path, -errno);
  struct stat st;
  if (fstat(fd, &st) < 0) die("fstat", -errno);
  image_size = (size_t)st.st_size;
  image = malloc(image_size);
  if (!image) die("malloc", -ENOMEM);
  for (size_t got = 0; got < image_size;) {
    ssize_t n = pread(fd, image + got, image_size - got, (off_t)got);
    if (n <= 0) die("read", n < 0 ? -errno : -EIO);
    got += (size_t)n;
  }
  close(fd);
  unlink(path);
  filebuf_cap = image_size + (64u << 10);
  filebuf = malloc(filebuf_cap);
  if (!filebuf) die("malloc", -ENOMEM);
  const char *dump = getenv("HEAP_FUZZ_DUMP"); /* for writing seeds */
  if (dump && *dump) {
    int dfd = open(dump, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (dfd < 0 || write(dfd, image, image_size) != (ssize_t)image_size) die(dump, -errno);
    close(dfd);
  }
  if (getenv("HEAP_FUZZ_VERBOSE"))
    fprintf(stderr, "heap_fuzz: image of %zu bytes, work file %s\n", image_size, work_path);
}

static void write_file(const unsigned char *buf, size_t len) {
  int fd = open(work_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die(work_path, -errno);
  for (size_t done = 0; done < len;) {
    ssize_t n = write(fd, buf + done, len - done);
    if (n <= 0) die("write", n < 0 ? -errno : -EIO);
    done += (size_t)n;
  }
  close(fd);
}

static void on_finding(void *arg, int code, uint64_t off, const char *msg) {
  (void)arg;
  sink += (size_t)code + (size_t)off + strlen(msg); /* msg must be a string */
}

static int on_name(void *arg, const char *name, uint64_t off) {
  (void)arg;
  sink += strlen(name) + (size_t)off;
  return 0;
}

/* With MODE_EXERCISE, on a heap check found consistent. */
static void exercise(mm_heap_t *h) {
  static const uint64_t sizes[] = {16, 200, 2048, 3000, 70000};
  uint64_t offs[sizeof sizes / sizeof sizes[0]] = {0};
  (void)mm_heap_name_list(h, on_name, NULL);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    if (mm_heap_alloc(h, sizes[i], &offs[i]) == 0) {
      memset(mm_heap_ptr(h, offs[i]), 0x5a, (size_t)sizes[i]);
    }
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    (void)mm_heap_free(h, offs[i]);
  uint64_t off;
  if (mm_heap_name_get(h, "config", &off) == 0) (void)mm_heap_usable_size(h, off);
  uint64_t n = 0;
  (void)mm_heap_check(h, on_finding, NULL, &n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!image) build_image();
  unsigned mode = size ? data[0] : 0;
  const uint8_t *p = size ? data + 1 : data;
  size_t left = size ? size - 1 : 0;
  size_t len;

  if (mode & MODE_RAW) {
    len = left < filebuf_cap ? left : filebuf_cap;
    if (len) memcpy(filebuf, p, len);
    if (mode & MODE_FIXCRC) fix_header_crcs(filebuf, len);
  } else {
    len = image_size;
    memcpy(filebuf, image, image_size);
    if (mode & MODE_CLEARLOG) clear_log(filebuf, len);
    if ((mode & MODE_RESIZE) && left >= 4) {
      uint32_t want;
      memcpy(&want, p, 4);
      want = (uint32_t)((uint64_t)want % filebuf_cap);
      if (want > len) memset(filebuf + len, 0, want - len);
      len = want;
      p += 4, left -= 4;
    }
    for (; left >= 5; p += 5, left -= 5) {
      if (len == 0) break;
      uint32_t at = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                    (uint32_t)p[3] << 24;
      filebuf[at % len] ^= p[4];
    }
    if (mode & MODE_FIXLOG) fix_log_crcs(filebuf, len);
    if (mode & MODE_FIXCRC) fix_header_crcs(filebuf, len);
  }
  write_file(filebuf, len);

  mm_heap_t *h = NULL;
  mm_heap_opts_t o;
  memset(&o, 0, sizeof o);
  o.lock_timeout_ms = FUZZ_LOCK_MS;
  int rc = mm_heap_open(&h, work_path, &o);
  /* The open handle keeps the file; gone from the directory now, it is
   * not left behind when a crash or a time limit ends the process. */
  unlink(work_path);
  if (rc < 0) {
    if (h) abort(); /* heap.h: on failure *out is NULL */
    sink += (size_t)strlen(mm_strerror(rc));
    return 0;
  }
  uint64_t nfound = 0;
  rc = mm_heap_check(h, on_finding, NULL, &nfound);
  mm_heap_info_t info;
  if (mm_heap_info(h, &info) == 0) sink += (size_t)info.used;
  if ((mode & MODE_EXERCISE) && rc == 0 && nfound == 0) exercise(h);
  (void)mm_heap_close(h);
  return 0;
}
