#!/bin/sh
# seeds.sh DIR - write the seed inputs of the heap fuzzer (fuzz/heap_fuzz.c)
# into DIR (make fuzz-seeds: fuzz/corpus/heap). Each input is a mode byte,
# then for the image modes 5-byte records: u32 offset (little-endian), u8
# XOR (see the top of fuzz/heap_fuzz.c for the modes). The harness's image
# has 64 KiB chunks and 64 KiB of log, so (doc/heap-format.md):
#   0      header copy A        4096   header copy B
#   8192   shared state         73728  undo log
#   139264 data_off: chunk 0 (its map first), chunk 1, ...
# Seed names start with "seed-"; "regress-" inputs once crashed the heap
# (kept by hand); inputs libFuzzer added (-merge=1) are named by their SHA-1.
# Inputs that still crash it live in fuzz/crashes/heap, out of the corpus
# that make test runs.
set -eu
dir=${1:?usage: seeds.sh DIR}
mkdir -p "$dir"

DATA=139264

# byte N: one byte, as printf's octal escape
byte() { printf "\\$(printf '%03o' "$1")"; }
# u32 N: four bytes, little-endian
u32() {
  byte $(($1 & 255)); byte $(($1 >> 8 & 255))
  byte $(($1 >> 16 & 255)); byte $(($1 >> 24 & 255))
}
# rec OFFSET XOR
rec() { u32 "$1"; byte "$2"; }
# seed NAME MODE [OFFSET XOR]...
seed() {
  name=$1 mode=$2
  shift 2
  {
    byte "$mode"
    while [ $# -ge 2 ]; do rec "$1" "$2"; shift 2; done
  } >"$dir/seed-$name"
}

# The image as it is; a zero-length file; the empty input (the image too).
: >"$dir/seed-empty"
seed pristine 0
seed empty-file 1
# Mode 1: files that are not heaps, or only start like one.
printf '\001not a heap at all\n' >"$dir/seed-raw-junk"
{ byte 1; printf 'MMHEAP\r\n'; byte 1; byte 0; byte 0; byte 0; byte 0; byte 1; } \
  >"$dir/seed-raw-magic-only"
{ byte 3; printf 'MMHEAP\r\n'; byte 1; byte 0; byte 0; byte 0; byte 0; byte 1; } \
  >"$dir/seed-raw-magic-crc-fixed"

# The header: a bad checksum in one copy, then in both; fields changed
# with the checksums recomputed (mode 2), so open's field checks see them.
seed hdr-a-crc 0 252 1
seed hdr-both-crc 0 252 1 4348 1
seed hdr-magic-both 0 0 32 4096 32
seed hdr-version 2 8 2 4104 2
seed hdr-incompat 2 24 128 4120 128
seed hdr-compat 2 16 1 4112 1
seed hdr-pagesize 2 33 48 4129 48
seed hdr-byteorder 2 36 255 4132 255
seed hdr-wordsize 2 40 12 4136 12
seed hdr-chunkshift 2 44 31 4140 31
seed hdr-generation-a 2 64 7
seed hdr-max-size 2 75 255 4171 255
seed hdr-max-size-small 2 74 64 4170 64
seed hdr-file-size 2 82 3 4178 3
seed hdr-super-off 2 89 1 4185 1
seed hdr-log-off 2 105 16 4201 16
seed hdr-log-size 2 114 4 4210 4
seed hdr-data-off 2 121 2 4217 2
seed hdr-data-off-odd 2 120 8 4216 8
seed hdr-root-off 2 129 255 4225 255
seed hdr-names-off 2 137 7 4233 7
seed hdr-flags 2 144 6 4240 6
seed hdr-mutex-size 2 148 8 4244 8
seed hdr-reserved 2 200 1 4296 1
# Truncated (mode 4: the u32 after the mode byte is the new length).
{ byte 4; u32 100; } >"$dir/seed-trunc-header"
{ byte 4; u32 20000; } >"$dir/seed-trunc-shared"
{ byte 4; u32 100000; } >"$dir/seed-trunc-log"
{ byte 4; u32 $((DATA + 1000)); } >"$dir/seed-trunc-chunk0"
{ byte 4; u32 $((DATA + 65536 + 4096)); } >"$dir/seed-trunc-chunk1"

# The shared state at 8192: magic, heap_size, nchunks, root, free_key, the
# names' buckets, count and table size, the partial runs per size class
# (8256), the bins of free page runs (8448), the lock (8704), the cache
# slots (9216, 320 bytes each: state, pid, tid, heads, counts).
seed shared-magic 0 8192 1
seed shared-heap-size 0 8201 1
seed shared-heap-size-big 0 8202 255
seed shared-nchunks 0 8208 3
seed shared-root 0 8217 16
seed shared-names 0 8232 8 8240 3 8248 1
seed shared-partial 0 8256 64 8264 8 8320 1
seed shared-bins 0 8448 16 8456 1 8512 255
seed shared-lock 0 8704 1 8708 255 8720 2
seed shared-slot0 0 9216 1 9220 7 9232 16 9240 8
seed shared-slot-heads 0 9233 1 9290 128 9536 1 9552 4
seed shared-deep-crc 2 9000 1 20000 64 40000 8 60000 2
# The undo log at 73728: its header and a first record.
seed log-head 0 73728 1
seed log-words 0 73736 255 73744 1 73752 16
seed log-record 0 73792 1 73800 64 73856 255
seed log-end 0 139263 1
# The first chunk's map at data_off, and what follows it.
seed chunkmap-0 0 $DATA 255
seed chunkmap-words 0 $((DATA + 1)) 1 $((DATA + 8)) 2 $((DATA + 16)) 128
seed chunkmap-pages 0 $((DATA + 64)) 3 $((DATA + 100)) 1 $((DATA + 200)) 255
# Run headers: the first pages of chunk 0 after its map, and chunk 1.
seed run-0 0 $((DATA + 4096)) 1
seed run-1 0 $((DATA + 8192)) 255 $((DATA + 8200)) 1
seed run-2 0 $((DATA + 12288)) 16 $((DATA + 12296)) 2 $((DATA + 12304)) 4
seed chunk1-map 0 $((DATA + 65536)) 255 $((DATA + 65544)) 1
seed chunk1-run 0 $((DATA + 65536 + 4096)) 1 $((DATA + 65536 + 4104)) 8
# Log entries written into a cleared log (mode 16) with their CRCs made
# valid (mode 32), so open's recovery rolls them back into the heap.
# Entry: u64 off, u32 len, u16 type (1 range, 2 free), u16, u32 crc, u32,
# then for a range len bytes (padded to 8). `set8 OFFSET VALUE` gives the
# records that write a u64 into zeros.
set8() {
  v=$2 i=0
  while [ $i -lt 8 ]; do
    b=$((v & 255))
    if [ $b -ne 0 ]; then printf '%s %s ' $(($1 + i)) $b; fi
    v=$((v >> 8)) i=$((i + 1))
  done
}
LOG=73728 ENT=73792
seed log-cleared 16
seed log-entry-user 48 $(set8 $((LOG + 16)) 40) $(set8 $ENT $((DATA + 4096 + 64))) \
  $(set8 $((ENT + 8)) $((16 | 1 << 32))) $(set8 $((ENT + 24)) 12345)
seed log-entry-map 48 $(set8 $((LOG + 16)) 32) $(set8 $ENT $((DATA + 4))) \
  $(set8 $((ENT + 8)) $((8 | 1 << 32))) $(set8 $((ENT + 24)) 0x7fffffff)
seed log-entry-root 48 $(set8 $((LOG + 16)) 32) $(set8 $ENT 8216) \
  $(set8 $((ENT + 8)) $((8 | 1 << 32))) $(set8 $((ENT + 24)) 8)
seed log-entry-free 48 $(set8 $((LOG + 16)) 24) $(set8 $ENT $((DATA + 4096))) \
  $(set8 $((ENT + 8)) $((2 << 32)))
seed log-entry-two 48 $(set8 $((LOG + 16)) 64) $(set8 $ENT $((DATA + 8192))) \
  $(set8 $((ENT + 8)) $((8 | 1 << 32))) $(set8 $((ENT + 24)) 1) \
  $(set8 $((ENT + 32)) $((DATA + 8200))) $(set8 $((ENT + 40)) $((8 | 1 << 32))) \
  $(set8 $((ENT + 56)) 2)
seed log-entry-mutex 48 $(set8 $((LOG + 16)) 32) $(set8 $ENT 8704) \
  $(set8 $((ENT + 8)) $((8 | 1 << 32))) $(set8 $((ENT + 24)) 0xffff)
seed log-entry-header 48 $(set8 $((LOG + 16)) 32) $(set8 $ENT 64) \
  $(set8 $((ENT + 8)) $((8 | 1 << 32))) $(set8 $((ENT + 24)) 99)
seed log-entry-badcrc 16 $(set8 $((LOG + 16)) 32) $(set8 $ENT $((DATA + 4096))) \
  $(set8 $((ENT + 8)) $((8 | 1 << 32))) $(set8 $((ENT + 24)) 1)
seed log-used-odd 16 $(set8 $((LOG + 16)) 41)
seed log-used-huge 0 $((LOG + 23)) 1
seed log-commit-record 48 $(set8 $((LOG + 16)) 32) $(set8 $((LOG + 8)) 5) \
  $(set8 $((LOG + 32)) 5) $(set8 $((LOG + 40)) 32) $(set8 $ENT $((DATA + 4096))) \
  $(set8 $((ENT + 8)) $((8 | 1 << 32))) $(set8 $((ENT + 24)) 7)
# Commit records (type 3: images of u64 off, u64 len, the bytes), which
# recovery redoes: into user data, over the page map, out of bounds, torn
# (len past used); and logs in the second area, current when its header
# (at LOG2: magic, seq, used) has the greater seq.
LOG2=$((LOG + 32768)) ENT2=$((LOG + 32768 + 64)) LOGMAGIC=0x31474f4c504d4d48
seed log-redo-user 48 $(set8 $((LOG + 16)) 48) $(set8 $ENT 0) \
  $(set8 $((ENT + 8)) $((24 | 3 << 32))) $(set8 $((ENT + 24)) $((DATA + 4096 + 64))) \
  $(set8 $((ENT + 32)) 8) $(set8 $((ENT + 40)) 0x5a5a5a5a)
seed log-redo-map 48 $(set8 $((LOG + 16)) 48) $(set8 $ENT 0) \
  $(set8 $((ENT + 8)) $((24 | 3 << 32))) $(set8 $((ENT + 24)) $((DATA + 8))) \
  $(set8 $((ENT + 32)) 8) $(set8 $((ENT + 40)) 0x30000001)
seed log-redo-outside 48 $(set8 $((LOG + 16)) 48) $(set8 $ENT 0) \
  $(set8 $((ENT + 8)) $((24 | 3 << 32))) $(set8 $((ENT + 24)) 0x7fffffffffff) \
  $(set8 $((ENT + 32)) 8)
seed log-redo-biglen 48 $(set8 $((LOG + 16)) 48) $(set8 $ENT 0) \
  $(set8 $((ENT + 8)) $((24 | 3 << 32))) $(set8 $((ENT + 24)) $((DATA + 4096))) \
  $(set8 $((ENT + 32)) 0xffffffff)
seed log-undo-then-redo 48 $(set8 $((LOG + 16)) 80) $(set8 $ENT $((DATA + 4096 + 64))) \
  $(set8 $((ENT + 8)) $((8 | 1 << 32))) $(set8 $((ENT + 24)) 1) \
  $(set8 $((ENT + 32)) 0) $(set8 $((ENT + 40)) $((24 | 3 << 32))) \
  $(set8 $((ENT + 56)) $((DATA + 4096 + 64))) $(set8 $((ENT + 64)) 8) \
  $(set8 $((ENT + 72)) 2)
seed log-area2-undo 48 $(set8 $LOG2 $LOGMAGIC) $(set8 $((LOG2 + 8)) $((1 << 40))) \
  $(set8 $((LOG2 + 16)) 32) $(set8 $((LOG2 + 24)) 1) \
  $(set8 $ENT2 $((DATA + 4096 + 64))) $(set8 $((ENT2 + 8)) $((8 | 1 << 32))) \
  $(set8 $((ENT2 + 24)) 77)
seed log-area2-redo 48 $(set8 $LOG2 $LOGMAGIC) $(set8 $((LOG2 + 8)) $((1 << 40))) \
  $(set8 $((LOG2 + 16)) 48) $(set8 $ENT2 0) $(set8 $((ENT2 + 8)) $((24 | 3 << 32))) \
  $(set8 $((ENT2 + 24)) $((DATA + 4096 + 64))) $(set8 $((ENT2 + 32)) 8) \
  $(set8 $((ENT2 + 40)) 3)
seed log-area2-older 48 $(set8 $LOG2 $LOGMAGIC) $(set8 $((LOG + 16)) 32) \
  $(set8 $((LOG2 + 16)) 32) $(set8 $ENT2 $((DATA + 4096 + 64))) \
  $(set8 $((ENT2 + 8)) $((8 | 1 << 32))) $(set8 $((ENT2 + 24)) 77)
# Logs of groups (commit records in a row, then a tail of undo entries), as
# the write-ahead path leaves them; the header's applied (LOG + 32), boot
# (LOG + 40) and ckpt (LOG + 48) say where recovery starts. The image's
# boot is never this one's, so recovery starts at ckpt: 0, a record's end,
# or no entry's end at all.
G1=$ENT G2=$((ENT + 48)) GT=$((ENT + 96))
groups() {
  printf '%s' "$(set8 $((LOG + 16)) 128) $(set8 $G1 0) $(set8 $((G1 + 8)) $((24 | 3 << 32))) \
$(set8 $((G1 + 24)) $((DATA + 4096 + 64))) $(set8 $((G1 + 32)) 8) $(set8 $((G1 + 40)) 0x11) \
$(set8 $G2 0) $(set8 $((G2 + 8)) $((24 | 3 << 32))) $(set8 $((G2 + 24)) $((DATA + 4096 + 64))) \
$(set8 $((G2 + 32)) 8) $(set8 $((G2 + 40)) 0x22) $(set8 $GT $((DATA + 4096 + 72))) \
$(set8 $((GT + 8)) $((8 | 1 << 32))) $(set8 $((GT + 24)) 0x33)"
}
seed log-groups-from-0 48 $(groups) $(set8 $((LOG + 40)) 0x1234)
seed log-groups-from-ckpt 48 $(groups) $(set8 $((LOG + 40)) 0x1234) $(set8 $((LOG + 48)) 48)
seed log-groups-ckpt-odd 48 $(groups) $(set8 $((LOG + 40)) 0x1234) $(set8 $((LOG + 48)) 40)
seed log-groups-ckpt-huge 48 $(groups) $(set8 $((LOG + 48)) 0xfffffffffff0) \
  $(set8 $((LOG + 32)) 96)
seed log-groups-settled 48 $(groups) $(set8 $((LOG + 32)) 128)

# The allocator exercised after check passes (mode 8).
seed exercise 8
seed exercise-data 8 $((DATA + 30000)) 255
